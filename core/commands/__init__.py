"""One module per `python -m core` subcommand (see core/__main__.py), and the checks their options share.

Settings that belong to a config (TrainConfig, StudyConfig, FeatureConfig) are checked by the config
itself (core.configs.validate); the few options that are no config's field (process counts, trial
counts, timeouts) are checked here, by argparse, which exits 2 with the option's name.
"""

from __future__ import annotations

import argparse
import math
from typing import Callable


def number(kind: type = int, low: float | None = None, above: float | None = None) -> Callable[[str], float]:
    """An argparse ``type=`` that reads an int or a finite float and refuses values below ``low``
    (inclusive) or not above ``above`` (exclusive)."""
    words = ("an integer" if kind is int else "a finite number") + (
        f" >= {low:g}" if low is not None else "") + (f" > {above:g}" if above is not None else "")

    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be {words}; got {text!r}") from None
        if (not math.isfinite(value) or (low is not None and value < low)
                or (above is not None and value <= above)):
            raise argparse.ArgumentTypeError(f"must be {words}; got {text!r}")
        return value

    parse.__name__ = kind.__name__  # argparse names the type in its messages
    return parse


def comma_list(kind: type = str) -> Callable[[str], tuple]:
    """An argparse ``type=`` for a comma-separated list ("es, it,ja" -> ("es", "it", "ja")); blanks are
    dropped, and each item is read with ``kind`` (int: "0,1,4" -> (0, 1, 4))."""
    def parse(text: str) -> tuple:
        parts = [part.strip() for part in text.split(",") if part.strip()]
        try:
            return tuple(kind(part) for part in parts)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of "
                                             f"{'integers' if kind is int else kind.__name__ + 's'}") from None

    parse.__name__ = "comma-separated list"  # argparse names the type in its messages
    return parse
