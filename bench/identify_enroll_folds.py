# Reproduce: MINUTES=1 nice -n 10 .venv/bin/python bench/identify_enroll_folds.py pt,it,ja,de   (after bench/identify_variants.py cached folds 0-1)
"""Enrolment on cached fold-0/1 statistics: Gaussian backend on 11 languages (+ speed/noise copies), the 12th
enrolled as a mean from ~1 min of a few training-part speakers, scored on the fold's test speakers."""
import sys, os
sys.path.insert(0, "bench"); sys.path.insert(0, ".")
import numpy as np, torch
torch.set_num_threads(1)
import identify_variants as v
from core.identify import backends
from core.identify.evaluate import bootstrap_ci
from core.audio.features import FeatureConfig
from core.data.cache import prepared_dataset
from sklearn.model_selection import StratifiedGroupKFold
m = prepared_dataset(v.CV_SAMPLE_DIR, None, FeatureConfig())
m = m[m["duration"] >= 1.5].reset_index(drop=True)
labels = sorted(m["language"].unique()); y = m["language"].map({x: i for i, x in enumerate(labels)}).to_numpy()
spk = m["speaker"].to_numpy(); dur = m["duration"].to_numpy()
folds = list(StratifiedGroupKFold(5, shuffle=True, random_state=0).split(m, y, spk))
kinds = ["speed0.9", "speed1.1", "noise"]
minutes = float(os.environ.get("MINUTES", "1"))
out = {}
for lang in sys.argv[1].split(","):
    L = labels.index(lang)
    rec = {"new": [], "before": [], "after": [], "spk_new": [], "spk_oth": [], "teach": []}
    for f in (0, 1):
        train, test = folds[f]
        st = dict(np.load(v.WORK / f"stats-k256-fold{f}.npz"))
        sv = backends.supervectors(st, 4.0)
        aug = [backends.supervectors(dict(np.load(v.WORK / f"stats-k256-fold{f}-{k}.npz")), 4.0) for k in kinds]
        eleven = train[y[train] != L]
        x = np.concatenate([sv[eleven]] + [a[eleven] for a in aug]); yy = np.tile(y[eleven], 1 + len(kinds))
        g = backends.GaussianBackend().fit(x, yy)
        # teach: whole speakers of the new language from the training part, seeded order, until `minutes`
        cand = train[y[train] == L]
        order = np.random.default_rng(f).permutation(np.unique(spk[cand]))
        teach, spent = [], 0.0
        for s_ in order:
            if spent >= minutes * 60: break
            rows = cand[spk[cand] == s_]; teach.extend(rows); spent += dur[rows].sum()
        rec["teach"].append((len(teach), len(set(spk[teach])), spent))
        before = np.array(g.classes_)[g.predict_proba(sv[test]).argmax(1)]
        g.class_means_ = np.concatenate([g.class_means_, g.project(sv[teach]).mean(0)[None]])
        g.classes_ = np.append(g.classes_, L)
        after = np.array(g.classes_)[g.predict_proba(sv[test]).argmax(1)]
        new = y[test] == L
        rec["new"].extend(after[new] == L); rec["spk_new"].extend(spk[test][new])
        rec["before"].extend(before[~new] == y[test][~new]); rec["after"].extend(after[~new] == y[test][~new])
        rec["spk_oth"].extend(spk[test][~new])
    n = np.array(rec["new"]); b = np.array(rec["before"]); a = np.array(rec["after"])
    ci = lambda h, s: [round(x, 3) for x in bootstrap_ci(h, np.array(s))]
    print(f"{lang}: taught from {rec['teach']} (clips, speakers, seconds) per fold; recall {n.mean():.1%} {ci(n, rec['spk_new'])} "
          f"on {len(n)} clips; others before {b.mean():.1%} {ci(b, rec['spk_oth'])}, after {a.mean():.1%} {ci(a, rec['spk_oth'])} "
          f"({len(b)} clips)", flush=True)
