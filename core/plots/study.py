"""Figures of the pretraining study (curves, matrix, probes)."""

from __future__ import annotations

__all__: list[str] = []
