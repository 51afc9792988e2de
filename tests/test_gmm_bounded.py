"""core.identify.gmm in bounded memory: refused with an estimate when it will not fit, a MemoryError told as
such, progress.json written phase by phase while it runs, and an interrupted fit resumed from its last chunk."""

import json

import numpy as np
import pytest
import torch

from core import progress
from core.errors import DeepLanguageError
from core.identify import gmm, memory, vectors
from core.identify.clips import TrainConfig
from tests.test_classic import SMALL, _planted_clips

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def planted():
    clips = _planted_clips(n_speakers=6, per_speaker=2)
    config = TrainConfig(model="gmm-supervector", model_config={**SMALL, "fit_on": "clips"}, threads=1)
    return config, clips, clips.rows("train")


def test_a_fit_that_will_not_fit_is_refused_before_it_starts_with_the_estimate(planted, monkeypatch, tmp_path):
    config, clips, rows = planted
    monkeypatch.setattr(memory, "available_bytes", lambda: 0.1 * memory.GB)
    with pytest.raises(DeepLanguageError, match=r"needs about \d+\.\d GB of memory; 0\.1 GB is available") as error:
        gmm.fit(config, clips, rows[::2], rows[1::2], tmp_path)
    assert "a subset of the data" in str(error.value)
    assert not (tmp_path / "supervectors").exists()  # nothing started


def test_the_refusal_names_the_options_that_lower_the_estimate(monkeypatch):
    cfg = gmm.GMMSupervectorConfig(n_components=256, augment=("speed0.9", "speed1.1", "noise"))
    assert memory.peak_bytes(cfg, 100_000, 100_000) < memory.peak_bytes(cfg, 100_000, 400_000)
    assert memory.peak_bytes(cfg, 8 * 895, 8 * 895 * 4) < 4 * memory.GB  # 8x the sample: the target
    monkeypatch.setattr(memory, "available_bytes", lambda: 0.5 * memory.GB)
    with pytest.raises(DeepLanguageError) as error:
        memory.check(cfg, 100_000, 100_000, 0)
    assert '"augment": []' in str(error.value) and '"n_components": 128' in str(error.value)


def test_a_memory_error_is_told_as_memory_not_an_internal_error(planted, monkeypatch):
    config, clips, rows = planted

    def exhausted(*args, **kwargs):
        raise MemoryError

    monkeypatch.setattr(vectors, "fit_logistic", exhausted)
    with pytest.raises(DeepLanguageError, match="ran out of memory training the GMM supervector"):
        gmm.fit(config, clips, rows[::2], rows[1::2])


def test_progress_json_names_each_phase_while_it_runs_and_a_killed_fit_resumes(planted, monkeypatch, tmp_path):
    config, clips, rows = planted
    monkeypatch.setattr(gmm, "STORE_UNITS", 4)
    monkeypatch.setattr(progress, "PROGRESS_EVERY_S", 0.0)
    seen = []

    def kill_in_supervectors(done, total, phase=None, **metrics):
        seen.append((phase, done, total, json.loads((tmp_path / "progress.json").read_text())))
        if phase.startswith("supervectors") and done == 6:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        gmm.fit(config, clips, rows[::2], rows[1::2], tmp_path, progress.PhaseProgress(tmp_path, kill_in_supervectors))
    phases = [p for p, *_ in seen]
    assert phases[0].startswith("background model: speech frames of 6 clips")
    assert any(p.startswith("background model: EM") for p in phases)
    for phase, done, total, written in seen:  # on disk as it happens, with its own total
        assert (written["phase"], written["done"], written["total"]) == (phase, done, total)
    assert (tmp_path / "supervectors" / "ubm.pt").exists()

    resumed = []
    checkpoint = gmm.fit(config, clips, rows[::2], rows[1::2], tmp_path,
                         lambda done, total, phase=None, **m: resumed.append((phase, done)))
    assert not any(p.startswith("background model") for p, _ in resumed)  # the UBM was finished: read back
    assert [d for p, d in resumed if p.startswith("supervectors")][0] == 5  # after the last whole chunk (4)
    assert not (tmp_path / "supervectors").exists()  # removed once the model is saved

    fresh = gmm.fit(config, clips, rows[::2], rows[1::2])
    for name, value in fresh["state_dict"].items():
        assert torch.allclose(value, checkpoint["state_dict"][name], atol=1e-5), name
    assert np.isclose(fresh["calibration"]["accuracy"], checkpoint["calibration"]["accuracy"])


def test_the_train_page_line_names_the_phase_with_its_count_and_eta(tmp_path):
    from core.jobs import registry

    (tmp_path / "progress.json").write_text(json.dumps({"phase": "decoding and caching 895 clips", "done": 100,
                                                        "total": 895, "phase_seconds": 10.0}))
    line = registry.progress_line({"state": "running"}, registry.run_progress(tmp_path))
    assert line == "running · decoding and caching 895 clips: 100/895 · ETA 80 s"


def test_every_phase_ends_at_its_own_total(planted):
    config, clips, rows = planted
    last = {}
    gmm.fit(config, clips, rows[::2], rows[1::2], None, lambda done, total, phase=None, **m: last.update({phase: (done, total)}))
    assert any(p.startswith("fitting the backend") for p in last)
    for phase, (done, total) in last.items():  # the backend's bar stopped at 12 of 13 fits (92 %) at 1x the sample
        assert done == total, phase
