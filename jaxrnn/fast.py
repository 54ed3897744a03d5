"""A fast training path: the same model and loss as ``jaxrnn.sequence_loss``, organised for speed.

Shapes: ``xs (T, ...)`` ids or ``(T, ..., D)`` inputs, ``zxs (T, ..., G)`` input projections with ``G = H`` (RNN)
or ``4H`` (LSTM), ``hs (T, ..., H)``, carry with batch shape ``(...)``.

Three changes, each a rearrangement of the same sums (``tests/test_fast.py`` pins values and gradients equal
to ``sequence_loss`` over ``rnn_step``/``lstm_step`` in float64 and float32):

1. The input projection ``Wxh x_t`` of float inputs is computed for all ``T`` steps at once before the time
   loop (one matmul), so the loop body only multiplies by ``Whh``. Token ids are looked up (column ``id_t`` of
   ``Wxh``) inside the loop instead (``recurrence_ids``): materialising all ``T`` lookups was a fresh
   ``(T, B, G)`` buffer per call, ~7% of the step at (B 64, T 128, H 512).
2. The readout ``Why h_t + by`` is applied once to all ``hs``, as ``sequence_loss`` already does.
3. The recurrence has a hand-written backward pass, the manual BPTT of ``jaxrnn.reference``: a reverse scan
   carries ``dhnext`` (and ``dcnext``) and emits the pre-activation gradients ``dz_t``; the weight gradient
   ``dWhh = sum_t dz_t h_{t-1}^T`` is then one matmul over all ``T * B`` rows, instead of one small
   outer-product matmul per time step inside the loop. ``dbh = sum_t dz_t`` (and, for token ids, the lookup's
   gradient ``dWxh``) is summed inside the loop, from each ``dz_t`` while it is still in cache.

The forward maths is not restated: a step applies ``lstm_gates`` then ``lstm_memory`` (the two halves of
``lstm_cell``), or ``rnn_cell`` with an empty recurrent term (a zero-width ``Whh``); the backward pass is
``jax.vjp`` of ``lstm_memory`` followed by the activations' derivatives written from their outputs,
``sigmoid' = s (1 - s)`` and ``tanh' = 1 - t^2``, as the reference writes them. The forward pass keeps the
activations (not the pre-activations), so the backward pass evaluates no exponential.

How the step is laid out for XLA:CPU (each pattern timed by ``benchmarks/step_layout.py``): the gates are
kept as four arrays, not slices of one ``(..., 4H)`` array (a fusion reading two slices of one buffer ran 5-7x
slower), the recurrent matmul runs as ``Whh @ h^T``, which XLA:CPU computed faster than ``h @ Whh^T`` (except
at batch 1 with ``H`` not a multiple of 8: see ``_recurrent_matmuls``), and ids are looked up in rows of ``Wxh^T``
copied once before the loop, not in strided columns of ``Wxh``. After the loops, ``dWhh`` is computed as
``(h^T dz)^T`` from a copy of ``h^T``, not as ``dz^T h``. For a single row of the LSTM (batch 1) the forward loop
keeps the gates as one ``(..., 4H)`` array instead, so that its body compiles to few enough kernels for XLA:CPU to
run them in sequence (``_forward_single_row``).
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import optax

from jaxrnn.cells import (LSTM_GATE_ORDER, LSTMCarry, LSTMParams, RNNParams, input_projection, lstm_gates,
                          lstm_memory, readout, rnn_cell)
from jaxrnn.losses import REDUCTIONS, sequence_loss, softmax_cross_entropy
from jaxrnn.training import donate_state


def _activate(z, carry_prev):
    """The cell's nonlinearity applied to its full pre-activation ``z = Wxh x + Whh h_{t-1} + bh``.

    LSTM: the gates ``lstm_gates(z) = (i, f, o, g)``. RNN: ``h_t = tanh(z)``, as ``rnn_cell`` with a zero-width
    ``Whh`` and zero ``bh`` (which add nothing to ``z``) computes it.
    """
    if isinstance(carry_prev, LSTMCarry):
        return lstm_gates(z)
    zero, empty_h = jnp.zeros((), z.dtype), jnp.zeros((*z.shape[:-1], 0), z.dtype)
    return rnn_cell(RNNParams(None, jnp.zeros((z.shape[-1], 0), z.dtype), None, zero, None), empty_h, z)


def _pre_activation_grad(a, da):
    """``dz`` from the activations ``a`` and their cotangent ``da``, by the reference's manual BPTT:
    ``sigmoid' = s (1 - s)`` for the LSTM's ``i, f, o``, ``tanh' = 1 - t^2`` for ``g`` and for the RNN's ``h``.
    Returns ``(..., G)``, the LSTM's four blocks concatenated in ``LSTM_GATE_ORDER``."""
    if isinstance(a, tuple):
        (i, f, o, g), (di, df, do, dg) = a, da
        return jnp.concatenate([di * i * (1 - i), df * f * (1 - f), do * o * (1 - o), dg * (1 - g * g)], axis=-1)
    return da * (1 - a * a)


def _memory(carry_prev, a):
    """``(carry_t, h_t)`` from the activations: ``lstm_memory`` (the cell path) for the LSTM, ``h_t = a`` for
    the RNN."""
    if isinstance(carry_prev, LSTMCarry):
        c, h = lstm_memory(carry_prev.c, a)
        return LSTMCarry(h, c), h
    return a, a


def _hidden(carry):
    return carry.h if isinstance(carry, LSTMCarry) else carry


def _recurrent_term(Whh, h):
    """``h @ Whh.T (..., G)`` for ``h (..., H)``, computed in the lecture's orientation ``Whh @ h^T (G, B)`` and
    transposed back inside the consumer: XLA:CPU's matmul was ~1.35x faster in that orientation at (B 32, H 256)
    (``benchmarks/step_layout.py``). Not measured on a GPU."""
    h_rows = h.reshape(-1, h.shape[-1])
    return jax.lax.optimization_barrier(Whh @ h_rows.T).T.reshape(*h.shape[:-1], Whh.shape[0])


# XLA:CPU's float32 vector: 8 lanes of its default 256-bit width (``xla_cpu_prefer_vector_width``).
_VECTOR_LANES = 8


def _recurrent_matmuls(Whh, rows):
    """``(term, back)``: the two products with ``Whh (G, H)`` in the time loops, for ``rows`` rows of ``h``.

    ``term(h) = h Whh^T (..., G)`` (forward), ``back(dz) = dz Whh (..., H)`` (backward). Batched, as
    ``_recurrent_term`` and ``dz @ Whh``. For a single row (batch 1) with ``H`` not a multiple of the vector
    width while ``G`` is (the LSTM at H 100: rows of Whh 100 floats long, of Whh^T 400): from a copy of
    ``Whh^T (H, G)`` made once before the loop, ``h @ Whh^T`` and ``Whh^T @ dz^T``, so that both matrix-vector
    products run along rows of ``G`` floats. Measured on XLA:CPU (``benchmarks/step_layout.py``'s batch-1 cases,
    ``benchmarks/ab_fast.py``): the training step 1.03-1.09x faster at H 100, 1.02-1.07x at H 90, 130, 250, and
    0.90-0.99x at H 64-256 that are multiples of 8, where it is not used. Not measured on a GPU.
    """
    G, H = Whh.shape
    return (_transposed_matmuls if _reads_transposed(G, H, rows) else _batched_matmuls)(Whh)


def _batched_matmuls(Whh):
    """``_recurrent_matmuls``' pair reading ``Whh`` itself: ``_recurrent_term`` and ``dz @ Whh``."""
    return functools.partial(_recurrent_term, Whh), lambda dz: dz @ Whh


def _transposed_matmuls(Whh):
    """``_recurrent_matmuls``' pair for a single row, reading a copy of ``Whh^T``: ``h @ Whh^T``, ``Whh^T @ dz^T``."""
    G, H = Whh.shape
    Whh_T = jax.lax.optimization_barrier(Whh.T)  # without the barrier XLA reads Whh through a transposed view
    return (lambda h: (h.reshape(1, H) @ Whh_T).reshape(*h.shape[:-1], G),
            lambda dz: (Whh_T @ dz.reshape(G, 1)).reshape(*dz.shape[:-1], H))


def _reads_transposed(G, H, rows):
    """Whether the time loops read a copy of ``Whh^T`` (``_recurrent_matmuls``) for this shape."""
    return rows == 1 and H % _VECTOR_LANES != 0 and G % _VECTOR_LANES == 0


def _rows(h):
    """The number of rows (batch elements) of ``h (..., H)``."""
    return h.size // h.shape[-1]


def _forward(Whh, bh, carry, xs, project):
    """Scan the recurrence over ``project(x_t) = Wxh x_t``; keep each step's activations and carry.

    Returns ``(carry_T, (activations, carries))``, each stacked over ``T``: the LSTM's gates ``(i, f, o, g)``
    or the RNN's ``h``, and the carry leaving each step.
    """
    rows = _rows(_hidden(carry))
    recurrent_term, _ = _recurrent_matmuls(Whh, rows)
    single_row = isinstance(carry, LSTMCarry) and rows == 1
    return (_forward_single_row if single_row else _forward_per_gate)(recurrent_term, bh, carry, xs, project)


def _forward_per_gate(recurrent_term, bh, carry, xs, project):
    """``_forward``'s loop keeping each gate as an array of its own (see the module docstring), and each carry."""
    def body(carry, x):
        z = project(x) + recurrent_term(_hidden(carry)) + bh
        a = _activate(z, carry)  # kept per gate, (i, f, o, g): see the module docstring
        new_carry, h = _memory(carry, a)
        return new_carry, (a, new_carry)

    return jax.lax.scan(body, carry, xs)


def _forward_single_row(recurrent_term, bh, carry, xs, project):
    """``_forward`` for one row of the LSTM (batch 1 or unbatched), as few kernels per time step as it takes.

    XLA:CPU runs a loop body of at most 8 kernels one after another on the calling thread, and a longer one as
    a task graph, whose bookkeeping shows with these tiny kernels. Here the body compiles to 8
    (``_forward_per_gate``'s to 16): the four gates come from one sigmoid (``_gates_as_one``), and each step keeps
    two arrays, the gates ``(..., 4H)`` and ``c_t``, instead of six; ``h_t`` is recomputed from them after the loop
    by ``lstm_memory``. (The batched loop keeps the gates apart because a fusion reading column blocks of a
    ``(B, 4H)`` buffer was slow; one row is contiguous.) Measured on XLA:CPU (``benchmarks/step_layout.py``,
    ``benchmarks/ab_fast.py 1 25 100``): the forward loop 1.14x faster at H 100, the training step 1.01-1.05x by
    round (six runs, both orders). Not measured on a GPU.
    """
    def body(carry, x):
        a = _gates_as_one(project(x) + recurrent_term(carry.h) + bh)
        new_carry, _ = _memory(carry, _gate_blocks(a))
        return new_carry, (a, new_carry.c)

    carry_T, (a_stack, cs) = jax.lax.scan(body, carry, xs)
    gates = _gate_blocks(a_stack)
    _, hs = lstm_memory(_shift_in(carry.c, cs), gates)
    return carry_T, (gates, LSTMCarry(hs, cs))


def _gates_as_one(z):
    """``lstm_gates(z)`` as one ``(..., 4H)`` array, all four blocks from one sigmoid: the candidate ``g`` by
    ``tanh(x) = 2 sigmoid(2x) - 1``, so that XLA emits one kernel instead of a sigmoid's and a tanh's."""
    H = z.shape[-1] // 4
    scale = jnp.repeat(jnp.asarray([2 if gate == "g" else 1 for gate in LSTM_GATE_ORDER], z.dtype), H)
    return scale * jax.nn.sigmoid(scale * z) - (scale - 1)


def _gate_blocks(a):
    """``(i, f, o, g)``, each ``(..., H)``, from the gates stacked in one ``(..., 4H)`` array."""
    return tuple(jnp.split(a, 4, axis=-1))


def _shift_in(first, stacked):
    """``[first, stacked_0, ..., stacked_{T-2}]``: the carries entering each step, from those leaving them."""
    return jax.tree.map(lambda f, s: jnp.concatenate([f[None], s[:-1]]), first, stacked)


@jax.custom_vjp
def recurrence(Whh, bh, carry, zxs):
    """Run the cell over precomputed input projections.

    Args: ``Whh (G, H)``, ``bh (G,)``, carry ``h (..., H)`` or ``LSTMCarry``, ``zxs (T, ..., G)`` (``Wxh x_t``).
    Returns: ``(carry_T, hs (T, ..., H))``. Differentiable in all four arguments by manual BPTT.
    """
    carry_T, (_, carries) = _forward(Whh, bh, carry, zxs, _identity)
    return carry_T, _hidden(carries)


def _identity(x):
    return x


def _recurrence_fwd(Whh, bh, carry, zxs):
    carry_T, (activations, carries) = _forward(Whh, bh, carry, zxs, _identity)
    return (carry_T, _hidden(carries)), (Whh, activations, _shift_in(carry, carries))


def _recurrence_bwd(residuals, cotangents):
    return _backward(*residuals, cotangents)[:4]


def _backward(Whh, activations, carries_in, cotangents, ids=None, Wxh=None):
    """Manual BPTT: ``(dWhh, dbh, d_carry_0, dzs (T, ..., G), dWxh)`` from the forward's residuals.

    ``dbh`` is summed inside the loop; so is ``dWxh (G, V)``, the gradient of looking up column ``id`` of
    ``Wxh``, when ``ids (T, ...)`` and ``Wxh`` are given (else ``None``): added to row ``id`` of
    ``dWxh^T``, the transpose of ``_lookup``'s row lookup. After the loop each would read all ``T B`` rows of
    ``dzs`` again (the scatter a layout copy of them first): 1-4% of a training step at B 32-64.
    """
    d_carry_T, dhs = cotangents
    G, H = Whh.shape
    _, recurrent_back = _recurrent_matmuls(Whh, _rows(_hidden(d_carry_T)))

    def body(state, step):
        d_carry, dbh, dWxh_T = state  # d_carry: gradient reaching carry_t from later steps (dhnext, dcnext)
        a, carry_prev, dh, ids_t = step
        _, pullback = jax.vjp(_memory, carry_prev, a)
        d_carry_prev, da = pullback((d_carry, dh))
        dz = _pre_activation_grad(a, da)
        dh_prev = _hidden(d_carry_prev) + recurrent_back(dz)  # the RNN's h_{t-1} enters only through Whh h_{t-1}
        d_carry_prev = LSTMCarry(dh_prev, d_carry_prev.c) if isinstance(d_carry_prev, LSTMCarry) else dh_prev
        dz_rows = dz.reshape(-1, G)
        dbh = dbh + dz_rows.sum(axis=0)
        if ids_t is not None:
            dWxh_T = dWxh_T.at[ids_t.reshape(-1)].add(dz_rows)
        return (d_carry_prev, dbh, dWxh_T), dz

    init = (d_carry_T, jnp.zeros((G,), Whh.dtype), None if ids is None else jnp.zeros_like(Wxh.T))
    (d_carry_0, dbh, dWxh_T), dzs = jax.lax.scan(body, init, (activations, carries_in, dhs, ids), reverse=True)
    dWhh = _recurrent_weight_grad(_hidden(carries_in).reshape(-1, H), dzs.reshape(-1, G))
    return dWhh, dbh, d_carry_0, dzs, (None if ids is None else dWxh_T.T)


def _recurrent_weight_grad(h_rows, dz_rows):
    """``dWhh = sum_n dz_n h_n^T = dz_rows^T h_rows (G, H)`` for ``h_rows (T N, H)``, ``dz_rows (T N, G)``: all
    ``T N`` outer products in one matmul.

    Computed as ``(h_rows^T @ dz_rows)^T`` with ``h_rows^T`` copied first: XLA:CPU hands a matmul of that
    orientation, ``[M, K] @ [K, N]``, to its fast library, and ran ``dz_rows^T @ h_rows`` as a slower dot with a
    transposed operand (``benchmarks/step_layout.py``). The barriers keep the two transposes copies of their own.
    """
    h_cols = jax.lax.optimization_barrier(h_rows.T)
    return jax.lax.optimization_barrier(h_cols @ dz_rows).T


recurrence.defvjp(_recurrence_fwd, _recurrence_bwd)


def _lookup(Wxh):
    """``ids -> embed(Wxh, ids)``, the same ``jnp.take`` of rows of ``Wxh.T (V, G)``, with ``Wxh.T`` copied once
    before the time loop (the barrier): otherwise XLA:CPU gathered the strided columns of ``Wxh`` in every step,
    41 against 13 us per step at B 32, H 256 (``benchmarks/profile_step.py``)."""
    table = jax.lax.optimization_barrier(Wxh.T)
    return lambda ids: jnp.take(table, ids, axis=0)


@jax.custom_vjp
def recurrence_ids(Wxh, Whh, bh, carry, ids):
    """``recurrence`` for token ids, looking each step's ``Wxh x_t`` (column ``id_t`` of ``Wxh (G, V)``) up inside
    the time loop, so the ``(T, ..., G)`` projections are never materialised.

    Args: ``ids (T, ...)`` integers; the rest as ``recurrence``. Returns ``(carry_T, hs (T, ..., H))``.
    Differentiable in ``Wxh, Whh, bh, carry``; ``dWxh`` is a scatter-add of each ``dz_t`` in the backward scan.
    """
    carry_T, (_, carries) = _forward(Whh, bh, carry, ids, _lookup(Wxh))
    return carry_T, _hidden(carries)


def _recurrence_ids_fwd(Wxh, Whh, bh, carry, ids):
    carry_T, (activations, carries) = _forward(Whh, bh, carry, ids, _lookup(Wxh))
    return (carry_T, _hidden(carries)), (Wxh, ids, Whh, activations, _shift_in(carry, carries))


def _recurrence_ids_bwd(residuals, cotangents):
    Wxh, ids, *rest = residuals
    dWhh, dbh, d_carry_0, _, dWxh = _backward(*rest, cotangents, ids=ids, Wxh=Wxh)
    return dWxh, dWhh, dbh, d_carry_0, None


recurrence_ids.defvjp(_recurrence_ids_fwd, _recurrence_ids_bwd)


def fast_sequence_loss(params, carry, xs, targets, *, mask=None, reduction: str = "sum"):
    """``jaxrnn.sequence_loss`` for ``RNNParams``/``LSTMParams``, computed by the fast path.

    Args and returns as ``sequence_loss``: ``(loss, carry_T)``; use ``jax.value_and_grad(..., has_aux=True)``.
    """
    if not isinstance(params, (RNNParams, LSTMParams)):
        raise TypeError(f"fast_sequence_loss: params must be RNNParams or LSTMParams, got {type(params).__name__}")
    if isinstance(params, LSTMParams) != isinstance(carry, LSTMCarry):
        raise TypeError(f"fast_sequence_loss: carry {type(carry).__name__} does not match {type(params).__name__}"
                        " (see jaxrnn.initial_carry)")
    xs = jnp.asarray(xs)
    ids = jnp.issubdtype(xs.dtype, jnp.integer)
    zxs = jax.eval_shape(input_projection, params.Wxh, xs) if ids else input_projection(params.Wxh, xs)
    for leaf in jax.tree.leaves(carry):
        if leaf.shape != zxs.shape[1:-1] + (params.Whh.shape[1],) or leaf.dtype != zxs.dtype:
            raise ValueError(f"fast_sequence_loss: carry has shape {leaf.shape} {leaf.dtype}; expected "
                             f"{zxs.shape[1:-1] + (params.Whh.shape[1],)} {zxs.dtype} for these inputs")
    if ids:  # looked up step by step inside the loop
        carry_T, hs = recurrence_ids(params.Wxh, params.Whh, params.bh, carry, xs)
    else:  # all T steps in one matmul before the loop
        carry_T, hs = recurrence(params.Whh, params.bh, carry, zxs)
    return softmax_cross_entropy(readout(params, hs), targets, mask, reduction=reduction), carry_T


def _update(optimizer, loss_fn, params, opt_state, carry, xs, targets, mask=None):
    (loss, carry_T), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, carry, xs, targets, mask=mask)
    updates, opt_state = optimizer.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, carry_T, loss


def make_fast_train_step(optimizer: optax.GradientTransformation, *, reduction: str = "sum", loss_fn=None,
                         donate: bool = False):
    """``jaxrnn.make_train_step`` on the fast path: ``train_step(params, opt_state, carry, xs, targets,
    mask=None) -> (params, opt_state, carry_T, loss)``, jitted.

    ``loss_fn(params, carry, xs, targets, *, mask) -> (loss, carry_T)`` replaces ``fast_sequence_loss`` (e.g.
    for a model with an embedding in front of the cell). ``donate=True``: the new ``params`` and ``opt_state``
    reuse the buffers of those passed in, which the call deletes (as ``make_train_step``).
    """
    loss_fn = functools.partial(fast_sequence_loss, reduction=reduction) if loss_fn is None else loss_fn
    return jax.jit(functools.partial(_update, optimizer, loss_fn), donate_argnums=donate_state(donate))


def make_fast_train_loop(optimizer: optax.GradientTransformation, *, reduction: str = "sum", loss_fn=None,
                         donate: bool = False):
    """Many updates in one compiled call: ``train_loop(params, opt_state, carry, xs_chunks, targets_chunks)
    -> (params, opt_state, carry_N, losses (N,))`` with chunks ``(N, T, ...)``.

    Update ``n`` trains on chunk ``n`` starting from the carry left by chunk ``n - 1`` (truncated BPTT), exactly
    as ``N`` calls of ``make_fast_train_step`` would, without returning to Python in between. ``donate`` as in
    ``make_fast_train_step``.
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

    return jax.jit(train_loop, donate_argnums=donate_state(donate))


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
