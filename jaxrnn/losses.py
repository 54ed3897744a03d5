"""The lecture's sequence loss: softmax cross-entropy of the readout, summed over time.

Shapes: ``ys (T, ..., V)`` scores, ``targets (T, ...)`` integer ids, ``mask (T, ...)`` 1 where a target counts.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxrnn.cells import readout
from jaxrnn.registry import step_for
from jaxrnn.typing import REDUCTIONS
from jaxrnn.unrolling import length_mask
from jaxrnn.unrolling import unroll as _unroll


def softmax_cross_entropy(ys, targets, mask=None, *, reduction: str = "sum"):
    """``-log softmax(ys)[target]`` over all positions: summed (the lecture, min-char-rnn) or averaged per
    counted target (``"mean"``, the usual nats per character)."""
    if reduction not in REDUCTIONS:
        raise ValueError(f"unknown reduction {reduction!r}; expected one of {REDUCTIONS}")
    targets = jnp.asarray(targets)
    if not jnp.issubdtype(targets.dtype, jnp.integer):
        raise TypeError(f"targets must be integer ids, got dtype {targets.dtype}")
    if ys.shape[:-1] != targets.shape:
        raise ValueError(
            f"scores {ys.shape} and targets {targets.shape} disagree; expected targets of shape {ys.shape[:-1]}"
        )
    logp = jax.nn.log_softmax(ys, axis=-1)
    nll = -jnp.take_along_axis(logp, targets[..., None], axis=-1)[..., 0]
    if mask is None:
        return nll.sum() if reduction == "sum" else nll.mean()
    mask = jnp.asarray(mask, nll.dtype)
    if mask.shape != nll.shape:
        raise ValueError(f"mask has shape {mask.shape}; expected {nll.shape} like the targets")
    total = (nll * mask).sum()
    return total if reduction == "sum" else total / jnp.maximum(mask.sum(), 1)


def sequence_loss(
    params,
    carry,
    xs,
    targets,
    *,
    step=None,
    mask=None,
    lengths=None,
    padding: str = "right",
    reduction: str = "sum",
    method: str = "scan",
    unroll: int = 1,
    remat: bool = False,
    segment_length: int | None = None,
    key=None,
    dropout: float = 0.0,
    newton=None,
):
    """Unroll, read out every ``h_t`` at once, and score the targets.

    Args:
      params, carry: e.g. ``RNNParams`` and ``h (..., H)``; ``step`` defaults to ``jaxrnn.step_for(params)``.
      xs: ``(T, ..., D)`` or token ids ``(T, ...)``; targets: ``(T, ...)`` ids.
      mask: optional ``(T, ...)``: which targets count; the state still runs through every step.
      lengths: ``(...)`` for a batch of sequences of different lengths padded to T (``padding`` "right" or
        "left"): each sequence's state is frozen outside its own steps (``unroll(..., lengths=)``) and only its
        own targets count, so loss, gradients and ``carry_T`` equal running each sequence alone.
      reduction: ``"sum"`` over every counted target (the lecture's), or ``"mean"`` (nats per target).
      method, unroll, remat, key, dropout, newton: passed to ``jaxrnn.unroll`` (``method`` is ``"scan"``,
        ``"loop"``, ``"fused"`` or ``"newton"``; ``key``/``dropout`` act between the layers of a stack).
      segment_length: ``S`` dividing ``T``: the backward pass keeps memory ``O(T / S + S)`` instead of ``O(T)``.
        Each segment of ``S`` steps (unroll, readout, loss) runs under ``jax.checkpoint``, so the forward pass
        keeps only the carries at segment boundaries and the backward pass recomputes one segment at a time;
        ``S ~ sqrt(T)`` makes memory grow like ``sqrt(T)`` for one extra forward pass. Segment ``k`` draws its
        dropout from ``fold_in(key, k)``.
    Returns: ``(loss, carry_T)``: use ``jax.value_and_grad(sequence_loss, has_aux=True)``; feeding ``carry_T``
      into the next chunk (with no gradient through it) is truncated backpropagation through time.
    """
    if reduction not in REDUCTIONS:
        raise ValueError(f"unknown reduction {reduction!r}; expected one of {REDUCTIONS}")
    step = step_for(params) if step is None else step
    options = dict(step=step, method=method, unroll=unroll, remat=remat, newton=newton)
    if segment_length is not None:
        if lengths is not None:
            raise ValueError("sequence_loss: segment_length takes a mask, not lengths")
        return _segmented_loss(params, carry, xs, targets, mask, reduction, segment_length, key, dropout, options)
    if lengths is not None:
        if mask is not None:
            raise ValueError("sequence_loss: pass mask or lengths, not both")
        mask = length_mask(lengths, jnp.shape(targets)[0], padding=padding)
        carry_T, hs = _unroll(
            step, params, carry, xs, mask=mask, method=method, unroll=unroll, remat=remat, newton=newton
        )
    else:
        carry_T, hs = _unroll(
            step, params, carry, xs, method=method, unroll=unroll, remat=remat, key=key, dropout=dropout, newton=newton
        )
    loss = softmax_cross_entropy(readout(params, hs), targets, mask, reduction=reduction)
    return loss, carry_T


def _segmented_loss(params, carry, xs, targets, mask, reduction, segment_length, key, dropout, options):
    """``sequence_loss`` with ``segment_length``: a scan over segments, each under ``jax.checkpoint``."""
    targets = jnp.asarray(targets)
    T = targets.shape[0] if targets.ndim else 0
    if not isinstance(segment_length, int) or segment_length < 1 or T % segment_length:
        raise ValueError(f"segment_length must be a positive divisor of T = {T}, got {segment_length!r}")
    weights = jnp.ones(targets.shape, jnp.result_type(float)) if mask is None else jnp.asarray(mask)
    segments = T // segment_length
    split = lambda a: a.reshape(segments, segment_length, *a.shape[1:])

    @jax.checkpoint
    def segment(params, carry, chunk):
        x, y, m, k = chunk
        loss, carry = sequence_loss(
            params,
            carry,
            x,
            y,
            mask=m,
            reduction="sum",
            dropout=dropout,
            key=None if key is None else jax.random.fold_in(key, k),
            **options,
        )
        return carry, loss

    chunks = (*jax.tree.map(split, (xs, targets, weights)), jnp.arange(segments))
    carry_T, losses = jax.lax.scan(lambda c, chunk: segment(params, c, chunk), carry, chunks)
    total = losses.sum()
    return (total if reduction == "sum" else total / jnp.maximum(weights.sum(), 1)), carry_T
