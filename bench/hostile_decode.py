"""Peak memory and time to decode (or refuse) the hostile files of tests/test_hostile.py (issue 19.1).

Run: .venv/bin/python bench/hostile_decode.py [--baseline main]
Each file is made here by the test module's own makers (nothing is shipped) and decoded in a fresh Python;
"rise" is its peak resident memory above idle (VmHWM, reset after imports), "wall" the seconds load_audio took. Target: a
rise of at most about 200 MB for any file, and a refusal in under 5 s naming the file's length. With
--baseline the decoder as it is at that git ref (exported with git archive) decodes the same files in the
same run, and the ratios are this tree's cost over the baseline's. The baseline can take minutes and GBs.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.test_hostile import declare_frames, long_webm, peak_cost  # noqa: E402


def make_files(folder: Path) -> dict[str, tuple[Path, dict]]:
    """name -> (file, how peak_cost decodes it)."""
    files = {}
    if subprocess.run(["which", "ffmpeg"], capture_output=True).returncode == 0:
        (folder / "w").mkdir()
        files["webm 4 h opus, upload"] = (long_webm(folder / "w"), {"as_upload": True})
        (folder / "n").mkdir()
        files["webm 1 h, no length declared"] = (long_webm(folder / "n", 3600), {"declare_nothing": True})
    wide = folder / "wide.flac"
    sf.write(wide, np.zeros((384000, 8), np.int16), 384000, format="FLAC")
    declare_frames(wide, 600 * 384000)
    files["flac declaring 8 ch 384 kHz 600 s"] = (wide, {})
    fast = folder / "fast.flac"
    with sf.SoundFile(fast, "w", 384000, 1, format="FLAC", subtype="PCM_16") as out:
        for _ in range(60):
            out.write(np.zeros(3840000, np.int16))
    files["flac 600 s mono 384 kHz (accepted)"] = (fast, {"as_upload": True})
    return files


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", metavar="GIT_REF", help="also decode with the project at GIT_REF (e.g. main)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        roots = {"this tree": ROOT}
        if args.baseline:
            base = tmp / "baseline"
            base.mkdir()
            archive = subprocess.run(["git", "archive", args.baseline], cwd=ROOT, capture_output=True, check=True)
            subprocess.run(["tar", "-x", "-C", str(base)], input=archive.stdout, check=True)
            roots[args.baseline] = base
        for name, (path, how) in make_files(tmp).items():
            print(f"{name} ({path.stat().st_size / 1e6:.1f} MB):")
            costs = {}
            for label, root in roots.items():
                cost = costs[label] = peak_cost(path, root=root, **how)
                outcome = f"{cost['seconds']:.0f} s decoded" if "seconds" in cost else cost["error"][:110]
                print(f"  {label:>10}: rise {cost['rise_mb']:7.1f} MB, wall {cost['wall_s']:6.2f} s  {outcome}")
            if args.baseline:
                ours, theirs = costs["this tree"], costs[args.baseline]
                print(f"  ratio: memory {ours['rise_mb'] / max(theirs['rise_mb'], 0.1):.3f}x, "
                      f"time {ours['wall_s'] / max(theirs['wall_s'], 1e-3):.3f}x")


if __name__ == "__main__":
    main()
