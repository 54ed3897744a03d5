"""Argument checks shared by the library: one wording for each check, and token ids that cannot pass unnoticed."""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Callable, Iterator
from typing import Any, TypeGuard

import jax
import jax.core  # imported by jax itself; named here so that type checkers see jax.core
import jax.numpy as jnp
import numpy as np
from jax.experimental import checkify


class SettingError(ValueError):
    """An impossible setting: a one-line message that starts with ``setting``, the name of the offending field
    (so that a command line can put its own flag name in its place)."""

    def __init__(self, message: str, setting: str | None = None):
        super().__init__(message)
        self.setting = setting


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
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def is_concrete(x: object) -> bool:
    """Whether ``x`` holds known values (not a tracer of ``jit``, ``grad``, ``vmap`` or ``scan``)."""
    return not isinstance(x, jax.core.Tracer)


def is_token_ids(x: Any) -> bool:
    """Whether ``x`` is an integer array: jaxrnn reads integer inputs as token ids, float inputs as features."""
    return hasattr(x, "dtype") and jnp.issubdtype(x.dtype, jnp.integer)


def token_ids_out_of_range(name: str, ids: Any, V: int) -> jax.Array | None:
    """Check that every id of ``ids`` lies in ``[0, V)``.

    With known values: raises ``ValueError`` naming ``name``, the range found and ``V``; returns ``None``.
    Traced (under ``jit``): returns a traced boolean, true when an id is out of range, for the caller to turn its
    results into NaN; inside ``checkify_token_ids()`` the condition is also a ``checkify`` check.
    """
    if is_concrete(ids):
        known = np.asarray(ids)
        if known.size and (known.min() < 0 or known.max() >= V):
            raise ValueError(
                f"{name}: token ids must lie in [0, {V}) (V = {V}), found {int(known.min())}..{int(known.max())}"
            )
        return None
    bad = jnp.any((ids < 0) | (ids >= V))
    if _checkify_ids.get():
        checkify.check(~bad, f"{name}: token ids must lie in [0, {V}) (V = {V})")
    return bad


_checkify_ids: contextvars.ContextVar[bool] = contextvars.ContextVar("jaxrnn_checkify_ids", default=False)


@contextlib.contextmanager
def checkify_token_ids() -> Iterator[None]:
    """Functions traced inside this context also state the token-id check as a ``jax.experimental.checkify``
    check, so that ``checkify.checkify(f)`` reports an id out of range by name inside ``jit``::

        with jaxrnn.checkify_token_ids():
            err, loss = checkify.checkify(jax.jit(loss_fn))(params, xs, ys)
        err.throw()  # ValueError-like JaxRuntimeError: "sequence_loss: xs: token ids must lie in [0, V)"

    Outside it (the default) the check only turns results NaN: a checkify check in a compiled function that is
    not checkified is an error, and an unchecked one slows every call down.
    """
    token = _checkify_ids.set(True)
    try:
        yield
    finally:
        _checkify_ids.reset(token)


def nan_if(bad: jax.Array | None, tree: Any) -> Any:
    """``tree`` with every float leaf multiplied by NaN where the traced boolean ``bad`` is true (by 1 elsewhere).

    A product, not a ``where``: its derivative is NaN too, so every gradient that flows through ``tree`` is NaN
    when ``bad``, in reverse and forward mode. ``bad is None`` (checked already) returns ``tree`` unchanged.
    """
    if bad is None:
        return tree
    scale = jnp.where(bad, jnp.nan, 1.0)
    floating = lambda a: hasattr(a, "dtype") and jnp.issubdtype(a.dtype, jnp.inexact)
    return jax.tree.map(lambda a: a * scale.astype(a.dtype) if floating(a) else a, tree)


def any_of(*flags: jax.Array | None) -> jax.Array | None:
    """The logical or of the traced booleans among ``flags`` (``None`` where none is traced)."""
    traced = [f for f in flags if f is not None]
    if not traced:
        return None
    out = traced[0]
    for f in traced[1:]:
        out = jnp.logical_or(out, f)
    return out
