"""Teaching the shipped recipe a language it never trained on, from at most 60 s of speech of at least 3 speakers.

    .venv/bin/python bench/identify_enrol.py [--languages ca,nl,pt] [--seconds 60]

For each held-back language L: train a whisper-head on the other 11 languages of the embedded sample (its own
speaker-disjoint split), enrol L with ``core.identify.enroll.enroll`` from clips of the fewest speakers (at least
3) whose speech adds up to at most ``--seconds``, then score the 11 languages' test speakers and every other
speaker of L. Prints L's recall and the other languages' accuracy before and after enrolment (target: recall
>= 70 %, the others lose at most 2 points), with 95 % bootstrap CIs over speakers.
"""

import argparse
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402

from core.identify.clips import TrainConfig  # noqa: E402
from core.identify.enroll import enroll  # noqa: E402
from core.identify.metrics import bootstrap_ci  # noqa: E402
from core.identify.predict import load_identifier  # noqa: E402
from core.identify.pretrained_fit import encoded_dataset, predict_rows  # noqa: E402
from core.identify.train import train  # noqa: E402
from core.paths import CV_SAMPLE_DIR  # noqa: E402


def teaching_clips(clips, seconds: float, n_speakers: int = 3) -> list[str]:
    """Clips of ``n_speakers`` speakers taken in turn (one more speaker whenever those run out), up to ``seconds``
    of audio, so that most of the language's speakers stay unseen."""
    speakers = list(clips["speaker"].drop_duplicates())
    queues = [list(clips[clips["speaker"] == s].itertuples()) for s in speakers[:n_speakers]]
    chosen, total, added = [], 0.0, n_speakers
    while True:
        if not any(queues):
            if added == len(speakers):
                return chosen
            queues.append(list(clips[clips["speaker"] == speakers[added]].itertuples()))
            added += 1
        for queue in queues:
            if queue:
                row = queue.pop(0)
                if total + row.duration > seconds:
                    return chosen
                chosen.append(row.path)
                total += row.duration


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--languages", default="ca,nl,pt")
    parser.add_argument("--seconds", type=float, default=60.0)
    args = parser.parse_args()
    everything = TrainConfig(data_dir=str(CV_SAMPLE_DIR), model="whisper-head")
    manifest, rows, labels = encoded_dataset(everything)
    for held in args.languages.split(","):
        others = tuple(x for x in labels if x != held)
        with tempfile.TemporaryDirectory() as folder:
            run = train(replace(everything, languages=others), runs_dir=folder, name="eleven")
            eleven = load_identifier(run / "best.pt")
            test_speakers = set(eleven.checkpoint["data"]["test_speakers"])
            held_clips = manifest[manifest["language"] == held].sample(frac=1.0, random_state=0)
            teach = teaching_clips(held_clips, args.seconds)
            taught = manifest.set_index("path").loc[teach]
            summary = enroll(run / "best.pt", held, teach, Path(folder) / "twelve.pt")
            twelve = load_identifier(Path(folder) / "twelve.pt")
        scored = manifest["speaker"].isin(test_speakers) | ((manifest["language"] == held)
                                                            & ~manifest["speaker"].isin(set(taught["speaker"])))
        part, part_rows = manifest[scored], rows[scored.to_numpy()]
        speakers, truth = part["speaker"].to_numpy(), part["language"].to_numpy()
        mine = truth == held
        before = np.array(eleven.labels)[predict_rows(eleven.model, part_rows[~mine], eleven.temperature).argmax(1)]
        after = np.array(twelve.labels)[predict_rows(twelve.model, part_rows, twelve.temperature).argmax(1)]
        recall, old, new = after[mine] == held, before == truth[~mine], after[~mine] == truth[~mine]
        ci = lambda hits, who: "-".join(f"{x:.0%}" for x in bootstrap_ci(hits, who))  # noqa: E731
        print(f"{held}: enrolled from {len(teach)} clips of {taught['speaker'].nunique()} speakers, "
              f"{taught['duration'].sum():.0f} s ({summary['seconds_of_speech']:.0f} s of speech); "
              f"recall on {mine.sum()} clips of {len(set(speakers[mine]))} unseen speakers {recall.mean():.1%} "
              f"({ci(recall, speakers[mine])}); the other 11 on their test speakers {old.mean():.1%} -> "
              f"{new.mean():.1%} ({(new.mean() - old.mean()) * 100:+.1f} points)")


if __name__ == "__main__":
    main()
