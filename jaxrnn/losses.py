"""The lecture's sequence loss: softmax cross-entropy of the readout, summed over time.

Shapes: ``ys (T, ..., V)`` scores, ``targets (T, ...)`` integer ids, ``mask (T, ...)`` 1 where a target counts.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxrnn.cells import readout, step_for
from jaxrnn.unrolling import length_mask
from jaxrnn.unrolling import unroll as _unroll

REDUCTIONS = ("sum", "mean")


def softmax_cross_entropy(ys, targets, mask=None, *, reduction: str = "sum"):
    """``-log softmax(ys)[target]`` over all positions: summed (the lecture, min-char-rnn) or averaged per
    counted target (``"mean"``, the usual nats per character)."""
    if reduction not in REDUCTIONS:
        raise ValueError(f"unknown reduction {reduction!r}; expected one of {REDUCTIONS}")
    targets = jnp.asarray(targets)
    if not jnp.issubdtype(targets.dtype, jnp.integer):
        raise TypeError(f"targets must be integer ids, got dtype {targets.dtype}")
    if ys.shape[:-1] != targets.shape:
        raise ValueError(f"scores {ys.shape} and targets {targets.shape} disagree; expected targets of shape "
                         f"{ys.shape[:-1]}")
    logp = jax.nn.log_softmax(ys, axis=-1)
    nll = -jnp.take_along_axis(logp, targets[..., None], axis=-1)[..., 0]
    if mask is None:
        return nll.sum() if reduction == "sum" else nll.mean()
    mask = jnp.asarray(mask, nll.dtype)
    if mask.shape != nll.shape:
        raise ValueError(f"mask has shape {mask.shape}; expected {nll.shape} like the targets")
    total = (nll * mask).sum()
    return total if reduction == "sum" else total / jnp.maximum(mask.sum(), 1)


def sequence_loss(params, carry, xs, targets, *, step=None, mask=None, lengths=None, padding: str = "right",
                  reduction: str = "sum", method: str = "scan", unroll: int = 1, remat: bool = False):
    """Unroll, read out every ``h_t`` at once, and score the targets.

    Args:
      params, carry: e.g. ``RNNParams`` and ``h (..., H)``; ``step`` defaults to the one for ``params``.
      xs: ``(T, ..., D)`` or token ids ``(T, ...)``; targets: ``(T, ...)`` ids; mask: optional ``(T, ...)``.
      mask: which targets count; the state still runs through every step.
      lengths: ``(...)`` for a batch of sequences of different lengths padded to T (``padding`` "right" or
        "left"): each sequence's state is frozen outside its own steps (``unroll(..., lengths=)``) and only its
        own targets count, so loss, gradients and ``carry_T`` equal running each sequence alone.
      method, unroll, remat: passed to ``jaxrnn.unroll``.
    Returns: ``(loss, carry_T)``: use ``jax.value_and_grad(sequence_loss, has_aux=True)``; feeding ``carry_T``
      into the next chunk (with no gradient through it) is truncated backpropagation through time.
    """
    step = step_for(params) if step is None else step
    if lengths is not None:
        if mask is not None:
            raise ValueError("sequence_loss: pass mask or lengths, not both")
        mask = length_mask(lengths, jnp.shape(targets)[0], padding=padding)
        carry_T, hs = _unroll(step, params, carry, xs, mask=mask, method=method, unroll=unroll, remat=remat)
    else:
        carry_T, hs = _unroll(step, params, carry, xs, method=method, unroll=unroll, remat=remat)
    loss = softmax_cross_entropy(readout(params, hs), targets, mask, reduction=reduction)
    return loss, carry_T
