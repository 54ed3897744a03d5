"""A jitted training step for truncated backpropagation through time.

Shapes: ``xs (T, ...)`` inputs or ids, ``targets (T, ...)`` ids, carry with batch shape ``(...)``.
"""
from __future__ import annotations

import jax
import optax

from jaxrnn.cells import step_for
from jaxrnn.losses import sequence_loss


def make_train_step(optimizer: optax.GradientTransformation, *, step=None, reduction: str = "sum",
                    method: str = "scan", unroll: int = 1, remat: bool = False, donate: bool = False):
    """Build ``train_step(params, opt_state, carry, xs, targets, mask=None) -> (params, opt_state, carry_T, loss)``.

    The gradient flows only within the chunk ``xs``: ``carry`` comes in as a plain input, so carrying
    ``carry_T`` into the next call is truncated BPTT. The returned function is ``jax.jit``-compiled and is
    traced once per input shape.

    ``donate=True`` lets the step write the new ``params`` and ``opt_state`` into the buffers of the ones passed
    in (``jax.jit``'s ``donate_argnums``), as an in-place optimiser would: no fresh buffers per call, but the
    arrays passed in are deleted by the call, so keep only what it returns. It saves memory; on XLA:CPU it changed
    the step's time by 0-4%, within the noise (``benchmarks/README.md``, "Donating the training state").
    """

    def train_step(params, opt_state, carry, xs, targets, mask=None):
        cell = step_for(params) if step is None else step
        (loss, carry_T), grads = jax.value_and_grad(sequence_loss, has_aux=True)(
            params, carry, xs, targets, step=cell, mask=mask, reduction=reduction, method=method,
            unroll=unroll, remat=remat)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, carry_T, loss

    return jax.jit(train_step, donate_argnums=donate_state(donate))


def donate_state(donate: bool) -> tuple[int, ...]:
    """``donate_argnums`` of a training step ``(params, opt_state, ...)``: ``(0, 1)`` when ``donate``, else ``()``."""
    return (0, 1) if donate else ()
