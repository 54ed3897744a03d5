"""The training step: loss, gradient, optimiser update; one compiled call may run many of them.

Shapes: ``xs (T, ...)`` inputs or ids, ``targets (T, ...)`` ids, carry with batch shape ``(...)``; with
``updates_per_call=K`` every per-update argument gets a leading ``K`` axis (``xs (K, T, ...)``).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import optax

from jaxrnn._checks import positive_int
from jaxrnn.losses import sequence_loss


def reset_carry(carry, reset):
    """Zero the state of the streams where ``reset (...)`` is true; keep the others (leaves ``(..., H)``)."""
    return jax.tree.map(lambda s: jnp.where(reset[..., None], jnp.zeros_like(s), s), carry)


def global_norm(tree):
    """``sqrt(sum of squares)`` over every leaf of ``tree``."""
    return jnp.sqrt(sum(jnp.sum(jnp.square(leaf)) for leaf in jax.tree.leaves(tree)))


def make_train_step(
    optimizer: optax.GradientTransformation,
    *,
    loss_fn=None,
    step=None,
    reduction: str = "sum",
    method: str = "scan",
    unroll: int = 1,
    remat: bool = False,
    segment_length: int | None = None,
    dropout: float = 0.0,
    newton=None,
    updates_per_call: int = 1,
    with_grad_norm: bool = False,
    donate: bool = False,
):
    """Build ``train_step(params, opt_state, carry, xs, targets, mask=None, *, reset=None, active=None, key=None)
    -> (params, opt_state, carry_T, loss)``, jitted.

    One update: ``(loss, carry_T), grads = value_and_grad(loss_fn)(params, carry, xs, targets, mask=mask)``,
    then the optimiser's update. The gradient flows only within the chunk ``xs``: ``carry`` comes in as a plain
    input, so carrying ``carry_T`` into the next call is truncated BPTT.

    Args:
      loss_fn: ``loss_fn(params, carry, xs, targets, *, mask=None[, key]) -> (loss, carry_T)``; by default
        ``sequence_loss`` with ``step``, ``reduction``, ``method``, ``unroll``, ``remat``, ``segment_length``,
        ``dropout`` (between the layers of a stack) and ``newton`` (the options of ``method="newton"``).
        ``key`` is passed only when the step is called with one.
      updates_per_call: ``K``: the step runs ``K`` updates in one compiled call (a ``lax.scan``), update ``k``
        on chunk ``k`` starting from the carry left by chunk ``k - 1``, exactly as ``K`` calls would, without
        returning to Python in between; ``loss`` is then ``(K,)``.
      with_grad_norm: also return the gradient's global norm (before the optimiser and its clipping) after the
        loss (``(K,)`` with ``K`` updates per call).
      donate: the new ``params`` and ``opt_state`` reuse the buffers of those passed in (``jax.jit``'s
        ``donate_argnums``): no fresh buffers per call, but the arrays passed in are deleted by the call.

    The step's keyword arguments: ``reset (...)`` (``(K, ...)``) zeroes the carry of the streams where it is
    true before the chunk (a stream that starts over); ``active`` (a boolean, ``(K,)``) skips an update where
    false (its loss reads 0), so that one compiled call serves a short last call too; ``key`` is the update's PRNG
    key (for dropout; ``(K, ...)``: one per update). The function is traced once per input shape.
    """
    K = positive_int("updates_per_call", updates_per_call)
    if loss_fn is None:
        loss_fn = functools.partial(
            sequence_loss,
            step=step,
            reduction=reduction,
            method=method,
            unroll=unroll,
            remat=remat,
            segment_length=segment_length,
            dropout=dropout,
            newton=newton,
        )

    def update(params, opt_state, carry, xs, targets, mask, reset, key):
        if reset is not None:
            carry = reset_carry(carry, reset)
        kw = {} if key is None else {"key": key}
        (loss, carry_T), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, carry, xs, targets, mask=mask, **kw)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        norm = global_norm(grads) if with_grad_norm else None
        return (optax.apply_updates(params, updates), opt_state, carry_T), (loss, norm)

    def finish(params, opt_state, carry, loss, norm):
        return (params, opt_state, carry, loss, norm) if with_grad_norm else (params, opt_state, carry, loss)

    def one(state, xs, targets, mask, reset, active, key):
        run = lambda s: update(*s, xs, targets, mask, reset, key)
        if active is None:
            return run(state)
        skipped = jax.tree.map(lambda a: jnp.zeros(a.shape, a.dtype), jax.eval_shape(run, state)[1])
        return jax.lax.cond(active, run, lambda s: (s, skipped), state)

    def train_step(params, opt_state, carry, xs, targets, mask=None, *, reset=None, active=None, key=None):
        if K == 1:
            state, (loss, norm) = one((params, opt_state, carry), xs, targets, mask, reset, active, key)
            return finish(*state, loss, norm)

        def body(state, batch):
            return one(state, *batch)

        batches = (xs, targets, mask, reset, active, key)
        _check_leading(K, batches)
        (params, opt_state, carry), (losses, norms) = jax.lax.scan(body, (params, opt_state, carry), batches)
        return finish(params, opt_state, carry, losses, norms)

    return jax.jit(train_step, donate_argnums=(0, 1) if donate else ())


def _check_leading(K: int, trees) -> None:
    for leaf in jax.tree.leaves(trees):
        if jnp.ndim(leaf) == 0 or jnp.shape(leaf)[0] != K:
            raise ValueError(
                f"train_step: with updates_per_call={K} every per-update argument needs a leading "
                f"axis of {K} (xs (K, T, ...)); got an array of shape {jnp.shape(leaf)}"
            )
