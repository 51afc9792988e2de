"""Configs: one validation place for every config dataclass, and rebuilding them from stored dicts.

A config field states what it accepts next to its default::

    epochs: int = setting(40, low=1)  # upper bound; early stopping usually ends sooner

and the dataclass calls :func:`validate` from ``__post_init__``, so a config that exists is a
valid one, whoever built it (CLI, page, a stored run). The type comes from the annotation
(``int``, ``float``, ``str``, ``bool``, ``dict``, ``tuple[...]``, ``X | None``); floats must be
finite. A bad value raises :class:`core.errors.UsageError` naming the command-line option,
the field and the allowed range: the CLI exits 2 on it, a page shows it.
"""

from __future__ import annotations

import math
import typing
from dataclasses import field, fields
from types import UnionType

from core.errors import UsageError


def setting(default=None, *, low: float | None = None, high: float | None = None, above: float | None = None,
            below: float | None = None, choices: tuple | None = None, option: str | None = None,
            default_factory=None):
    """A dataclass field with its allowed values: ``low``/``high`` inclusive, ``above``/``below`` exclusive
    bounds, ``choices`` a closed set; ``option`` names the CLI flag when it is not ``--<field-name>``.
    Ranges apply to each item of a tuple field."""
    rule = {"low": low, "high": high, "above": above, "below": below, "choices": choices, "option": option}
    if default_factory is not None:
        return field(default_factory=default_factory, metadata={"rule": rule})
    return field(default=default, metadata={"rule": rule})


def validate(config) -> None:
    """Check every field of the dataclass instance ``config`` against its type and :func:`setting` rule."""
    hints = typing.get_type_hints(type(config))
    for spec in fields(config):
        rule = spec.metadata.get("rule", {})
        value = getattr(config, spec.name)
        expected, problem = _check(value, hints[spec.name], rule)
        if problem:
            option = rule.get("option") or "--" + spec.name.replace("_", "-")
            raise UsageError(f"{option} ({type(config).__name__}.{spec.name}) must be {expected}; got {value!r}.")


def _check(value, hint, rule: dict) -> tuple[str, bool]:
    """(what is allowed, in words; whether ``value`` breaks it)."""
    if isinstance(hint, UnionType) or typing.get_origin(hint) is typing.Union:
        options = [h for h in typing.get_args(hint) if h is not type(None)]
        if value is None:
            return "", False
        return _check(value, options[0], rule)
    origin = typing.get_origin(hint)
    if origin is tuple:
        args = typing.get_args(hint)
        item = args[0]
        size = None if len(args) == 2 and args[1] is Ellipsis else len(args)
        words, _ = _check_scalar(None, item, rule)
        expected = f"a list of {size or 'any number of'} items, each {words}"
        if not isinstance(value, (tuple, list)) or (size is not None and len(value) != size):
            return expected, True
        return expected, any(_check_scalar(x, item, rule)[1] for x in value)
    return _check_scalar(value, hint, rule)


def _check_scalar(value, hint, rule: dict) -> tuple[str, bool]:
    names = {int: "an integer", float: "a finite number", str: "a string", bool: "true or false",
             dict: "a JSON object ({...})"}
    words = names.get(hint, getattr(hint, "__name__", str(hint)))
    bounds = [f">= {rule['low']:g}" if rule.get("low") is not None else "",
              f"> {rule['above']:g}" if rule.get("above") is not None else "",
              f"<= {rule['high']:g}" if rule.get("high") is not None else "",
              f"< {rule['below']:g}" if rule.get("below") is not None else ""]
    bounds = " and ".join(b for b in bounds if b)
    if bounds:
        words = f"{words} {bounds}"
    if rule.get("choices") is not None:
        words = "one of " + ", ".join(str(c) for c in rule["choices"])
    if value is None:
        return words, False
    if hint is bool:
        wrong = not isinstance(value, bool)
    elif hint is int:
        wrong = isinstance(value, bool) or not isinstance(value, int)
    elif hint is float:
        wrong = isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value)
    else:
        wrong = not isinstance(value, hint)
    if wrong:
        return words, True
    if rule.get("choices") is not None:
        return words, value not in rule["choices"]
    outside = ((rule.get("low") is not None and value < rule["low"])
               or (rule.get("high") is not None and value > rule["high"])
               or (rule.get("above") is not None and value <= rule["above"])
               or (rule.get("below") is not None and value >= rule["below"]))
    return words, bool(outside)


def known_fields(config_class, values: dict) -> dict:
    """The entries of ``values`` that the dataclass ``config_class`` has fields for.

    Dropping the others lets a config stored by an older or newer version still load.
    """
    return {k: v for k, v in values.items() if k in config_class.__dataclass_fields__}
