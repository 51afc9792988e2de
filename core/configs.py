"""Configs rebuilt from stored dicts (checkpoints, run and study folders)."""

from __future__ import annotations


def known_fields(config_class, values: dict) -> dict:
    """The entries of ``values`` that the dataclass ``config_class`` has fields for.

    Dropping the others lets a config stored by an older or newer version still load.
    """
    return {k: v for k, v in values.items() if k in config_class.__dataclass_fields__}
