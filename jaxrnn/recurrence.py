"""The fused recurrence: an RNN or LSTM layer over a whole sequence, differentiated by hand-written BPTT.

Shapes: ``zxs (T, ..., G)`` input projections ``Wxh x_t`` with ``G = H`` (RNN) or ``4H`` (LSTM), or token ids
``(T, ...)``; ``hs (T, ..., H)``; carry ``h (..., H)`` or ``LSTMCarry`` with batch shape ``(...)``.

This is what ``unroll(..., method="fused")`` runs for RNN and LSTM layers. It computes the same sums as
``lax.scan`` of ``rnn_step``/``lstm_step`` in another order (``tests/test_recurrence.py`` pins values and
gradients equal in float64 and float32). Its derivative is defined in reverse mode only (``jax.custom_vjp``):
``jax.grad`` and ``jax.vjp`` work, ``jax.jvp`` and ``jax.jacfwd`` raise JAX's "can't apply forward-mode autodiff
(jvp) to a custom_vjp function"; ``method="scan"`` computes the same values in both modes.

1. The input projection ``Wxh x_t`` of float inputs is one matmul over all ``T`` steps before the time loop, so
   the loop body only multiplies by ``Whh``. Token ids are looked up (column ``id_t`` of ``Wxh``) inside the loop
   (``recurrence_ids``), so the ``(T, B, G)`` projections are never materialised.
2. The backward pass is the manual BPTT of ``jaxrnn.reference``: a reverse scan carries ``dhnext`` (and
   ``dcnext``) and emits the pre-activation gradients ``dz_t = da_t * act'(z_t)``, with ``sigmoid' = s (1 - s)``
   and ``tanh' = 1 - t^2`` written from the activations kept by the forward pass (no exponential is evaluated
   again). The weight gradient ``dWhh = sum_t dz_t h_{t-1}^T`` is then one matmul over all ``T B`` rows instead of
   one small outer product per step; ``dbh`` (and, for ids, ``dWxh``) is summed inside the loop.

The forward maths is not restated: a step applies ``lstm_gates`` then ``lstm_memory`` (the two halves of
``lstm_cell``), or the RNN's ``tanh``; the backward applies ``jax.vjp`` of ``lstm_memory``.

Layout choices. Some orderings of the same arithmetic were measured faster on XLA:CPU; they are taken only when
the computation is compiled for the CPU (``jax.lax.platform_dependent``), and every other backend gets the plain
orderings. Each is justified by a benchmark in ``benchmarks/investigations/`` (``step_layout.py`` times the
patterns one by one, ``ab_recurrence.py`` times a whole training step against another version of this file):

* the recurrent matmul as ``Whh @ h^T`` (the lecture's orientation), transposed back in its consumer
  (``step_layout.py``);
* for one row (batch 1) with ``H`` not a multiple of XLA:CPU's 8 float32 vector lanes while ``G`` is, both
  time loops read a copy of ``Whh^T``, so that every matrix-vector product runs along rows of ``G`` floats
  (``step_layout.py``'s batch-1 cases, ``ab_recurrence.py 1 25 100``);
* for one row of the LSTM, the forward loop keeps the gates as one ``(..., 4H)`` array from a single sigmoid
  (``tanh(x) = 2 sigmoid(2x) - 1``): its body compiles to 8 kernels, the most XLA:CPU runs in sequence on the
  calling thread instead of as a task graph (``step_layout.py``, ``ab_recurrence.py 1 25 100``);
* copies of ``h^T`` (for ``dWhh = (h^T dz)^T``) and of ``Wxh^T`` (for the id lookup) made once outside the
  loops, which XLA:CPU otherwise read through strided views (``step_layout.py``, ``profile_step.py``).

Everywhere the gates are kept as four arrays, not slices of one ``(..., 4H)`` buffer (a fusion reading two column
blocks of one buffer ran several times slower on XLA:CPU; four arrays are the plain form elsewhere too).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from jaxrnn.cells import LSTM_GATE_ORDER, LSTMCarry, LSTMParams, RNNParams, lstm_gates, lstm_memory
from jaxrnn.precision import accumulation_dtype, matmul
from jaxrnn.typing import Array, ArrayLike, Carry, Params


class _Layout(NamedTuple):
    """Which of the XLA:CPU orderings (module docstring) a compiled recurrence uses."""

    transposed_term: bool  # Whh @ h^T, transposed back
    vector_lanes: int  # 0: never read a copy of Whh^T; else the float32 lanes for the batch-1 rule
    single_row_kernels: bool  # batch-1 LSTM forward with the gates in one array
    copy_transposes: bool  # copies of h^T and Wxh^T outside the loops


_XLA_CPU = _Layout(transposed_term=True, vector_lanes=8, single_row_kernels=True, copy_transposes=True)
_PORTABLE = _Layout(transposed_term=False, vector_lanes=0, single_row_kernels=False, copy_transposes=False)


def _per_platform(fn, *args):
    """``fn(layout, *args)`` with the XLA:CPU layout when compiled for the CPU, the portable one elsewhere."""
    return jax.lax.platform_dependent(
        *args, cpu=functools.partial(fn, _XLA_CPU), default=functools.partial(fn, _PORTABLE)
    )


def _copy(layout: _Layout, x: Array) -> Array:
    """``x`` as an array of its own when the layout copies transposes (the barrier stops XLA reading a view)."""
    return jax.lax.optimization_barrier(x) if layout.copy_transposes else x


def _hidden(carry):
    return carry.h if isinstance(carry, LSTMCarry) else carry


def _rows(h):
    """The number of rows (batch elements) of ``h (..., H)``."""
    return h.size // h.shape[-1]


def _activate(z, carry_prev):
    """The cell's nonlinearity of its pre-activation ``z``: the LSTM's gates ``(i, f, o, g)``, the RNN's ``tanh``."""
    return lstm_gates(z) if isinstance(carry_prev, LSTMCarry) else jnp.tanh(z)


def _pre_activation_grad(a, da):
    """``dz`` from the activations ``a`` and their cotangent ``da``, as the reference writes it:
    ``sigmoid' = s (1 - s)`` for ``i, f, o``, ``tanh' = 1 - t^2`` for ``g`` and the RNN's ``h``.
    Returns ``(..., G)``, the LSTM's four blocks concatenated in ``LSTM_GATE_ORDER``."""
    if isinstance(a, tuple):
        (i, f, o, g), (di, df, do, dg) = a, da
        return jnp.concatenate([di * i * (1 - i), df * f * (1 - f), do * o * (1 - o), dg * (1 - g * g)], axis=-1)
    return da * (1 - a * a)


def _memory(carry_prev: Carry, a: Any) -> tuple[Carry, Array]:
    """``(carry_t, h_t)`` from the activations: ``lstm_memory`` for the LSTM, ``h_t = a`` for the RNN."""
    if isinstance(carry_prev, LSTMCarry):
        c, h = lstm_memory(carry_prev.c, a)
        return LSTMCarry(h, c), h
    return a, a


def _reads_transposed(layout: _Layout, G: int, H: int, rows: int) -> bool:
    """Whether the time loops read a copy of ``Whh^T`` (one row, ``H`` off the vector width, ``G`` on it)."""
    lanes = layout.vector_lanes
    return bool(lanes) and rows == 1 and H % lanes != 0 and G % lanes == 0


def _recurrent_matmuls(
    layout: _Layout, Whh: Array, rows: int
) -> tuple[Callable[[Array], Array], Callable[[Array], Array]]:
    """``(term, back)``: ``term(h) = h Whh^T (..., G)`` for the forward loop, ``back(dz) = dz Whh (..., H)``
    for the backward loop, for ``rows`` rows of ``h``; each a product in ``Whh``'s dtype (``jaxrnn.precision``)."""
    G, H = Whh.shape
    dtype = Whh.dtype
    if _reads_transposed(layout, G, H, rows):
        Whh_T = jax.lax.optimization_barrier(Whh.T)
        return (
            lambda h: matmul(h.reshape(1, H), Whh_T, dtype).reshape(*h.shape[:-1], G),
            lambda dz: matmul(Whh_T, dz.reshape(G, 1), dtype).reshape(*dz.shape[:-1], H),
        )
    if layout.transposed_term:

        def term(h: Array) -> Array:
            h_rows = h.reshape(-1, H)
            return jax.lax.optimization_barrier(matmul(Whh, h_rows.T, dtype)).T.reshape(*h.shape[:-1], G)
    else:

        def term(h: Array) -> Array:
            return matmul(h, Whh.T, dtype)

    return term, lambda dz: matmul(dz, Whh, dtype)


def _projector(layout: _Layout, Wxh: Array | None) -> Callable[[Array], Array]:
    """``x_t -> Wxh x_t`` inside the loop: the identity for precomputed projections (``Wxh is None``), else a
    lookup of row ``id`` of ``Wxh^T (V, G)``, the same ``jnp.take`` as ``embed``."""
    if Wxh is None:
        return lambda zx: zx
    table = _copy(layout, Wxh.T)
    return lambda ids: jnp.take(table, ids, axis=0).astype(accumulation_dtype(table.dtype))


def _forward(
    layout: _Layout, Whh: Array, bh: Array, carry: Carry, xs: Array, Wxh: Array | None
) -> tuple[Carry, tuple[Any, Carry]]:
    """Scan the recurrence; keep each step's activations and the carry leaving it.

    Returns ``(carry_T, (activations, carries))``, each stacked over ``T``: the LSTM's gates ``(i, f, o, g)``
    or the RNN's ``h``, and the carries.
    """
    rows = _rows(_hidden(carry))
    term, _ = _recurrent_matmuls(layout, Whh, rows)
    project = _projector(layout, Wxh)
    if layout.single_row_kernels and isinstance(carry, LSTMCarry) and rows == 1:
        return _forward_single_row(term, bh, carry, xs, project)

    def body(carry, x):
        a = _activate(project(x) + term(_hidden(carry)) + bh, carry)
        new_carry, _ = _memory(carry, a)
        return new_carry, (a, new_carry)

    return jax.lax.scan(body, carry, xs)


def _forward_single_row(term, bh, carry, xs, project):
    """``_forward`` for one row of the LSTM: each step keeps two arrays, the gates ``(..., 4H)`` from one sigmoid
    and ``c_t``; ``h_t`` is recomputed from them after the loop by ``lstm_memory``."""

    def body(carry, x):
        a = _gates_as_one(project(x) + term(carry.h) + bh)
        new_carry, _ = _memory(carry, _gate_blocks(a))
        return new_carry, (a, new_carry.c)

    carry_T, (a_stack, cs) = jax.lax.scan(body, carry, xs)
    gates = _gate_blocks(a_stack)
    _, hs = lstm_memory(_shift_in(carry.c, cs), gates)
    return carry_T, (gates, LSTMCarry(hs, cs))


def _gates_as_one(z):
    """``lstm_gates(z)`` as one ``(..., 4H)`` array, all four blocks from one sigmoid: the candidate ``g`` by
    ``tanh(x) = 2 sigmoid(2x) - 1``."""
    H = z.shape[-1] // 4
    scale = jnp.repeat(jnp.asarray([2 if gate == "g" else 1 for gate in LSTM_GATE_ORDER], z.dtype), H)
    return scale * jax.nn.sigmoid(scale * z) - (scale - 1)


def _gate_blocks(a: Array) -> tuple[Array, Array, Array, Array]:
    """``(i, f, o, g)``, each ``(..., H)``, from the gates stacked in one ``(..., 4H)`` array."""
    i, f, o, g = jnp.split(a, 4, axis=-1)
    return i, f, o, g


def _shift_in(first, stacked):
    """``[first, stacked_0, ..., stacked_{T-2}]``: the carries entering each step, from those leaving them."""
    return jax.tree.map(lambda f, s: jnp.concatenate([f[None], s[:-1]]), first, stacked)


def _backward(
    layout: _Layout,
    Whh: Array,
    activations: Any,
    carries_in: Carry,
    cotangents: tuple[Carry, Array],
    ids: Array | None,
    Wxh: Any,  # an Array exactly when ids is one
) -> tuple[Array, Array, Carry, Array, Array | None]:
    """Manual BPTT: ``(dWhh, dbh, d_carry_0, dzs, dWxh)`` from the forward's residuals; ``dzs (T, ..., G)`` is
    also the gradient of precomputed projections ``zxs`` (``dWxh`` only for ids).

    ``dWxh (G, V)`` is the gradient of looking up column ``id`` of ``Wxh``: each ``dz_t`` is added to row ``id``
    of ``dWxh^T`` inside the loop.
    """
    d_carry_T, dhs = cotangents
    G, H = Whh.shape
    _, back = _recurrent_matmuls(layout, Whh, _rows(_hidden(d_carry_T)))

    def body(state, step):
        d_carry, dbh, dWxh_T = state  # d_carry: gradient reaching carry_t from later steps (dhnext, dcnext)
        a, carry_prev, dh, ids_t = step
        _, pullback = jax.vjp(_memory, carry_prev, a)
        d_carry_prev, da = pullback((d_carry, dh))
        dz = _pre_activation_grad(a, da)
        dh_prev = _hidden(d_carry_prev) + back(dz)  # the RNN's h_{t-1} enters only through Whh h_{t-1}
        d_carry_prev = LSTMCarry(dh_prev, d_carry_prev.c) if isinstance(d_carry_prev, LSTMCarry) else dh_prev
        dz_rows = dz.reshape(-1, G)
        dbh = dbh + dz_rows.sum(axis=0)
        if ids_t is not None:
            dWxh_T = dWxh_T.at[ids_t.reshape(-1)].add(dz_rows)
        return (d_carry_prev, dbh, dWxh_T), dz

    acc = accumulation_dtype(Whh.dtype)  # sums over steps are kept in float32 also for bfloat16 weights
    init: tuple[Carry, Array, Any] = (
        d_carry_T,
        jnp.zeros((G,), acc),
        None if ids is None else jnp.zeros(Wxh.T.shape, acc),
    )
    (d_carry_0, dbh, dWxh_T), dzs = jax.lax.scan(body, init, (activations, carries_in, dhs, ids), reverse=True)
    # dWhh = sum_n dz_n h_n^T over all T B rows, as (h^T dz)^T: the [M, K] @ [K, N] orientation
    h_cols = _copy(layout, _hidden(carries_in).reshape(-1, H).T)
    dWhh = _copy(layout, matmul(h_cols, dzs.reshape(-1, G), Whh.dtype)).T.astype(Whh.dtype)
    return dWhh, dbh, d_carry_0, dzs, (None if ids is None else dWxh_T.T.astype(Wxh.dtype))


def _make_recurrences(
    choose: Callable[..., Any],
) -> tuple[
    Callable[[Array, Array, Carry, Array], tuple[Carry, Array]],
    Callable[[Array, Array, Array, Carry, Array], tuple[Carry, Array]],
]:
    """The pair ``(recurrence, recurrence_ids)``, their layout picked by ``choose(fn, *args)``."""

    @jax.custom_vjp
    def recurrence(Whh: Array, bh: Array, carry: Carry, zxs: Array) -> tuple[Carry, Array]:
        carry_T, (_, carries) = choose(_forward, Whh, bh, carry, zxs, None)
        return carry_T, _hidden(carries)

    def recurrence_fwd(Whh, bh, carry, zxs):
        carry_T, (activations, carries) = choose(_forward, Whh, bh, carry, zxs, None)
        dtypes = (jnp.zeros((), bh.dtype), jnp.zeros((), zxs.dtype))  # the cotangents' dtypes, as arrays
        return (carry_T, _hidden(carries)), (Whh, dtypes, activations, _shift_in(carry, carries))

    def recurrence_bwd(residuals, cotangents):
        Whh, (bh_like, zxs_like), activations, carries_in = residuals
        dWhh, dbh, d_carry_0, dzs, _ = choose(_backward, Whh, activations, carries_in, cotangents, None, None)
        return dWhh, dbh.astype(bh_like.dtype), d_carry_0, dzs.astype(zxs_like.dtype)

    @jax.custom_vjp
    def recurrence_ids(Wxh: Array, Whh: Array, bh: Array, carry: Carry, ids: Array) -> tuple[Carry, Array]:
        carry_T, (_, carries) = choose(_forward, Whh, bh, carry, ids, Wxh)
        return carry_T, _hidden(carries)

    def recurrence_ids_fwd(Wxh, Whh, bh, carry, ids):
        carry_T, (activations, carries) = choose(_forward, Whh, bh, carry, ids, Wxh)
        bh_like = jnp.zeros((), bh.dtype)
        return (carry_T, _hidden(carries)), (Wxh, ids, Whh, bh_like, activations, _shift_in(carry, carries))

    def recurrence_ids_bwd(residuals, cotangents):
        Wxh, ids, Whh, bh_like, activations, carries_in = residuals
        dWhh, dbh, d_carry_0, _, dWxh = choose(_backward, Whh, activations, carries_in, cotangents, ids, Wxh)
        return dWxh, dWhh, dbh.astype(bh_like.dtype), d_carry_0, None

    recurrence.defvjp(recurrence_fwd, recurrence_bwd)
    recurrence_ids.defvjp(recurrence_ids_fwd, recurrence_ids_bwd)
    return recurrence, recurrence_ids


recurrence, recurrence_ids = _make_recurrences(_per_platform)
recurrence.__doc__ = """Run an RNN or LSTM layer over precomputed input projections.

Args: ``Whh (G, H)``, ``bh (G,)``, carry ``h (..., H)`` or ``LSTMCarry``, ``zxs (T, ..., G)`` (``Wxh x_t``).
Returns: ``(carry_T, hs (T, ..., H))``; differentiable in all four arguments by manual BPTT.
"""
recurrence_ids.__doc__ = """``recurrence`` for token ids ``(T, ...)``, looking ``Wxh x_t`` (column ``id_t`` of
``Wxh (G, V)``) up inside the loop. Returns ``(carry_T, hs (T, ..., H))``; differentiable in ``Wxh, Whh, bh,
carry``."""


def supports(params: Params) -> bool:
    """Whether ``params`` is a cell the fused recurrence computes (``RNNParams`` or ``LSTMParams``)."""
    return isinstance(params, (RNNParams, LSTMParams))


def fused_unroll(params: RNNParams | LSTMParams, carry: Carry, xs: ArrayLike) -> tuple[Carry, Array]:
    """``unroll(step_for(params), params, carry, xs)`` for an RNN or LSTM layer, by the fused recurrence.

    Args: ``carry`` with the batch shape ``(...)`` of ``xs (T, ..., D)`` or ids ``(T, ...)``.
    Returns: ``(carry_T, hs (T, ..., H))``.
    """
    if not supports(params):
        raise TypeError(f"the fused recurrence computes RNNParams or LSTMParams, got {type(params).__name__}")
    if isinstance(params, LSTMParams) != isinstance(carry, LSTMCarry):
        raise TypeError(
            f"carry {type(carry).__name__} does not match {type(params).__name__} (see jaxrnn.initial_carry)"
        )
    xs = jnp.asarray(xs)
    ids = jnp.issubdtype(xs.dtype, jnp.integer)
    if not ids and (xs.ndim == 0 or xs.shape[-1] != params.Wxh.shape[1]):
        raise ValueError(
            f"inputs have shape {xs.shape}; expected (T, ..., {params.Wxh.shape[1]}) to match Wxh "
            f"{params.Wxh.shape} (or integer token ids)"
        )
    batch = xs.shape[1:] if ids else xs.shape[1:-1]
    dtype = accumulation_dtype(params.Whh.dtype)  # the state's dtype: float32 also for bfloat16 weights
    H = params.Whh.shape[1]
    for leaf in jax.tree.leaves(carry):
        if leaf.shape != (*batch, H) or leaf.dtype != dtype:
            raise ValueError(
                f"carry has shape {leaf.shape} {leaf.dtype}; expected {(*batch, H)} {dtype} for these inputs"
            )
    if ids:
        return recurrence_ids(params.Wxh, params.Whh, params.bh, carry, xs)
    return recurrence(params.Whh, params.bh, carry, matmul(xs, params.Wxh.T, params.Wxh.dtype))
