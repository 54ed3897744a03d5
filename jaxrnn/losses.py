"""The lecture's sequence loss: softmax cross-entropy of the readout, summed over time.

Shapes: ``ys (T, ..., V)`` scores, ``targets (T, ...)`` integer ids, ``mask (T, ...)`` 1 where a target counts.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from jaxrnn._checks import any_of, nan_if, token_ids_out_of_range
from jaxrnn.cells import readout
from jaxrnn.precision import cast_weights, check_compute_dtype
from jaxrnn.registry import step_for
from jaxrnn.typing import (
    REDUCTIONS,
    Array,
    ArrayLike,
    Carry,
    DTypeLike,
    Method,
    Padding,
    Params,
    PRNGKey,
    PyTree,
    Reduction,
)
from jaxrnn.unrolling import _check_options, _poison_lookup, _unroll, check_inputs, length_mask, to_time_major

if TYPE_CHECKING:
    from jaxrnn.newton import NewtonSolver


def softmax_cross_entropy(
    ys: Array, targets: ArrayLike, mask: ArrayLike | None = None, *, reduction: Reduction = "sum"
) -> Array:
    """``-log softmax(ys)[target]`` over all positions: summed (the lecture, min-char-rnn) or averaged per
    counted target (``"mean"``, the usual nats per character).

    Args:
      ys: scores ``(..., V)``.
      targets: integer ids ``(...)`` in ``[0, V)``.
      mask: ``(...)``, which targets count.

    Returns:
      A scalar; NaN (with NaN gradients) under ``jit`` when a target is outside ``[0, V)``, a ``ValueError``
      for known values.
    """
    if reduction not in REDUCTIONS:
        raise ValueError(f"unknown reduction {reduction!r}; expected one of {REDUCTIONS}")
    targets = jnp.asarray(targets)
    if not jnp.issubdtype(targets.dtype, jnp.integer):
        raise TypeError(f"targets must be integer ids, got dtype {targets.dtype}")
    if ys.shape[:-1] != targets.shape:
        raise ValueError(
            f"scores {ys.shape} and targets {targets.shape} disagree; expected targets of shape {ys.shape[:-1]}"
        )
    bad = token_ids_out_of_range("softmax_cross_entropy: targets", targets, ys.shape[-1])
    logp = jax.nn.log_softmax(ys, axis=-1)
    nll = -jnp.take_along_axis(logp, targets[..., None], axis=-1)[..., 0]
    if mask is None:
        total = nll.sum() if reduction == "sum" else nll.mean()
    else:
        mask = jnp.asarray(mask, nll.dtype)
        if mask.shape != nll.shape:
            raise ValueError(f"mask has shape {mask.shape}; expected {nll.shape} like the targets")
        total = (nll * mask).sum()
        total = total if reduction == "sum" else total / jnp.maximum(mask.sum(), 1)
    return nan_if(bad, total)


def sequence_loss(
    params: Params,
    carry: Carry,
    xs: PyTree,
    targets: ArrayLike,
    *,
    step: Callable[..., Any] | None = None,
    mask: ArrayLike | None = None,
    lengths: ArrayLike | None = None,
    padding: Padding = "right",
    reduction: Reduction = "sum",
    method: Method = "scan",
    unroll: int = 1,
    remat: bool = False,
    segment_length: int | None = None,
    key: PRNGKey | None = None,
    dropout: float = 0.0,
    newton: NewtonSolver | None = None,
    time_major: bool = True,
    compute_dtype: DTypeLike | None = None,
) -> tuple[Array, Carry]:
    """Unroll, read out every ``h_t`` at once, and score the targets.

    Args:
      params, carry: e.g. ``RNNParams`` and ``h (..., H)``; ``step`` defaults to ``jaxrnn.step_for(params)``.
      xs: float features ``(T, ..., D)`` or integer token ids ``(T, ...)``; targets: ``(T, ...)`` ids in
        ``[0, V)``.
      mask: optional ``(T, ...)``: which targets count; the state still runs through every step.
      lengths: ``(...)`` for a batch of sequences of different lengths padded to T (``padding`` "right" or
        "left"): each sequence's state is frozen outside its own steps (``unroll(..., lengths=)``) and only its
        own targets count, so loss, gradients and ``carry_T`` equal running each sequence alone.
      reduction: ``"sum"`` over every counted target (the lecture's), or ``"mean"`` (nats per target).
      method, unroll, remat, key, dropout, newton: passed to ``jaxrnn.unroll`` (``method`` is ``"auto"``,
        ``"scan"``, ``"loop"``, ``"fused"`` or ``"newton"``; ``key``/``dropout`` act between the layers of a stack, and
        ``dropout > 0`` needs ``key``).
      segment_length: ``S`` dividing ``T``: the backward pass keeps memory ``O(T / S + S)`` instead of ``O(T)``.
        Each segment of ``S`` steps (unroll, readout, loss) runs under ``jax.checkpoint``, so the forward pass
        keeps only the carries at segment boundaries and the backward pass recomputes one segment at a time;
        ``S ~ sqrt(T)`` makes memory grow like ``sqrt(T)`` for one extra forward pass. Segment ``k`` draws its
        dropout from ``fold_in(key, k)``.
      compute_dtype: the dtype the weight matrices (recurrence and readout) multiply in, e.g. ``jnp.bfloat16``;
        state, gates, softmax and loss stay in float32 and gradients reach the parameters in their own dtype
        (``jaxrnn.precision``). ``None``: the parameters' dtype.
      time_major: ``False`` reads batch-major ``xs (..., T, D)`` (or ids ``(..., T)``), ``targets (..., T)`` and
        ``mask (..., T)``.

    Returns: ``(loss, carry_T)``: use ``jax.value_and_grad(sequence_loss, has_aux=True)``; feeding ``carry_T``
      into the next chunk (with no gradient through it) is truncated backpropagation through time.

    Raises:
      ValueError: an unknown option, ``dropout > 0`` without ``key``, inputs that do not fit the carry, or
        token ids (inputs or targets) outside ``[0, V)``. Under ``jit`` the ids' values are not known: an id out
        of range makes the loss and every gradient NaN instead (and is an error under
        ``jax.experimental.checkify.checkify`` inside ``jaxrnn.checkify_token_ids()``).

    Example:
      >>> import jax, jaxrnn
      >>> params = jaxrnn.init_rnn(jax.random.key(0), input_size=4, hidden_size=8, output_size=4)
      >>> ids = jax.numpy.asarray([[0], [1], [2], [3], [0]])  # T = 5, one stream
      >>> loss, carry_T = jaxrnn.sequence_loss(params, jaxrnn.initial_carry(params, (1,)), ids[:-1], ids[1:])
      >>> loss.shape, carry_T.shape
      ((), (1, 8))
    """
    if reduction not in REDUCTIONS:
        raise ValueError(f"sequence_loss: unknown reduction {reduction!r}; expected one of {REDUCTIONS}")
    _check_options(
        "sequence_loss", method=method, unroll=unroll, remat=remat, dropout=dropout, newton=newton, padding=padding
    )
    check_compute_dtype("sequence_loss", compute_dtype)
    if dropout > 0 and key is None:
        raise ValueError(f"sequence_loss: dropout={dropout} needs key= (the PRNG key of the dropout masks)")
    if not time_major:
        xs, targets = to_time_major(carry, xs), to_time_major(carry, targets)
        mask = None if mask is None else to_time_major(carry, mask)
    bad_inputs = check_inputs("sequence_loss", params, carry, xs)
    targets = jnp.asarray(targets)
    if not jnp.issubdtype(targets.dtype, jnp.integer):
        raise TypeError(f"sequence_loss: targets must be integer ids, got dtype {targets.dtype}")
    Why = getattr(params, "Why", None)
    bad_targets = None if Why is None else token_ids_out_of_range("sequence_loss: targets", targets, Why.shape[0])
    bad = any_of(bad_inputs, bad_targets)
    loss, carry_T = _sequence_loss(
        cast_weights(_poison_lookup(params, bad), compute_dtype),
        carry,
        xs,
        targets,
        step=step_for(params) if step is None else step,
        mask=mask,
        lengths=lengths,
        padding=padding,
        reduction=reduction,
        segment_length=segment_length,
        key=key,
        dropout=dropout,
        options=dict(method=method, unroll=unroll, remat=remat, newton=newton),
    )
    return nan_if(bad, (loss, carry_T))


def _sequence_loss(
    params: Params,
    carry: Carry,
    xs: PyTree,
    targets: Array,
    *,
    step: Callable[..., Any],
    mask: ArrayLike | None,
    lengths: ArrayLike | None,
    padding: Padding,
    reduction: Reduction,
    segment_length: int | None,
    key: PRNGKey | None,
    dropout: float,
    options: dict[str, Any],
) -> tuple[Array, Carry]:
    """``sequence_loss`` of time-major inputs, checked already."""
    if segment_length is not None:
        if lengths is not None:
            raise ValueError("sequence_loss: segment_length takes a mask, not lengths")
        return _segmented_loss(params, carry, xs, targets, mask, reduction, segment_length, key, dropout, step, options)
    if lengths is not None:
        if mask is not None:
            raise ValueError("sequence_loss: pass mask or lengths, not both")
        mask = length_mask(lengths, jnp.shape(targets)[0], padding=padding)
        carry_T, hs = _unroll(
            step,
            params,
            carry,
            xs,
            mask=mask,
            lengths=None,
            padding=padding,
            key=None,
            dropout=0.0,
            reverse=False,
            **options,
        )
    else:
        carry_T, hs = _unroll(
            step,
            params,
            carry,
            xs,
            mask=None,
            lengths=None,
            padding=padding,
            key=key,
            dropout=dropout,
            reverse=False,
            **options,
        )
    loss = softmax_cross_entropy(readout(params, hs), targets, mask, reduction=reduction)
    return loss, carry_T


def _segmented_loss(
    params: Params,
    carry: Carry,
    xs: PyTree,
    targets: ArrayLike,
    mask: ArrayLike | None,
    reduction: Reduction,
    segment_length: int,
    key: PRNGKey | None,
    dropout: float,
    step: Callable[..., Any],
    options: dict[str, Any],
) -> tuple[Array, Carry]:
    """``sequence_loss`` with ``segment_length``: a scan over segments, each under ``jax.checkpoint``."""
    targets = jnp.asarray(targets)
    T = targets.shape[0] if targets.ndim else 0
    if not isinstance(segment_length, int) or segment_length < 1 or T % segment_length:
        raise ValueError(f"segment_length must be a positive divisor of T = {T}, got {segment_length!r}")
    weights = jnp.ones(targets.shape, jnp.result_type(float)) if mask is None else jnp.asarray(mask)
    segments = T // segment_length
    split = lambda a: a.reshape(segments, segment_length, *a.shape[1:])

    @jax.checkpoint
    def segment(params: Params, carry: Carry, chunk: tuple[PyTree, Array, Array, Array]) -> tuple[Carry, Array]:
        x, y, m, k = chunk
        loss, carry = _sequence_loss(
            params,
            carry,
            x,
            y,
            step=step,
            mask=m,
            lengths=None,
            padding="right",
            reduction="sum",
            segment_length=None,
            key=None if key is None else jax.random.fold_in(key, k),
            dropout=dropout,
            options=options,
        )
        return carry, loss

    chunks = (*jax.tree.map(split, (xs, targets, weights)), jnp.arange(segments))
    carry_T, losses = jax.lax.scan(lambda c, chunk: segment(params, c, chunk), carry, chunks)
    total = losses.sum()
    return (total if reduction == "sum" else total / jnp.maximum(weights.sum(), 1)), carry_T
