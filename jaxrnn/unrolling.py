"""Unrolling a step over time: ``jax.lax.scan`` (the fast path) or a Python loop (the same step, spelled out).

Shapes: ``xs (T, ...)`` time-major, any pytree whose leaves share the leading ``T``; outputs ``hs (T, ...)``;
``mask (T, ...)`` booleans, ``lengths (...)`` integers, with the carry's batch shape ``(...)``.

Variable-length batches: a masked step (``mask_step``) keeps the old carry where the mask is off and writes
zeros to the output there. With right padding (valid steps first) the carry is frozen after each sequence's
end; with left padding it stays at the initial carry until the sequence starts. Either way, and in either
direction, the final carry is each sequence's own last state and the gradients are those of running each
sequence alone.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import jax
import jax.core  # imported by jax itself; named here so that type checkers see jax.core
import jax.numpy as jnp
import numpy as np

from jaxrnn import recurrence, registry, stack
from jaxrnn._checks import is_token_ids, nan_if, positive_int, token_ids_out_of_range
from jaxrnn.precision import accumulation_dtype, cast_weights, check_compute_dtype
from jaxrnn.typing import (
    METHODS,
    PADDINGS,
    Array,
    ArrayLike,
    Carry,
    DTypeLike,
    Method,
    Padding,
    Params,
    PRNGKey,
    PyTree,
    Step,
)

if TYPE_CHECKING:
    from jaxrnn.newton import NewtonSolver


def _leading_length(xs: PyTree) -> int:
    leaves = jax.tree.leaves(xs)
    if not leaves:
        raise ValueError("unroll: xs is empty; expected at least one array with a leading time axis (T, ...)")
    lengths: set[tuple[Any, ...]] = {getattr(leaf, "shape", (None,))[:1] for leaf in leaves}
    if len(lengths) != 1 or () in lengths:
        raise ValueError(
            f"unroll: every leaf of xs needs the same leading time axis, got shapes "
            f"{[getattr(leaf, 'shape', None) for leaf in leaves]}"
        )
    return lengths.pop()[0]


def _check_carry_kept(f: Callable[[Carry, PyTree], tuple[Carry, PyTree]], carry: Carry, x0: PyTree) -> None:
    """Fail early, naming both shapes, when a step would change the carry's structure or shape."""
    carry_out, _ = jax.eval_shape(f, carry, x0)
    shape = lambda tree: jax.tree.map(lambda a: (tuple(a.shape), jnp.dtype(a.dtype).name), tree)
    # as objects: jaxlib ships no type stub for PyTreeDef, and mypy refuses == between two unknown PyTreeDefs
    structure_out: object = jax.tree.structure(carry_out)
    structure_in: object = jax.tree.structure(carry)
    if structure_out != structure_in or shape(carry_out) != shape(carry):
        dtypes = lambda tree: {jnp.dtype(a.dtype).name for a in jax.tree.leaves(tree)}
        same_shapes = structure_out == structure_in and [a.shape for a in jax.tree.leaves(carry_out)] == [
            a.shape for a in jax.tree.leaves(carry)
        ]
        if same_shapes:  # only the dtype changes: the carry's dtype is not the one the step computes in
            raise ValueError(
                f"unroll: the carry is {'/'.join(sorted(dtypes(carry)))} but the step computes in "
                f"{'/'.join(sorted(dtypes(carry_out)))} (the parameters' dtype); make the carry with "
                "jaxrnn.initial_carry(params, batch_shape) or cast it to that dtype"
            )
        raise ValueError(
            f"unroll: the step turns carry {shape(carry)} into {shape(carry_out)}; the initial "
            "carry must already have the batch shape and dtype of the inputs "
            "(see jaxrnn.initial_carry(params, batch_shape))"
        )


def unroll(
    step: Callable[..., Any],
    params: Params,
    carry: Carry,
    xs: PyTree,
    *,
    method: Method = "scan",
    unroll: int = 1,
    remat: bool = False,
    reverse: bool = False,
    mask: ArrayLike | None = None,
    lengths: ArrayLike | None = None,
    padding: Padding = "right",
    key: PRNGKey | None = None,
    dropout: float = 0.0,
    newton: NewtonSolver | None = None,
    time_major: bool = True,
    compute_dtype: DTypeLike | None = None,
) -> tuple[Carry, Array]:
    """Apply ``step(params, carry, x_t) -> (carry, h_t)`` for t = 0..T-1.

    Args:
      step: e.g. ``rnn_step``, ``lstm_step`` or ``stack_step`` (``jaxrnn.step_for(params)``).
      carry: initial state (``h (..., H)`` or ``LSTMCarry``) with the batch shape ``(...)`` of the inputs and the
        parameters' dtype (``jaxrnn.initial_carry(params, batch_shape)``).
      xs: time-major inputs: float features ``(T, ..., D)`` or integer token ids ``(T, ...)`` in ``[0, V)``
        (integer inputs are always token ids, float inputs always features; floats of another dtype than the
        parameters are cast to it).
      method: ``"auto"`` picks the fastest exact path for the model (``jaxrnn.choose_method``: ``"fused"``
        where it applies, else ``"scan"``); ``"scan"`` runs ``jax.lax.scan`` (one compiled loop body whatever T
        is); ``"loop"`` runs the same step in a Python loop (T copies of the body when traced under ``jit``:
        compile time grows with T);
        ``"fused"`` runs RNN and LSTM layers by ``jaxrnn.recurrence`` (input projection hoisted out of the
        loop, hand-written BPTT) and any other cell by ``scan``; it needs ``step`` to be the registered step of
        ``params`` and takes no ``mask``, ``lengths`` or ``remat``. ``"newton"`` solves for all ``T`` states at
        once by Newton's method, each iteration parallel over time (``jaxrnn.newton``), with the options of
        ``newton`` (a ``jaxrnn.newton.NewtonSolver``; default ``NewtonSolver()``): the carries and outputs of an
        example whose solve did not converge are NaN, so that it cannot pass unnoticed. ``"fused"`` and
        ``"newton"`` define their derivatives in reverse mode only (``jax.custom_vjp``): ``jax.grad`` and
        ``jax.vjp`` work, ``jax.jvp`` and ``jax.jacfwd`` raise; use ``"scan"`` for forward mode.
      unroll: how many steps ``scan`` puts in one loop iteration (ignored by the other methods).
      remat: wrap the step in ``jax.checkpoint``: the backward pass recomputes each step's internals instead of
        storing them, trading compute for memory on long sequences.
      reverse: run from t = T-1 down to 0 (outputs stay in time order).
      mask: optional ``(T, ...)``, true where a step is real: elsewhere the carry is kept and the output is 0.
      lengths: optional ``(...)`` integers in ``0..T`` instead of ``mask``, turned into one by ``length_mask``
        with ``padding`` (``"right"``: valid steps first; ``"left"``: valid steps last).
      key, dropout: for a ``StackParams`` model, inverted dropout of rate ``dropout`` on the input of every
        layer above the first, drawn from ``key`` (required when ``dropout > 0``; the stack then runs layer
        after layer; see ``jaxrnn.stack.unroll_layers``).
      compute_dtype: the dtype the weight matrices multiply in (e.g. ``jnp.bfloat16``); the carry, the gates and
        the outputs stay in float32, and gradients reach the parameters in their own dtype (``jaxrnn.precision``).
        ``None``: the parameters' dtype.
      time_major: ``False`` reads batch-major inputs, ``xs (..., T, D)`` or ids ``(..., T)`` (and ``mask
        (..., T)``), as Flax's ``nn.RNN`` does by default, and returns ``hs (..., T, H)``.

    Returns: ``(carry_T, hs)`` with ``hs (T, ..., H)`` (``(..., T, H)`` when not ``time_major``).

    Raises:
      ValueError: an unknown option; ``dropout > 0`` without ``key``; inputs whose batch shape is not the
        carry's; token ids outside ``[0, V)`` (known values only: under ``jit`` the carry and outputs, and
        every gradient through them, are NaN instead; ``jaxrnn.checkify_token_ids()`` makes it a ``checkify``
        check).

    Example:
      >>> import jax, jaxrnn
      >>> params = jaxrnn.init_lstm(jax.random.key(0), input_size=5, hidden_size=8, output_size=5)
      >>> ids = jax.numpy.zeros((10, 3), int)  # T = 10 steps of B = 3 streams
      >>> carry_T, hs = jaxrnn.unroll(jaxrnn.lstm_step, params, jaxrnn.initial_carry(params, (3,)), ids)
      >>> hs.shape
      (10, 3, 8)
    """
    _check_options("unroll", method=method, unroll=unroll, remat=remat, dropout=dropout, newton=newton, padding=padding)
    check_compute_dtype("unroll", compute_dtype)
    if dropout > 0 and key is None:
        raise ValueError(f"unroll: dropout={dropout} needs key= (the PRNG key of the dropout masks)")
    if not time_major:
        xs, mask = to_time_major(carry, xs), (None if mask is None else to_time_major(carry, mask))
    bad = check_inputs("unroll", params, carry, xs)
    carry_T, hs = _unroll(
        step,
        cast_weights(_poison_lookup(params, bad), compute_dtype),
        carry,
        xs,
        method=method,
        unroll=unroll,
        remat=remat,
        reverse=reverse,
        mask=mask,
        lengths=lengths,
        padding=padding,
        key=key,
        dropout=dropout,
        newton=newton,
    )
    if not time_major:
        hs = from_time_major(carry, hs)
    return nan_if(bad, (carry_T, hs))


def _check_options(
    caller: str,
    *,
    method: Method,
    unroll: int,
    remat: bool,
    dropout: float,
    newton: NewtonSolver | None,
    padding: Padding = "right",
) -> None:
    """Every option of ``unroll`` checked where it is given (``unroll``, ``sequence_loss``, ``make_train_step``)."""
    if method not in METHODS:
        raise ValueError(f"{caller}: unknown method {method!r}; expected one of {METHODS}")
    positive_int(f"{caller}: unroll", unroll)
    if not isinstance(remat, bool):
        raise TypeError(f"{caller}: remat must be True or False, got {remat!r}")
    if not isinstance(dropout, (int, float)) or isinstance(dropout, bool) or not 0.0 <= dropout < 1.0:
        raise ValueError(f"{caller}: dropout must be in [0, 1), got {dropout!r}")
    if padding not in PADDINGS:
        raise ValueError(f"{caller}: unknown padding {padding!r}; expected one of {PADDINGS}")
    if method == "fused" and remat:
        raise ValueError(f"{caller}: method='fused' takes no mask, lengths or remat; use method='scan' for those")
    if method == "newton" and remat:
        raise ValueError(f"{caller}: method='newton' keeps no per-step internals; remat does not apply")
    if newton is not None and method != "newton":
        raise ValueError(f"{caller}: newton= gives the options of method='newton', not of {method!r}")


def carry_batch_shape(carry: Carry) -> tuple[int, ...]:
    """The batch shape ``(...)`` of a carry whose leaves are ``(..., H)``."""
    leaves = jax.tree.leaves(carry)
    if not leaves or not hasattr(leaves[0], "shape") or jnp.ndim(leaves[0]) == 0:
        return ()
    return tuple(leaves[0].shape[:-1])


def to_time_major(carry: Carry, tree: PyTree) -> PyTree:
    """Batch-major ``(..., T, ...)`` leaves moved to time-major ``(T, ..., ...)``; ``...`` is the carry's batch."""
    n = len(carry_batch_shape(carry))
    return jax.tree.map(lambda a: jnp.moveaxis(jnp.asarray(a), n, 0), tree)


def from_time_major(carry: Carry, tree: PyTree) -> PyTree:
    """The inverse of ``to_time_major``: ``(T, ..., ...)`` leaves moved to ``(..., T, ...)``."""
    n = len(carry_batch_shape(carry))
    return jax.tree.map(lambda a: jnp.moveaxis(a, 0, n), tree)


def check_inputs(caller: str, params: Params, carry: Carry, xs: PyTree) -> Array | None:
    """Check time-major inputs against the carry's batch shape, and token ids against the vocabulary.

    Returns ``None``, or (under ``jit``) a traced boolean that is true when a token id is out of range.
    """
    batch = carry_batch_shape(carry)
    leaves = jax.tree.leaves(xs)
    for leaf in leaves:
        shape = tuple(jnp.shape(leaf))
        single = len(leaves) == 1  # one array: ids (T, ...) or features (T, ..., D); a pytree: leaves (T, ..., *)
        if single:
            fits = shape[1:] == batch if is_token_ids(leaf) else shape[1:-1] == batch and len(shape) >= 2
        else:
            fits = shape[1 : 1 + len(batch)] == batch and len(shape) > len(batch)
        if not fits:
            raise ValueError(
                f"{caller}: inputs xs {shape} {jnp.result_type(leaf)} do not fit the carry's batch shape {batch}: "
                f"inputs are time-major, float features (T, {', '.join(map(str, batch + ('D',)))}) or integer "
                f"token ids (T, {', '.join(map(str, batch))}); pass time_major=False for batch-major inputs "
                "(..., T, D), and make the carry with jaxrnn.initial_carry(params, batch_shape)"
            )
    _check_carry_dtype(caller, params, carry)
    V = registry.token_vocabulary(params)
    if len(leaves) != 1 or not is_token_ids(leaves[0]) or V is None:
        return None
    return token_ids_out_of_range(f"{caller}: xs", leaves[0], V)


def _check_carry_dtype(caller: str, params: Params, carry: Carry) -> None:
    """A registered cell keeps its state in the accumulation dtype of its parameters (``jaxrnn.precision``): a
    carry of another float dtype is named as the cause."""
    if type(params) not in registry._by_type:
        return
    floats = lambda tree: [a for a in jax.tree.leaves(tree) if jnp.issubdtype(jnp.result_type(a), jnp.inexact)]
    dtypes = {accumulation_dtype(jnp.result_type(a)) for a in floats(params)}
    if len(dtypes) != 1:
        return
    (dtype,) = dtypes
    for leaf in floats(carry):
        if jnp.result_type(leaf) != dtype:
            raise ValueError(
                f"{caller}: the carry is {jnp.result_type(leaf)} but the step computes in {dtype} (the parameters' "
                "dtype); make the carry with jaxrnn.initial_carry(params, batch_shape) or cast it to that dtype"
            )


def _poison_lookup(params: Params, bad: Array | None) -> Params:
    """``params`` with the table that token ids look up (embedding or ``Wxh``) NaN when ``bad``: with the NaN
    outputs, every entry of every gradient is then NaN, also the columns of ids that never occur."""
    return params if bad is None else registry.map_token_table(params, lambda W: nan_if(bad, W))


def _unroll(
    step: Callable[..., Any],
    params: Params,
    carry: Carry,
    xs: PyTree,
    *,
    method: Method,
    unroll: int,
    remat: bool,
    reverse: bool,
    mask: ArrayLike | None,
    lengths: ArrayLike | None,
    padding: Padding,
    key: PRNGKey | None,
    dropout: float,
    newton: NewtonSolver | None,
) -> tuple[Carry, PyTree]:
    """``unroll`` of time-major inputs, checked already."""
    is_stack = isinstance(params, stack.StackParams)
    if method == "auto":
        method = choose_method(step, params, masked=mask is not None or lengths is not None, remat=remat)
    if dropout > 0 and not is_stack:
        raise ValueError(
            f"unroll: dropout acts between the layers of a StackParams model, not on {type(params).__name__}"
        )
    options: dict[str, Any] = dict(method=method, unroll=unroll, remat=remat, reverse=reverse, newton=newton)
    if mask is not None or lengths is not None:
        if method == "fused":
            raise ValueError("unroll: method='fused' takes no mask, lengths or remat; use method='scan' for those")
        if dropout > 0:
            raise ValueError("unroll: dropout and mask/lengths cannot be combined")
        T = _leading_length(xs)
        mask = _resolve_mask(mask, lengths, padding, T)
        _check_mask_fits(mask, carry)
        return _unroll_step(mask_step(step), params, carry, (xs, mask), **options)
    if method == "fused" or (is_stack and dropout > 0):
        if step is not registry.step_for(params):
            raise ValueError(
                "unroll: method='fused' and dropout run the registered step of the parameters "
                "(jaxrnn.step_for(params)); use method='scan' without dropout for another step"
            )
        if is_stack:
            if method == "fused" and _folds_embedding(params, xs):
                params = stack.fold_embedding(params)
            layer = lambda p, c, x: _unroll_step(registry.step_for(p), p, c, x, **options)
            return stack.unroll_layers(params, carry, xs, unroll_layer=layer, key=key, dropout_rate=dropout)
    return _unroll_step(step, params, carry, xs, **options)


def _folds_embedding(params: stack.StackParams, xs: PyTree) -> bool:
    """Whether the fused path folds the stack's embedding into layer 0 (``jaxrnn.stack.fold_embedding``): for
    token ids into an RNN or LSTM layer, when the sequence holds at least ``V`` tokens. Folding costs one
    ``(G, E) x (E, V)`` product per call and saves the ``(T B, E) x (E, G)`` input projection, so it pays from
    ``T B >= V`` (measured in ``benchmarks/lstm_peers``: 1.2x at (32, 64, 256), slower at (1, 25, 100))."""
    return (
        params.embedding is not None
        and recurrence.supports(params.layers[0])
        and is_token_ids(xs)
        and int(np.prod(jnp.shape(xs))) >= params.embedding.shape[1]
    )


def choose_method(step: Callable[..., Any], params: Params, *, masked: bool = False, remat: bool = False) -> Method:
    """The method ``method="auto"`` runs for ``step`` and ``params``: ``"fused"`` where the fused recurrence
    computes the model (an RNN or LSTM layer, or a stack holding one, with its registered step, no mask and no
    remat), else ``"scan"``. Both are exact paths of the same maths; ``"loop"`` (compile time grows with T) and
    ``"newton"`` (converges only for contracting cells) are never chosen.

    The rule is the same on every backend and at every precision: on CPU the fused path trained the char-LM
    LSTM 1.2-1.4x faster than ``scan`` at every shape of ``benchmarks/lstm_peers``; it hoists the input
    projection out of the loop and hand-writes BPTT, which does no more work than ``scan`` anywhere.
    """
    if masked or remat:
        return "scan"
    try:
        registered = registry.step_for(params)
    except TypeError:
        return "scan"
    if step is not registered:
        return "scan"
    layers = params.layers if isinstance(params, stack.StackParams) else (params,)
    return "fused" if any(recurrence.supports(p) for p in layers) else "scan"


def _unroll_step(
    step: Callable[..., Any],
    params: Params,
    carry: Carry,
    xs: PyTree,
    *,
    method: Method,
    unroll: int,
    remat: bool,
    reverse: bool,
    newton: NewtonSolver | None,
) -> tuple[Carry, PyTree]:
    """``unroll`` of one step function without mask or dropout (``method="fused"`` falls back to ``scan`` for a
    cell the fused recurrence does not compute)."""
    if method == "newton":
        flip = (lambda tree: jax.tree.map(lambda a: jnp.flip(a, 0), tree)) if reverse else (lambda tree: tree)
        carry_T, hs = _newton(step, params, carry, flip(xs), newton)
        return carry_T, flip(hs)
    if method == "fused" and recurrence.supports(params):
        _leading_length(xs)
        if reverse:
            carry_T, hs = recurrence.fused_unroll(params, carry, jnp.flip(xs, 0))
            return carry_T, jnp.flip(hs, 0)
        return recurrence.fused_unroll(params, carry, xs)
    T = _leading_length(xs)
    body = jax.checkpoint(step) if remat else step
    f = functools.partial(body, params)
    x0 = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape[1:], x.dtype), xs)
    _check_carry_kept(f, carry, x0)
    if method != "loop":
        return jax.lax.scan(f, carry, xs, unroll=unroll, reverse=reverse)
    outs = [None] * T
    for t in reversed(range(T)) if reverse else range(T):
        carry, outs[t] = f(carry, jax.tree.map(lambda x: x[t], xs))
    if T == 0:
        _, out_shape = jax.eval_shape(f, carry, x0)
        return carry, jax.tree.map(lambda s: jnp.zeros((0, *s.shape), s.dtype), out_shape)
    return carry, jax.tree.map(lambda *hs: jnp.stack(hs), *outs)


def _newton(
    step: Callable[..., Any], params: Params, carry: Carry, xs: PyTree, solver: NewtonSolver | None
) -> tuple[Carry, PyTree]:
    """The Newton solve, with NaN in the carries and outputs of every example that did not converge."""
    from jaxrnn.newton import NewtonSolver

    result = (NewtonSolver() if solver is None else solver)(step, params, carry, xs)
    ok = result.converged

    def where_converged(a: Array, leading: int) -> Array:
        m = ok.reshape((1,) * leading + ok.shape + (1,) * (a.ndim - leading - ok.ndim))
        return jnp.where(m, a, jnp.nan)

    return (
        jax.tree.map(lambda a: where_converged(a, 0), result.carry),
        jax.tree.map(lambda a: where_converged(a, 1), result.hs),
    )


unroll_fn = unroll  # callable where a keyword argument named ``unroll`` hides the function


def length_mask(lengths: ArrayLike, T: int, *, padding: Padding = "right") -> Array:
    """``(T, ...)`` booleans from ``lengths (...)``: ``t < length`` (right padding) or ``t >= T - length``
    (left padding)."""
    if padding not in PADDINGS:
        raise ValueError(f"unknown padding {padding!r}; expected one of {PADDINGS}")
    if not isinstance(lengths, jax.core.Tracer):  # known values (also when closed over under jit): check them
        known = np.asarray(lengths)
        if known.size and np.issubdtype(known.dtype, np.integer) and (known.min() < 0 or known.max() > T):
            raise ValueError(
                f"lengths must lie in 0..{T} (the number of time steps), got {int(known.min())}..{int(known.max())}"
            )
    lengths = jnp.asarray(lengths)
    if not jnp.issubdtype(lengths.dtype, jnp.integer):
        raise TypeError(f"lengths must be integers, got dtype {lengths.dtype}")
    t = jnp.arange(T).reshape((T,) + (1,) * lengths.ndim)
    return t < lengths if padding == "right" else t >= T - lengths


def _resolve_mask(mask: ArrayLike | None, lengths: ArrayLike | None, padding: Padding, T: int) -> Array:
    if mask is not None and lengths is not None:
        raise ValueError("unroll: pass mask or lengths, not both")
    if lengths is not None:
        return length_mask(lengths, T, padding=padding)
    mask = jnp.asarray(mask)
    if mask.ndim == 0 or mask.shape[0] != T:
        raise ValueError(f"unroll: mask has shape {mask.shape}; expected (T={T}, ...) like xs")
    return mask.astype(bool)


def _check_mask_fits(mask: Array, carry: Carry) -> None:
    batch = tuple(mask.shape[1:])
    for leaf in jax.tree.leaves(carry):
        if tuple(leaf.shape[:-1]) != batch:
            raise ValueError(
                f"unroll: mask/lengths give batch shape {batch} but the carry has a leaf of shape "
                f"{tuple(leaf.shape)}; expected ({', '.join(map(str, batch + ('H',)))})"
            )


def _where(m: Array, new: Array, old: Array) -> Array:
    """``where(m, new, old)`` with ``m (...)`` broadcast over the trailing feature axes of ``new (..., F)``."""
    return jnp.where(m.reshape(m.shape + (1,) * (new.ndim - m.ndim)), new, old)


@functools.cache
def mask_step(step: Step) -> Step:
    """``step`` taking ``(x_t, m_t)``: where ``m_t (...)`` is false the carry is kept and the output is zero.

    ``jnp.where`` passes no gradient to the branch it does not take, so a masked step contributes nothing,
    in value or gradient, where the mask is off. Cached: the same ``step`` gives the same function (stable
    under ``jit``'s static arguments). Use it with ``xs = (xs, mask)`` wherever a step goes, e.g.
    ``sequence_loss(params, carry, (xs, mask), targets, step=mask_step(step_for(params)), mask=mask)``.
    """

    def masked(params: Params, carry: Carry, x_and_mask: tuple[PyTree, Array]) -> tuple[Carry, PyTree]:
        x, m = x_and_mask
        new_carry, out = step(params, carry, x)
        new_carry = jax.tree.map(lambda new, old: _where(m, new, old), new_carry, carry)
        out = jax.tree.map(lambda o: _where(m, o, jnp.zeros_like(o)), out)
        return new_carry, out

    masked.__name__ = masked.__qualname__ = f"masked_{getattr(step, '__name__', 'step')}"
    return masked


def unroll_bidirectional(
    step: Callable[..., Any] | tuple[Callable[..., Any], Callable[..., Any]],
    params: tuple[Params, Params],
    carry: tuple[Carry, Carry],
    xs: PyTree,
    *,
    mask: ArrayLike | None = None,
    lengths: ArrayLike | None = None,
    padding: Padding = "right",
    method: Method = "scan",
    unroll: int = 1,
    remat: bool = False,
) -> tuple[tuple[Carry, Carry], Array]:
    """A forward and a backward unroll over the same ``xs``, outputs concatenated on the last axis.

    Args:
      step: one step for both directions, or a pair ``(step_forward, step_backward)``.
      params, carry: pairs ``(forward, backward)``.
      mask, lengths, padding: as for ``unroll``; with them the backward pass starts at each sequence's own
        last step, as if each were run alone.
    Returns: ``((carry_forward, carry_backward), hs (T, ..., H_forward + H_backward))``; ``carry_backward`` is
      the state after reading ``x_0``.
    """
    steps = tuple(step) if isinstance(step, (tuple, list)) else (step, step)
    if (
        len(steps) != 2
        or not (isinstance(params, (tuple, list)) and len(params) == 2)
        or not (isinstance(carry, (tuple, list)) and len(carry) == 2)
    ):
        raise ValueError(
            "unroll_bidirectional: params and carry (and step, if a sequence) must be pairs (forward, backward)"
        )
    kw: dict[str, Any] = dict(mask=mask, lengths=lengths, padding=padding, method=method, unroll=unroll, remat=remat)
    carry_f, hs_f = unroll_fn(steps[0], params[0], carry[0], xs, **kw)
    carry_b, hs_b = unroll_fn(steps[1], params[1], carry[1], xs, reverse=True, **kw)
    return (carry_f, carry_b), jnp.concatenate([hs_f, hs_b], axis=-1)
