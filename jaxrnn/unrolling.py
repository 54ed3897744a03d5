"""Unrolling a step over time: ``jax.lax.scan`` (the fast path) or a Python loop (the same step, spelled out).

Shapes: ``xs (T, ...)`` time-major, any pytree whose leaves share the leading ``T``; outputs ``hs (T, ...)``.
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

METHODS = ("scan", "loop")


def _leading_length(xs) -> int:
    leaves = jax.tree.leaves(xs)
    if not leaves:
        raise ValueError("unroll: xs is empty; expected at least one array with a leading time axis (T, ...)")
    lengths = {getattr(leaf, "shape", (None,))[:1] for leaf in leaves}
    if len(lengths) != 1 or () in lengths:
        raise ValueError(f"unroll: every leaf of xs needs the same leading time axis, got shapes "
                         f"{[getattr(leaf, 'shape', None) for leaf in leaves]}")
    return lengths.pop()[0]


def _check_carry_kept(f, carry, x0) -> None:
    """Fail early, naming both shapes, when a step would change the carry's structure or shape."""
    carry_out, _ = jax.eval_shape(f, carry, x0)
    shape = lambda tree: jax.tree.map(lambda a: (tuple(a.shape), jnp.dtype(a.dtype).name), tree)
    if jax.tree.structure(carry_out) != jax.tree.structure(carry) or shape(carry_out) != shape(carry):
        raise ValueError(f"unroll: the step turns carry {shape(carry)} into {shape(carry_out)}; the initial "
                         "carry must already have the batch shape and dtype of the inputs "
                         "(see jaxrnn.initial_carry(params, batch_shape))")


def unroll(step, params, carry, xs, *, method: str = "scan", unroll: int = 1, remat: bool = False,
           reverse: bool = False):
    """Apply ``step(params, carry, x_t) -> (carry, h_t)`` for t = 0..T-1.

    Args:
      step: e.g. ``rnn_step`` or ``lstm_step``.
      carry: initial state (``h (..., H)`` or ``LSTMCarry``), already with the batch shape of ``xs[0]``.
      xs: inputs ``(T, ..., D)`` or token ids ``(T, ...)``.
      method: ``"scan"`` runs ``jax.lax.scan`` (one compiled loop body whatever T is); ``"loop"`` runs the
        same step in a Python loop (T copies of the body when traced under ``jit``: compile time grows with T).
      unroll: how many steps ``scan`` puts in one loop iteration (ignored by ``"loop"``).
      remat: wrap the step in ``jax.checkpoint``: the backward pass recomputes each step's internals instead of
        storing them, trading compute for memory on long sequences.
      reverse: run from t = T-1 down to 0 (outputs stay in time order).

    Returns: ``(carry_T, hs)`` with ``hs (T, ..., H)``.
    """
    if method not in METHODS:
        raise ValueError(f"unroll: unknown method {method!r}; expected one of {METHODS}")
    if not isinstance(unroll, int) or isinstance(unroll, bool) or unroll < 1:
        raise ValueError(f"unroll: unroll must be a positive integer, got {unroll!r}")
    T = _leading_length(xs)
    body = jax.checkpoint(step) if remat else step
    f = functools.partial(body, params)
    x0 = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape[1:], x.dtype), xs)
    _check_carry_kept(f, carry, x0)
    if method == "scan":
        return jax.lax.scan(f, carry, xs, unroll=unroll, reverse=reverse)
    outs = [None] * T
    for t in (reversed(range(T)) if reverse else range(T)):
        carry, outs[t] = f(carry, jax.tree.map(lambda x: x[t], xs))
    if T == 0:
        _, out_shape = jax.eval_shape(f, carry, x0)
        return carry, jax.tree.map(lambda s: jnp.zeros((0, *s.shape), s.dtype), out_shape)
    return carry, jax.tree.map(lambda *hs: jnp.stack(hs), *outs)
