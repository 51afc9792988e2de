"""The GMM recipe's 12 backend fits, each calibration fold's regression started from zero against from the fit on
every row, on the recipe's own supervectors of the sample replicated 1x and 8x.

Run: nice -n 5 .venv/bin/python bench/gmm_fits.py [--sizes 1,8] [--root /tmp/deeplanguage-gmm-fits]

Each size's dataset is ``bench/scale.py``'s replica (copy j of each clip scaled by 1 + j/1000, new speaker ids).
The shipped recipe (``SHIPPED_GMM``, two threads) runs up to its backend fits; there its store and rows are taken
and the recipe stops, so this costs the UBM and the supervectors once per size (about 1 and 3 min), kept under
``--root`` for the next run. Then, on that store: the regression's 6 fits the old way (5 folds from zero, then
every row), the new way (every row, then 5 folds started from it), and the Gaussian backend's 6 fits (the same
either way). Prints seconds and L-BFGS steps, and the growth exponent between the sizes. At 8x: about 20 min.
"""

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import scipy.optimize

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from core.identify import gmm  # noqa: E402
from core.identify.backends import GaussianBackend, LogisticBackend  # noqa: E402
from core.identify.recipes import SHIPPED_GMM  # noqa: E402


class _Captured(BaseException):  # not an Exception: the CLI would report it as an internal error
    pass


def capture(size: int, root: Path) -> Path:
    """The recipe's store and rows at ``size`` x the sample, under ``root/<size>x/``; built once."""
    import scale
    from core.__main__ import main

    out = root / f"{size}x"
    if (out / "rows.npz").exists():
        return out
    data = scale.replicate(size, out / "data")  # rewritten whole: a replica cut short is never reused

    def dump(model, cfg, balanced, store, units, n_labels, report):
        owner = np.repeat(np.arange(len(units)), store.counts)
        np.save(out / "x.npy", np.asarray(store.rows()))
        np.savez(out / "rows.npz", y=np.array([u.target for u in units])[owner],
                 part=np.array([u.part for u in units])[owner],
                 groups=np.array([u.speaker for u in units], dtype=str)[owner], balanced=balanced,
                 c=cfg.inverse_regularization, dim=cfg.backend_dim, n_labels=n_labels)
        raise _Captured

    fit_backends, gmm._fit_backends = gmm._fit_backends, dump
    try:
        main(["train", "--data", str(data), "--cache", str(out / "cache"), "--threads", "2", "--model",
              "gmm-supervector", "--out", str(out / "runs"), "--model-config", json.dumps(SHIPPED_GMM)])
    except _Captured:
        pass
    finally:
        gmm._fit_backends = fit_backends
    return out


def time_fits(folder: Path) -> dict[str, tuple[float, list[int]]]:
    """Seconds and L-BFGS steps of each way to do the 12 fits, on one captured store."""
    x = np.load(folder / "x.npy", mmap_mode="r")
    rows = np.load(folder / "rows.npz")
    y, c, balanced, dim = rows["y"], float(rows["c"]), bool(rows["balanced"]), int(rows["dim"])
    data, every = (x, y, rows["groups"].astype(object), rows["part"]), np.arange(len(x))
    steps, minimize = [], scipy.optimize.minimize

    def counted(*args, **kwargs):
        result = minimize(*args, **kwargs)
        steps.append(int(result.nit))
        return result

    def fitted(backend, part):
        return backend.fit(x, y, part)

    def old():
        gmm._calibrate(lambda: LogisticBackend(c, balanced), data, int(rows["n_labels"]), fitted)
        LogisticBackend(c, balanced).fit(x, y, every)

    def new():
        main = LogisticBackend(c, balanced).fit(x, y, every)
        gmm._calibrate(lambda: LogisticBackend(c, balanced, start=main), data, int(rows["n_labels"]), fitted)

    def gauss():
        GaussianBackend(dim).fit(x, y, every)
        gmm._calibrate(lambda: GaussianBackend(dim), data, int(rows["n_labels"]), fitted)

    results = {}
    scipy.optimize.minimize = counted
    try:
        for name, run in (("regression, folds from zero", old), ("regression, folds from the fit on every row", new),
                          ("Gaussian backend", gauss)):
            steps.clear()
            started = time.perf_counter()
            run()
            results[name] = (time.perf_counter() - started, list(steps))
            print(f"  {name}: {results[name][0]:.1f} s, L-BFGS steps {steps or '-'}", flush=True)
    finally:
        scipy.optimize.minimize = minimize
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1,8")
    parser.add_argument("--root", type=Path, default=Path("/tmp/deeplanguage-gmm-fits"))
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    timed = {}
    for size in sizes:
        folder = capture(size, args.root)
        print(f"{size}x: {len(np.load(folder / 'x.npy', mmap_mode='r'))} supervectors", flush=True)
        timed[size] = time_fits(folder)
    old_total = {s: t["regression, folds from zero"][0] + t["Gaussian backend"][0] for s, t in timed.items()}
    new_total = {s: t["regression, folds from the fit on every row"][0] + t["Gaussian backend"][0]
                 for s, t in timed.items()}
    for size in sizes:
        print(f"{size}x: the 12 fits {old_total[size]:.0f} s before, {new_total[size]:.0f} s now "
              f"({old_total[size] / new_total[size]:.2f}x)")
    if len(sizes) > 1:
        a, b = sizes[0], sizes[-1]
        grow = {name: math.log(total[b] / total[a]) / math.log(b / a) for name, total in (("before", old_total),
                                                                                          ("now", new_total))}
        print(f"growth {a}x -> {b}x: size^{grow['before']:.2f} before, size^{grow['now']:.2f} now (target <= 1.1)")


if __name__ == "__main__":
    main()
