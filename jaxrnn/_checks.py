"""Argument checks shared by the library: one wording for every "must be a positive integer"."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeGuard

if TYPE_CHECKING:
    import numpy as np


def positive_int(name: str, value: object, *, error: Callable[[str], Exception] = ValueError) -> int:
    """``value`` if it is an ``int`` (not a ``bool``) greater than zero, else ``error`` naming ``name``."""
    if not _is_int(value) or value <= 0:
        raise error(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def non_negative_int(name: str, value: object, *, error: Callable[[str], Exception] = ValueError) -> int:
    """``value`` if it is an ``int`` (not a ``bool``) of at least zero, else ``error`` naming ``name``."""
    if not _is_int(value) or value < 0:
        raise error(f"{name} must be a non-negative integer, got {value!r}")
    return int(value)


def _is_int(value: object) -> TypeGuard[int | np.integer[Any]]:
    import numpy as np

    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)
