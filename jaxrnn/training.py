"""The training step: loss, gradient, optimiser update; one compiled call may run many of them.

Shapes: ``xs (T, ...)`` inputs or ids, ``targets (T, ...)`` ids, carry with batch shape ``(...)``; with
``updates_per_call=K`` every per-update argument gets a leading ``K`` axis (``xs (K, T, ...)``).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import jax
import jax.numpy as jnp
import optax

from jaxrnn import registry
from jaxrnn._checks import is_concrete, is_token_ids, positive_int, token_ids_out_of_range
from jaxrnn.losses import sequence_loss
from jaxrnn.precision import check_compute_dtype
from jaxrnn.typing import REDUCTIONS, Array, DTypeLike, ArrayLike, Carry, Method, Params, PRNGKey, PyTree, Reduction
from jaxrnn.unrolling import _check_options

if TYPE_CHECKING:
    from jaxrnn.newton import NewtonSolver

TrainStep = Callable[..., tuple[Any, ...]]
"""What ``make_train_step`` returns: ``train_step(params, opt_state, carry, xs, targets, ...)``."""
"""``train_step(params, opt_state, carry, xs, targets, mask=None, *, reset=None, active=None, key=None)
-> (params, opt_state, carry_T, loss[, grad_norm])``."""

_Model = tuple[Params, PyTree, Carry]
"""What an update reads and writes: ``(params, opt_state, carry)``."""

_Metrics = tuple[Array, Array | None]
"""What an update reports: ``(loss, grad_norm)``, the norm ``None`` unless asked for."""


def reset_carry(carry: Carry, reset: Array) -> Carry:
    """Zero the state of the streams where ``reset (...)`` is true; keep the others (leaves ``(..., H)``)."""
    return jax.tree.map(lambda s: jnp.where(reset[..., None], jnp.zeros_like(s), s), carry)


def make_train_step(
    optimizer: optax.GradientTransformation,
    *,
    loss_fn: Callable[..., tuple[Array, Carry]] | None = None,
    step: Callable[..., Any] | None = None,
    reduction: Reduction = "sum",
    method: Method = "auto",
    unroll: int = 1,
    remat: bool = False,
    segment_length: int | None = None,
    dropout: float = 0.0,
    newton: NewtonSolver | None = None,
    compute_dtype: DTypeLike | None = None,
    updates_per_call: int = 1,
    with_grad_norm: bool = False,
    donate: bool = False,
) -> TrainStep:
    """Build ``train_step(params, opt_state, carry, xs, targets, mask=None, *, reset=None, active=None, key=None)
    -> (params, opt_state, carry_T, loss)``, jitted.

    One update: ``(loss, carry_T), grads = value_and_grad(loss_fn)(params, carry, xs, targets, mask=mask)``,
    then the optimiser's update. The gradient flows only within the chunk ``xs``: ``carry`` comes in as a plain
    input, so carrying ``carry_T`` into the next call is truncated BPTT.

    Args:
      loss_fn: ``loss_fn(params, carry, xs, targets, *, mask=None[, key]) -> (loss, carry_T)``; by default
        ``sequence_loss`` with ``step``, ``reduction``, ``method`` (``"auto"``: the fused recurrence where it
        applies, else ``scan``; see ``jaxrnn.choose_method``), ``unroll``, ``remat``, ``segment_length``,
        ``dropout`` (between the layers of a stack), ``newton`` (the options of ``method="newton"``) and
        ``compute_dtype`` (the dtype the weight matrices multiply in, e.g. ``jnp.bfloat16``; parameters, optimiser
        state and gradients keep the parameters' dtype: ``jaxrnn.precision``).
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
    key (for dropout; ``(K, ...)``: one per update; required when ``dropout > 0``). The function is traced once
    per input shape.

    Every option is checked here, when the step is built. Called with known token ids (outside ``jit``), the step
    raises ``ValueError`` for an id outside ``[0, V)`` in ``xs`` or ``targets``; under ``jit`` such an id makes
    the loss and the update NaN.

    Example:
      >>> import jax, jaxrnn
      >>> params = jaxrnn.init_rnn(jax.random.key(0), input_size=5, hidden_size=8, output_size=5)
      >>> optimizer = jaxrnn.lecture_optimizer(0.1)
      >>> train_step = jaxrnn.make_train_step(optimizer)
      >>> ids = jax.random.randint(jax.random.key(1), (11, 2), 0, 5)  # T + 1 = 11 steps of 2 streams
      >>> params, opt_state, carry, loss = train_step(
      ...     params, optimizer.init(params), jaxrnn.initial_carry(params, (2,)), ids[:-1], ids[1:])
      >>> loss.shape
      ()
    """
    K = positive_int("make_train_step: updates_per_call", updates_per_call)
    if not isinstance(optimizer, optax.GradientTransformation):
        raise TypeError(
            f"make_train_step: optimizer must be an optax.GradientTransformation, got {type(optimizer).__name__}"
        )
    if reduction not in REDUCTIONS:
        raise ValueError(f"make_train_step: unknown reduction {reduction!r}; expected one of {REDUCTIONS}")
    _check_options("make_train_step", method=method, unroll=unroll, remat=remat, dropout=dropout, newton=newton)
    check_compute_dtype("make_train_step", compute_dtype)
    if segment_length is not None:
        positive_int("make_train_step: segment_length", segment_length)
    if loss_fn is not None and not callable(loss_fn):
        raise TypeError(f"make_train_step: loss_fn must be callable, got {type(loss_fn).__name__}")
    checks_ids = loss_fn is None
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
            compute_dtype=compute_dtype,
        )

    def update(
        params: Params,
        opt_state: PyTree,
        carry: Carry,
        xs: PyTree,
        targets: ArrayLike,
        mask: ArrayLike | None,
        reset: Array | None,
        key: PRNGKey | None,
    ) -> tuple[_Model, _Metrics]:
        if reset is not None:
            carry = reset_carry(carry, reset)
        kw = {} if key is None else {"key": key}
        (loss, carry_T), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, carry, xs, targets, mask=mask, **kw)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        norm = optax.tree.norm(grads) if with_grad_norm else None
        return (optax.apply_updates(params, updates), opt_state, carry_T), (loss, norm)

    def finish(params: Params, opt_state: PyTree, carry: Carry, loss: Array, norm: Array | None) -> tuple[Any, ...]:
        return (params, opt_state, carry, loss, norm) if with_grad_norm else (params, opt_state, carry, loss)

    def one(
        state: _Model,
        xs: PyTree,
        targets: ArrayLike,
        mask: ArrayLike | None,
        reset: Array | None,
        active: Array | None,
        key: PRNGKey | None,
    ) -> tuple[_Model, _Metrics]:
        # typed: an untyped s could fill all of update's parameters, and checkers would call the rest too many
        run: Callable[[_Model], tuple[_Model, _Metrics]] = lambda s: update(*s, xs, targets, mask, reset, key)
        if active is None:
            return run(state)
        skipped = jax.tree.map(lambda a: jnp.zeros(a.shape, a.dtype), jax.eval_shape(run, state)[1])
        return jax.lax.cond(active, run, lambda s: (s, skipped), state)

    def train_step(
        params: Params,
        opt_state: PyTree,
        carry: Carry,
        xs: PyTree,
        targets: ArrayLike,
        mask: ArrayLike | None = None,
        *,
        reset: Array | None = None,
        active: Array | None = None,
        key: PRNGKey | None = None,
    ) -> tuple[Any, ...]:
        if dropout > 0 and key is None:
            raise ValueError(f"train_step: dropout={dropout} needs key= (the PRNG key of each update's dropout)")
        if K == 1:
            state, (loss, norm) = one((params, opt_state, carry), xs, targets, mask, reset, active, key)
            return finish(*state, loss, norm)

        def body(state: _Model, batch: tuple[Any, ...]) -> tuple[_Model, _Metrics]:
            return one(state, *batch)

        batches = (xs, targets, mask, reset, active, key)
        _check_leading(K, batches)
        (params, opt_state, carry), (losses, norms) = jax.lax.scan(body, (params, opt_state, carry), batches)
        return finish(params, opt_state, carry, losses, norms)

    jitted = jax.jit(train_step, donate_argnums=(0, 1) if donate else ())

    @functools.wraps(train_step)
    def checked(
        params: Params, opt_state: PyTree, carry: Carry, xs: PyTree, targets: ArrayLike, *args: Any, **kwargs: Any
    ) -> tuple[Any, ...]:
        if checks_ids:
            _check_known_ids(params, xs, targets)
        return jitted(params, opt_state, carry, xs, targets, *args, **kwargs)

    checked.lower = jitted.lower  # type: ignore[attr-defined]  # ahead-of-time compilation, as for any jitted function
    checked.jitted = jitted  # type: ignore[attr-defined]  # for jax.export and other whole-function tools
    return checked


def _check_known_ids(params: Params, xs: PyTree, targets: ArrayLike) -> None:
    """``ValueError`` for a token id out of range among known (not traced) ``xs`` and ``targets`` held in host
    memory; ids already on an accelerator are left to the compiled step (NaN), which reading them back every
    update would stall."""
    V_in, Why = registry.token_vocabulary(params), getattr(params, "Why", None)
    if V_in is not None and _known_on_host(xs):
        token_ids_out_of_range("train_step: xs", xs, V_in)
    if Why is not None and _known_on_host(targets):
        token_ids_out_of_range("train_step: targets", targets, Why.shape[0])


def _known_on_host(ids: Any) -> bool:
    """Whether ``ids`` are integer values known now and held in host memory (NumPy, or a JAX array on the CPU)."""
    if not (is_token_ids(ids) and is_concrete(ids)):
        return False
    return not isinstance(ids, jax.Array) or all(device.platform == "cpu" for device in ids.devices())


def _check_leading(K: int, trees: PyTree) -> None:
    for leaf in jax.tree.leaves(trees):
        if jnp.ndim(leaf) == 0 or jnp.shape(leaf)[0] != K:
            raise ValueError(
                f"train_step: with updates_per_call={K} every per-update argument needs a leading "
                f"axis of {K} (xs (K, T, ...)); got an array of shape {jnp.shape(leaf)}"
            )
