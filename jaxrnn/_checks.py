"""Argument checks shared by the library: one wording for every "must be a positive integer"."""

from __future__ import annotations


def positive_int(name: str, value, *, error: type[Exception] = ValueError) -> int:
    """``value`` if it is an ``int`` (not a ``bool``) greater than zero, else ``error`` naming ``name``."""
    if not _is_int(value) or value <= 0:
        raise error(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def non_negative_int(name: str, value, *, error: type[Exception] = ValueError) -> int:
    """``value`` if it is an ``int`` (not a ``bool``) of at least zero, else ``error`` naming ``name``."""
    if not _is_int(value) or value < 0:
        raise error(f"{name} must be a non-negative integer, got {value!r}")
    return int(value)


def _is_int(value) -> bool:
    import numpy as np

    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)
