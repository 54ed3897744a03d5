"""A fast training path: the same model and loss as ``jaxrnn.sequence_loss``, organised for speed.

Shapes: ``xs (T, ...)`` ids or ``(T, ..., D)`` inputs, ``zxs (T, ..., G)`` input projections with ``G = H`` (RNN)
or ``4H`` (LSTM), ``hs (T, ..., H)``, carry with batch shape ``(...)``.

Three changes, each a rearrangement of the same sums (``tests/test_fast.py`` pins values and gradients equal
to ``sequence_loss`` over ``rnn_step``/``lstm_step`` in float64 and float32):

1. The input projection ``Wxh x_t`` is computed for all ``T`` steps at once before the time loop (one matmul,
   or one lookup for token ids), so the loop body only multiplies by ``Whh``.
2. The readout ``Why h_t + by`` is applied once to all ``hs``, as ``sequence_loss`` already does.
3. The recurrence has a hand-written backward pass, the manual BPTT of ``jaxrnn.reference``: a reverse scan
   carries ``dhnext`` (and ``dcnext``) and emits the pre-activation gradients ``dz_t``; the weight gradients
   ``dWhh = sum_t dz_t h_{t-1}^T`` and ``dbh = sum_t dz_t`` are then one matmul and one sum over all ``T * B``
   rows, instead of one small outer-product matmul per time step inside the loop.

The gate maths is not restated: the pointwise part of a step is ``rnn_cell`` / ``lstm_cell`` called with an
empty recurrent term (a zero-width ``Whh``), so ``jax.vjp`` of that call is the per-step backward.
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import optax

from jaxrnn.cells import LSTMCarry, LSTMParams, RNNParams, input_projection, lstm_cell, readout, rnn_cell
from jaxrnn.losses import REDUCTIONS, sequence_loss, softmax_cross_entropy


def _pointwise(z, carry_prev):
    """The cell's update from its full pre-activation ``z = Wxh x + Whh h_{t-1} + bh``: ``(carry_t, h_t)``.

    ``rnn_cell`` / ``lstm_cell`` with a zero-width ``Whh`` and zero ``bh`` add nothing to ``z``; only the
    previous cell state ``c`` (LSTM) enters.
    """
    zero = jnp.zeros((), z.dtype)
    no_recurrence = jnp.zeros((z.shape[-1], 0), z.dtype)
    empty_h = jnp.zeros((*z.shape[:-1], 0), z.dtype)
    if isinstance(carry_prev, LSTMCarry):
        params = LSTMParams(None, no_recurrence, None, zero, None)
        return lstm_cell(params, LSTMCarry(empty_h, carry_prev.c), z)
    h = rnn_cell(RNNParams(None, no_recurrence, None, zero, None), empty_h, z)
    return h, h


def _hidden(carry):
    return carry.h if isinstance(carry, LSTMCarry) else carry


def _forward(Whh, bh, carry, zxs):
    """Scan the recurrence, keeping each step's pre-activation ``z_t`` and incoming carry for the backward."""

    def body(carry, zx):
        z = zx + _hidden(carry) @ Whh.T + bh
        new_carry, h = _pointwise(z, carry)
        return new_carry, (h, z, carry)

    return jax.lax.scan(body, carry, zxs)


@jax.custom_vjp
def recurrence(Whh, bh, carry, zxs):
    """Run the cell over precomputed input projections.

    Args: ``Whh (G, H)``, ``bh (G,)``, carry ``h (..., H)`` or ``LSTMCarry``, ``zxs (T, ..., G)`` (``Wxh x_t``).
    Returns: ``(carry_T, hs (T, ..., H))``. Differentiable in all four arguments by manual BPTT.
    """
    carry_T, (hs, _, _) = _forward(Whh, bh, carry, zxs)
    return carry_T, hs


def _recurrence_fwd(Whh, bh, carry, zxs):
    carry_T, (hs, zs, carries) = _forward(Whh, bh, carry, zxs)
    return (carry_T, hs), (Whh, zs, carries)


def _recurrence_bwd(residuals, cotangents):
    Whh, zs, carries = residuals
    d_carry_T, dhs = cotangents

    def body(d_carry, step):  # d_carry: gradient reaching carry_t from later steps (dhnext, dcnext)
        z, carry_prev, dh = step
        _, pullback = jax.vjp(_pointwise, z, carry_prev)
        dz, d_carry_prev = pullback((d_carry, dh))
        dh_prev = _hidden(d_carry_prev) + dz @ Whh  # the empty h of _pointwise gets no gradient; Whh^T dz does
        d_carry_prev = LSTMCarry(dh_prev, d_carry_prev.c) if isinstance(d_carry_prev, LSTMCarry) else dh_prev
        return d_carry_prev, dz

    d_carry_0, dzs = jax.lax.scan(body, d_carry_T, (zs, carries, dhs), reverse=True)
    h_prevs = _hidden(carries)
    G, H = Whh.shape
    dWhh = dzs.reshape(-1, G).T @ h_prevs.reshape(-1, H)  # all T * B outer products in one matmul
    dbh = dzs.reshape(-1, G).sum(axis=0)
    return dWhh, dbh, d_carry_0, dzs


recurrence.defvjp(_recurrence_fwd, _recurrence_bwd)


def fast_sequence_loss(params, carry, xs, targets, *, mask=None, reduction: str = "sum"):
    """``jaxrnn.sequence_loss`` for ``RNNParams``/``LSTMParams``, computed by the fast path.

    Args and returns as ``sequence_loss``: ``(loss, carry_T)``; use ``jax.value_and_grad(..., has_aux=True)``.
    """
    if not isinstance(params, (RNNParams, LSTMParams)):
        raise TypeError(f"fast_sequence_loss: params must be RNNParams or LSTMParams, got {type(params).__name__}")
    if isinstance(params, LSTMParams) != isinstance(carry, LSTMCarry):
        raise TypeError(f"fast_sequence_loss: carry {type(carry).__name__} does not match {type(params).__name__}"
                        " (see jaxrnn.initial_carry)")
    zxs = input_projection(params.Wxh, xs)  # all T steps at once
    for leaf in jax.tree.leaves(carry):
        if leaf.shape != zxs.shape[1:-1] + (params.Whh.shape[1],) or leaf.dtype != zxs.dtype:
            raise ValueError(f"fast_sequence_loss: carry has shape {leaf.shape} {leaf.dtype}; expected "
                             f"{zxs.shape[1:-1] + (params.Whh.shape[1],)} {zxs.dtype} for these inputs")
    carry_T, hs = recurrence(params.Whh, params.bh, carry, zxs)
    return softmax_cross_entropy(readout(params, hs), targets, mask, reduction=reduction), carry_T


def _update(optimizer, loss_fn, params, opt_state, carry, xs, targets, mask=None):
    (loss, carry_T), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, carry, xs, targets, mask=mask)
    updates, opt_state = optimizer.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, carry_T, loss


def make_fast_train_step(optimizer: optax.GradientTransformation, *, reduction: str = "sum", loss_fn=None):
    """``jaxrnn.make_train_step`` on the fast path: ``train_step(params, opt_state, carry, xs, targets,
    mask=None) -> (params, opt_state, carry_T, loss)``, jitted.

    ``loss_fn(params, carry, xs, targets, *, mask) -> (loss, carry_T)`` replaces ``fast_sequence_loss`` (e.g.
    for a model with an embedding in front of the cell).
    """
    loss_fn = functools.partial(fast_sequence_loss, reduction=reduction) if loss_fn is None else loss_fn
    return jax.jit(functools.partial(_update, optimizer, loss_fn))


def make_fast_train_loop(optimizer: optax.GradientTransformation, *, reduction: str = "sum", loss_fn=None):
    """Many updates in one compiled call: ``train_loop(params, opt_state, carry, xs_chunks, targets_chunks)
    -> (params, opt_state, carry_N, losses (N,))`` with chunks ``(N, T, ...)``.

    Update ``n`` trains on chunk ``n`` starting from the carry left by chunk ``n - 1`` (truncated BPTT), exactly
    as ``N`` calls of ``make_fast_train_step`` would, without returning to Python in between.
    """
    loss_fn = functools.partial(fast_sequence_loss, reduction=reduction) if loss_fn is None else loss_fn

    def train_loop(params, opt_state, carry, xs_chunks, targets_chunks):
        def body(state, chunk):
            params, opt_state, carry = state
            params, opt_state, carry, loss = _update(optimizer, loss_fn, params, opt_state, carry, *chunk, None)
            return (params, opt_state, carry), loss

        (params, opt_state, carry), losses = jax.lax.scan(body, (params, opt_state, carry),
                                                          (xs_chunks, targets_chunks))
        return params, opt_state, carry, losses

    return jax.jit(train_loop)


def segmented_sequence_loss(params, carry, xs, targets, *, segment_length: int, step=None, mask=None,
                            reduction: str = "sum"):
    """``jaxrnn.sequence_loss`` whose backward pass keeps memory ``O(T / S + S)`` instead of ``O(T)``.

    The sequence is cut into segments of ``S = segment_length`` steps; each segment (unroll, readout, loss) is
    wrapped in ``jax.checkpoint``, so the forward pass keeps only the carry at segment boundaries and the
    backward pass recomputes one segment at a time. ``S ~ sqrt(T)`` makes memory grow like ``sqrt(T)`` at the
    cost of one extra forward pass. ``T`` must be a multiple of ``S``. Returns ``(loss, carry_T)``.
    """
    if reduction not in REDUCTIONS:
        raise ValueError(f"unknown reduction {reduction!r}; expected one of {REDUCTIONS}")
    targets = jnp.asarray(targets)
    T = targets.shape[0] if targets.ndim else 0
    if not isinstance(segment_length, int) or segment_length < 1 or T % segment_length:
        raise ValueError(f"segment_length must be a positive divisor of T = {T}, got {segment_length!r}")
    ones = jnp.ones(targets.shape, jnp.result_type(float)) if mask is None else jnp.asarray(mask)
    split = lambda a: a.reshape(T // segment_length, segment_length, *a.shape[1:])

    @jax.checkpoint
    def segment(params, carry, chunk):
        x, y, m = chunk
        loss, carry = sequence_loss(params, carry, x, y, step=step, mask=m, reduction="sum")
        return carry, loss

    carry_T, losses = jax.lax.scan(lambda c, chunk: segment(params, c, chunk), carry,
                                   jax.tree.map(split, (xs, targets, ones)))
    total = losses.sum()
    return (total if reduction == "sum" else total / jnp.maximum(ones.sum(), 1)), carry_T
