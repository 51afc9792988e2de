"""Files written so that a crash never leaves half of one: write to a temporary name, then rename."""

from __future__ import annotations

import json
import os
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import numpy as np


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """A temporary name beside ``path`` to write to; it replaces ``path`` when the block succeeds.

    The temporary name keeps the suffix (np.save and np.savez would otherwise add one) and names the
    process and the thread: two writers never share it (two prepares in one server's threads did, and
    the second rename found no file). On an exception it is removed and ``path`` is untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}-{threading.get_ident()}.tmp{path.suffix}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")  # a spreadsheet runs a cell starting so as a formula


def neutralize_formulas(table):
    """A copy of a pandas table for CSV export whose text cells starting with = + - @ tab or CR get a leading
    "'", so a spreadsheet shows them as text (the OWASP guard against CSV formula injection)."""
    def cell(value):
        return "'" + value if isinstance(value, str) and value.startswith(FORMULA_STARTS) else value

    return table.map(cell)


def write_text(path: str | Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json(path: str | Path, value) -> None:
    write_text(path, json.dumps(value, indent=2, default=str))


def save_array(path: str | Path, array: np.ndarray) -> None:
    with atomic_path(path) as tmp:
        np.save(tmp, array)
