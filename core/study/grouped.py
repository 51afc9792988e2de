"""Several next-frame LSTMs trained as one batched model: ``(members, batch, ...)`` weights.

A study trains hundreds of small, independent LSTMs. One at a time, each step is a handful of
small matrix products dominated by per-call overhead; stacked, the same step for ``K`` models
is one batched product (``torch.bmm``) per time step. Nothing is shared between members:

* each member's weights start as :class:`core.study.nextframe.NextFrameLSTM`'s would for its own
  seed (:meth:`GroupedLSTM.from_models`) and go back to such a model (:meth:`GroupedLSTM.member`);
* the loss is the sum of the members' own mean losses, so each member's gradient is the one it
  would get alone; Adam works element by element, so its update is too;
* gradient clipping is per member (:func:`clip_per_member`), as ``clip_grad_norm_`` would do on
  one model alone.

So member ``k`` follows the trajectory of the model trained alone on the same batches, up to
float rounding (tests/test_study.py checks it). Shapes: inputs ``(K, batch, n_frames, n_mels)``.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from core.study.nextframe import NextFrameConfig, NextFrameLSTM


class GroupedLSTM(nn.Module):
    """``K`` one-layer next-frame LSTMs (PyTorch's gate order i, f, g, o) and their linear heads."""

    def __init__(self, n_members: int, config: NextFrameConfig = NextFrameConfig()):
        super().__init__()
        if config.n_layers != 1:
            raise ValueError("the batched trainer implements one LSTM layer")
        self.config = config
        k, n, h = n_members, config.n_mels, config.hidden_size
        # Stored transposed, (K, in, out), so that x @ w needs no transpose per step.
        self.w_ih = nn.Parameter(torch.zeros(k, n, 4 * h))
        self.w_hh = nn.Parameter(torch.zeros(k, h, 4 * h))
        self.b_ih = nn.Parameter(torch.zeros(k, 1, 4 * h))
        self.b_hh = nn.Parameter(torch.zeros(k, 1, 4 * h))  # kept apart from b_ih: Adam sees both, as nn.LSTM's
        self.w_out = nn.Parameter(torch.zeros(k, h, n))
        self.b_out = nn.Parameter(torch.zeros(k, 1, n))

    @classmethod
    def from_models(cls, models: list[NextFrameLSTM]) -> "GroupedLSTM":
        grouped = cls(len(models), models[0].config)
        with torch.no_grad():
            for k, model in enumerate(models):
                grouped.w_ih[k] = model.lstm.weight_ih_l0.T
                grouped.w_hh[k] = model.lstm.weight_hh_l0.T
                grouped.b_ih[k, 0] = model.lstm.bias_ih_l0
                grouped.b_hh[k, 0] = model.lstm.bias_hh_l0
                grouped.w_out[k] = model.head.weight.T
                grouped.b_out[k, 0] = model.head.bias
        return grouped

    def member(self, k: int) -> NextFrameLSTM:
        """Member ``k`` as a stand-alone :class:`NextFrameLSTM` (a copy of its weights)."""
        model = NextFrameLSTM(self.config)
        with torch.no_grad():
            model.lstm.weight_ih_l0.copy_(self.w_ih[k].T)
            model.lstm.weight_hh_l0.copy_(self.w_hh[k].T)
            model.lstm.bias_ih_l0.copy_(self.b_ih[k, 0])
            model.lstm.bias_hh_l0.copy_(self.b_hh[k, 0])
            model.head.weight.copy_(self.w_out[k].T)
            model.head.bias.copy_(self.b_out[k, 0])
        return model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` ``(K, batch, n_frames, n_mels)`` -> next-frame predictions of the same shape."""
        k, b, t, n = x.shape
        h_size = self.config.hidden_size
        # The input half of every gate for all time steps at once: one product instead of T.
        inputs = torch.baddbmm(self.b_ih + self.b_hh, x.reshape(k, b * t, n), self.w_ih).view(k, b, t, -1)
        # unbind, not inputs[:, :, step]: each slice's backward would allocate the whole tensor.
        inputs = inputs.unbind(dim=2)
        h = x.new_zeros(k, b, h_size)
        c = x.new_zeros(k, b, h_size)
        outputs = []
        for step in range(t):
            gates = torch.baddbmm(inputs[step], h, self.w_hh)
            i, f, g, o = gates.split(h_size, dim=-1)
            c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
            h = torch.sigmoid(o) * torch.tanh(c)
            outputs.append(h)
        hidden = torch.stack(outputs, dim=2).view(k, b * t, h_size)
        return torch.baddbmm(self.b_out, hidden, self.w_out).view(k, b, t, n)

    def member_losses(self, x: torch.Tensor) -> torch.Tensor:
        """Each member's mean squared error of predicting frames ``1..T-1``: ``(K,)``."""
        error = self(x[:, :, :-1]) - x[:, :, 1:]
        return error.pow(2).mean(dim=(1, 2, 3))


def clip_per_member(model: GroupedLSTM, max_norm: float = 1.0) -> None:
    """Scale each member's gradient as ``clip_grad_norm_(member.parameters(), max_norm)`` would."""
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    norms = torch.sqrt(sum(g.pow(2).flatten(1).sum(dim=1) for g in grads))  # (K,)
    scale = torch.clamp(max_norm / (norms + 1e-6), max=1.0)
    for g in grads:
        g.mul_(scale.view(-1, *([1] * (g.dim() - 1))))


class Members:
    """``K`` next-frame models trained in lockstep, each on its own batch: the trainer's interface.

    ``backend="grouped"`` stacks them into one :class:`GroupedLSTM` (one batched product per time
    step); ``"sequential"`` steps each ``nn.LSTM`` in turn (PyTorch's fused CPU kernel). Both give
    every member the update it would get alone; which is faster depends on the machine (see
    bench/study_default.py).
    """

    def __init__(self, models: list[NextFrameLSTM], learning_rate: float, backend: str = "grouped"):
        if backend not in BACKENDS:
            raise ValueError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
        self.backend = backend
        self.n_members = len(models)
        if backend == "grouped":
            self.grouped = GroupedLSTM.from_models(models)
            self.optimizers = [torch.optim.Adam(self.grouped.parameters(), lr=learning_rate)]
        else:
            self.models = models
            self.optimizers = [torch.optim.Adam(m.parameters(), lr=learning_rate) for m in models]

    def step(self, batches: np.ndarray) -> np.ndarray:
        """One optimisation step of every member on its batch: ``batches`` ``(K, batch, frames, n_mels)``;
        returns the members' training losses ``(K,)``."""
        x = torch.from_numpy(np.ascontiguousarray(batches, dtype=np.float32))
        if self.backend == "grouped":
            self.grouped.train()
            losses = self.grouped.member_losses(x)
            self.optimizers[0].zero_grad()
            losses.sum().backward()
            clip_per_member(self.grouped, 1.0)  # LSTMs spike early on; keep steps sane
            self.optimizers[0].step()
            return losses.detach().numpy()
        losses = []
        for model, optimizer, batch in zip(self.models, self.optimizers, x):
            model.train()
            loss = model.loss(batch)
            optimizer.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            losses.append(loss.item())
        return np.array(losses)

    @torch.no_grad()
    def evaluate(self, crops: torch.Tensor, chunk: int = 256) -> np.ndarray:
        """Every member's mean validation loss on the same ``crops`` ``(n, frames, n_mels)``: ``(K,)``."""
        total = np.zeros(self.n_members)
        for start in range(0, len(crops), chunk):
            part = crops[start:start + chunk]
            if self.backend == "grouped":
                self.grouped.eval()
                losses = self.grouped.member_losses(part.expand(self.n_members, *part.shape)).numpy()
            else:
                for model in self.models:
                    model.eval()
                losses = np.array([model.loss(part).item() for model in self.models])
            total += losses * len(part)
        return total / len(crops)

    def member(self, k: int) -> NextFrameLSTM:
        return self.grouped.member(k) if self.backend == "grouped" else self.models[k]


BACKENDS = ("grouped", "sequential")


def make_members(models: list[NextFrameLSTM], learning_rate: float, backend: str = "grouped") -> Members:
    return Members(models, learning_rate, backend)
