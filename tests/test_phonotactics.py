"""core.identify.phonotactics: frames become their nearest UBM component; order alone (bigrams) separates classes."""

import numpy as np
import torch

from core.identify.phonotactics import PhonotacticBackend, token_counts, tokens


def test_each_frame_becomes_its_component():
    means = torch.tensor([[0.0, 0.0], [5.0, 5.0], [-5.0, 5.0]])
    frames = means[[2, 0, 1, 1]] + 0.1
    assert tokens(frames, torch.full((3,), 1 / 3), means, torch.ones(3, 2)).tolist() == [2, 0, 1, 1]


def test_bigrams_tell_apart_sequences_with_the_same_units():
    rng = np.random.default_rng(0)

    def sequence(language: int) -> np.ndarray:  # the same four units; only their order differs
        cycle = [0, 1, 2, 3] if language == 0 else [0, 2, 1, 3]
        start = rng.integers(0, 4)
        return np.repeat(np.roll(cycle, start).tolist() * 10, rng.integers(1, 4, 40))  # repeats collapse

    y = np.array([0, 1] * 40)
    counts = token_counts([sequence(c) for c in y], 4)
    assert counts.shape == (80, 4 + 16)
    backend = PhonotacticBackend().fit(counts[:60], y[:60])
    assert (backend.predict_proba(counts[60:]).argmax(1) == y[60:]).mean() == 1.0
