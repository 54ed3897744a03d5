"""Evaluating a recurrence in parallel over time by Newton's method: DEER, quasi-DEER and a damped variant.

Shapes: ``T`` time, ``...`` batch, ``n`` the size of one example's carry flattened (``H`` for the RNN and GRU,
``2H`` for the LSTM's ``(h, c)``), ``s_t`` the flattened carry after step ``t`` (``s_0`` the initial carry).

The states ``s_1..s_T`` of ``s_t = f(s_{t-1}, x_t)``, with ``f`` the carry part of ``step(params, ., x_t)``, are
the root of one nonlinear system ``r_t(s) = s_t - f(s_{t-1}, x_t) = 0``. Newton's method (DEER, Lim et al.,
ICLR 2024) linearises ``f`` around the current guess ``s`` and solves for the update ``d``::

    d_t = J_t d_{t-1} - r_t(s),    d_0 = 0,    J_t = df/ds (s_{t-1}, x_t)

a *linear* recurrence, solved by ``jax.lax.associative_scan`` over the affine maps ``d -> J_t d + b_t`` in
``O(log T)`` depth. One iteration costs one batched evaluation of the step and its Jacobian at all ``T`` steps
plus the scan. Two facts hold for any matrix ``A_t`` used in place of ``J_t`` (quasi-Newton):

* the fixed point is the same: a converged solution is the sequential one, whatever ``A_t`` is;
* after ``k`` iterations ``s_1..s_k`` are exact (``s_0`` is given, so ``s_1 = f(s_0, x_1)`` after one, and so on),
  so the iteration converges in at most ``T`` iterations in exact arithmetic.

``jacobian="diagonal"`` (quasi-DEER, Gonzalez et al., NeurIPS 2024) keeps only ``diag(J_t)``: the scan costs
``O(T n)`` instead of ``O(T n^3)`` and stores ``T n`` numbers instead of ``T n^2``.

``damping = lambda > 0`` uses ``A_t = J_t / (1 + lambda)`` (or its diagonal). This is a Levenberg-Marquardt-like
shrinking of the linear model, *not* ELK's Kalman-smoother form. Why it helps, provably: the undamped scan
multiplies Jacobians, ``d_t = sum_k (J_t ... J_{k+1}) (-r_k)``, and for a chaotic recurrence the products grow
like ``exp(t * Lyapunov exponent)``: in float32 they overflow past ``3e38`` and the iterate becomes ``inf``/``nan``
(DEER's known instability). With ``||J_t|| / (1 + lambda) <= rho < 1`` the scan is a contraction,
``|d_t| <= max|r| / (1 - rho)``, and the next iterate ``F_t + A_t d_{t-1}`` stays within ``rho max|r| / (1 - rho)``
of the cell's own outputs: every iterate is finite and bounded, while the two facts above still give the exact
solution in at most ``T`` iterations (tested on ``Whh = 4 Q``, T = 200: undamped is non-finite after one
iteration, ``lambda = 1`` converges). The price is linear instead of quadratic convergence near the
solution (the error contracts roughly like ``lambda/(1+lambda)``), so damp only recurrences that need it.

Gradients: ``jax.grad`` does not differentiate through the iterations. The solution is differentiated implicitly
(``jax.custom_vjp``): given the cotangents ``g_t`` of the states, the adjoint ``mu_t = g_t + J_{t+1}^T mu_{t+1}``
(reverse time, ``mu_{T+1} = 0``) is solved by a reverse associative scan with the *exact* Jacobians at the
solution (also in ``"diagonal"`` mode), then one batched ``vjp`` of the step over all ``t`` gives the parameter,
input and initial-carry cotangents. ``adjoint="sequential"`` solves the same adjoint by a reverse ``lax.scan`` of
``vjp``s instead (``O(T)`` depth, no ``T n^2`` Jacobians stored). Either way the gradient is the scan's gradient
at the converged states; at states that have not converged it is the gradient of the sequential recurrence
linearised at those states, which means little, so check ``converged``. Being a ``custom_vjp``, the solve has
no forward-mode derivative: ``jax.jvp`` and ``jax.jacfwd`` raise; use ``unroll(..., method="scan")`` for those.

Costs of the Jacobian: JAX's forward mode applied to ``n`` one-hot tangents (``jax.jacfwd``), ``n`` Jacobian-
vector products batched into one call per time step. For a dense cell (``Whh @ h``) a jvp costs as much as the
step, so ``J_t`` costs ``n`` steps: ``O(n^3)`` flops per time step for the RNN. The *diagonal* of a dense
Jacobian is not cheaper to get exactly from a black-box step: entry ``i`` needs the tangent ``e_i``, so it also
takes ``n`` jvps (same flops as the full Jacobian); what quasi-DEER saves is the scan (``O(n)`` instead of
``O(n^3)`` per combine) and the memory (the ``n x n`` block of each step is reduced to its diagonal in chunks of
time steps, so at most about ``2^24`` Jacobian entries exist at once). Cheaper diagonals exist only for cells
whose structure is known (the GRU's in ``O(n^2)`` by hand); this module takes the step as a black box.

Batch: every leaf of the carry is ``(..., F)`` with the same batch shape ``(...)``, every leaf of ``xs`` is
``(T, ..., ...)``; the solver is ``jax.vmap``-ed over the batch, so each example has its own iteration count,
residual and flag (a batched ``while_loop`` runs until the slowest example is done).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import NamedTuple, get_args

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree
from jaxrnn.typing import Adjoint, Array, Carry, DTypeLike, Jacobian, Params, PyTree, Step


JACOBIANS: tuple[Jacobian, ...] = get_args(Jacobian)
"""The values of ``jacobian=``, ``"full"`` (DEER) and ``"diagonal"`` (quasi-DEER)."""
ADJOINTS: tuple[Adjoint, ...] = get_args(Adjoint)
"""The values of ``adjoint=``, ``"parallel"`` and ``"sequential"``."""
_DIAGONAL_CHUNK_ENTRIES = 2**24  # Jacobian entries alive at once while "diagonal" reduces n x n blocks


class NewtonResult(NamedTuple):
    """What ``newton_unroll`` returns.

    ``carry`` and ``hs`` are ``unroll``'s ``(carry_T, hs)``; ``states`` is the carry after every step (leaves
    ``(T, ..., F)``), to pass back as ``init=`` for a warm start; ``iterations`` (int32), ``residual``
    (``max_t |s_t - f(s_{t-1}, x_t)|``, the carry's dtype) and ``converged`` (bool) have the batch shape ``(...)``.

    When ``converged`` is False (``max_iter`` reached, or a non-finite iterate stopped the loop early), ``carry``,
    ``hs`` and ``states`` are the last iterate: its first ``iterations`` steps are exact, the rest are not the
    recurrence's states and may be ``inf``/``nan``; ``residual`` then says how far off they are.
    """

    carry: Carry
    hs: Array
    states: Carry
    iterations: Array
    residual: Array
    converged: Array


def default_tolerance(dtype: DTypeLike) -> float:
    """``8 eps`` of ``dtype``: about ``9.5e-7`` in float32, ``1.8e-15`` in float64 (relative to ``max(1, |s|)``)."""
    return 8 * float(jnp.finfo(dtype).eps)


def _check_options(jacobian, damping, max_iter, adjoint):
    if jacobian not in JACOBIANS:
        raise ValueError(f"newton_unroll: unknown jacobian {jacobian!r}; expected one of {JACOBIANS}")
    if adjoint not in ADJOINTS:
        raise ValueError(f"newton_unroll: unknown adjoint {adjoint!r}; expected one of {ADJOINTS}")
    if not damping >= 0:
        raise ValueError(f"newton_unroll: damping must be >= 0, got {damping!r}")
    if max_iter is not None and (not isinstance(max_iter, int) or isinstance(max_iter, bool) or max_iter < 0):
        raise ValueError(f"newton_unroll: max_iter must be a non-negative integer, got {max_iter!r}")


_Affine = tuple[Array, Array]


def _affine_combine(diagonal: bool) -> Callable[[_Affine, _Affine], _Affine]:
    """Compose ``d -> A1 d + b1`` (earlier) with ``d -> A2 d + b2`` (later): ``(A2 A1, A2 b1 + b2)``."""

    def combine(earlier, later):
        A1, b1 = earlier
        A2, b2 = later
        if diagonal:
            return A2 * A1, A2 * b1 + b2
        return A2 @ A1, jnp.einsum("...ij,...j->...i", A2, b1) + b2

    return combine


def linear_recurrence(A: Array, b: Array, *, reverse: bool = False) -> Array:
    """``d_t = A_t d_{t-1} + b_t`` from ``d_0 = 0`` for t = 1..T (``reverse``: ``d_t = A_t d_{t+1} + b_t`` from
    ``d_{T+1} = 0``), by ``jax.lax.associative_scan``: ``O(log T)`` depth.

    ``A (T, n, n)`` matrices or ``A (T, n)`` diagonals, ``b (T, n)``; returns ``d (T, n)``.
    """
    diagonal = A.ndim == b.ndim
    return jax.lax.associative_scan(_affine_combine(diagonal), (A, b), reverse=reverse)[1]


def _flat_step(step, unravel):
    """``f(params, s (n,), x) -> (s_next (n,), out)``: the step on the flattened carry of one example."""

    def f(params, s, x):
        carry, out = step(params, unravel(s), x)
        return ravel_pytree(carry)[0].astype(s.dtype), out

    return f


def _values_and_jacobians(
    f: Callable[[Params, Array, PyTree], tuple[Array, PyTree]],
    params: Params,
    S_prev: Array,
    xs: PyTree,
    diagonal: bool,
) -> tuple[Array, Array]:
    """``F_t = f(s_{t-1}, x_t)`` and ``J_t`` (``(T, n, n)``, or its diagonal ``(T, n)``) for all t at once."""

    def one(s, x):
        g = lambda s: (f(params, s, x)[0],) * 2
        J, value = jax.jacfwd(g, has_aux=True)(s)  # n jvps; the primal is computed once
        return value, (jnp.diagonal(J) if diagonal else J)

    T, n = S_prev.shape
    if not diagonal or T * n * n <= _DIAGONAL_CHUNK_ENTRIES:
        return jax.vmap(one)(S_prev, xs)
    chunk = max(1, _DIAGONAL_CHUNK_ENTRIES // (n * n))  # bounds the n x n blocks alive before the diagonal
    return jax.lax.map(lambda a: one(*a), (S_prev, xs), batch_size=chunk)


def _apply(A, d):
    """``A_t d_t`` for matrices ``A (T, n, n)`` or diagonals ``A (T, n)``."""
    return A * d if A.ndim == d.ndim else jnp.einsum("tij,tj->ti", A, d)


def _shift(S, s0):
    """``(s_0, s_1, ..., s_{T-1})`` from ``S = (s_1..s_T)``."""
    return jnp.concatenate([s0[None], S[:-1]], axis=0)


def _solve_one(f, params, s0, xs, S_init, *, diagonal, damping, tol, max_iter):
    """Newton on one example: ``(S (T, n), iterations, residual, converged)``."""
    shrink = 1.0 / (1.0 + damping)

    def evaluate(S):
        F, J = _values_and_jacobians(f, params, _shift(S, s0), xs, diagonal)
        residual = S - F
        # XLA's max may skip nan (all-nan gives -inf): a non-finite iterate must read as an infinite residual
        err = jnp.where(jnp.all(jnp.isfinite(residual)), jnp.max(jnp.abs(residual)), jnp.inf)
        scale = jnp.maximum(1.0, jnp.max(jnp.abs(F)))
        return F, J, err, err <= tol * scale

    def cond(state):
        i, _, _, _, err, done = state
        return (i < max_iter) & ~done & jnp.isfinite(err)  # a non-finite iterate stays non-finite: stop

    def body(state):
        i, S, F, J, _, _ = state
        A = J * shrink if damping else J
        d = linear_recurrence(A, F - S)  # the update d_t = A_t d_{t-1} - r_t, d_0 = 0
        # s_t + d_t spelled F_t + A_t d_{t-1}: where d_{t-1} is exactly 0 (a solved prefix) s_t is exactly F_t,
        # so "after k iterations s_1..s_k are exact" holds in floating point too, not only in exact arithmetic
        S = F + _apply(A, _shift(d, jnp.zeros_like(s0)))
        return (i + 1, S, *evaluate(S))

    init = (jnp.zeros((), jnp.int32), S_init, *evaluate(S_init))
    i, S, _, _, err, done = jax.lax.while_loop(cond, body, init)
    return S, i, err, done


def _adjoint(f, params, s0, xs, S, G, adjoint):
    """``mu_t = g_t + J_{t+1}^T mu_{t+1}``, exact Jacobians at the solution ``S``; returns ``mu (T, n)``."""
    S_prev = _shift(S, s0)
    if adjoint == "sequential":

        def back(a, inputs):
            g, s_prev, x = inputs
            mu = g + a
            _, pullback = jax.vjp(lambda s: f(params, s, x)[0], s_prev)
            return pullback(mu)[0], mu

        _, mu = jax.lax.scan(back, jnp.zeros_like(s0), (G, S_prev, xs), reverse=True)
        return mu
    _, J = _values_and_jacobians(f, params, S_prev, xs, diagonal=False)
    A = jnp.concatenate([jnp.swapaxes(J[1:], -1, -2), jnp.zeros_like(J[:1])], axis=0)  # A_t = J_{t+1}^T
    return linear_recurrence(A, G, reverse=True)


def _make_solver(f, *, diagonal, damping, tol, max_iter, adjoint):
    """``solve(params, s0, xs, S_init) -> (S, iterations, residual, converged)`` with the implicit gradient."""

    @jax.custom_vjp
    def solve(params, s0, xs, S_init):
        return _solve_one(
            f,
            params,
            s0,
            xs,
            jax.lax.stop_gradient(S_init),
            diagonal=diagonal,
            damping=damping,
            tol=tol,
            max_iter=max_iter,
        )

    def solve_fwd(params, s0, xs, S_init):
        out = solve(params, s0, xs, S_init)
        return out, (params, s0, xs, out[0])

    def solve_bwd(residuals, cotangents):
        params, s0, xs, S = residuals
        G = cotangents[0]  # iterations, residual and converged carry no gradient
        mu = _adjoint(f, params, s0, xs, S, G, adjoint)
        all_steps = lambda p, S_prev, xs: jax.vmap(lambda s, x: f(p, s, x)[0])(S_prev, xs)
        _, pullback = jax.vjp(all_steps, params, _shift(S, s0), xs)
        d_params, d_S_prev, d_xs = pullback(mu)
        return d_params, d_S_prev[0], d_xs, jnp.zeros_like(S)

    solve.defvjp(solve_fwd, solve_bwd)
    return solve


def newton_unroll(
    step: Step,
    params: Params,
    carry: Carry,
    xs: PyTree,
    *,
    jacobian: Jacobian = "full",
    damping: float = 0.0,
    tol: float | None = None,
    max_iter: int | None = None,
    init: Carry | None = None,
    adjoint: Adjoint = "parallel",
    batch_ndim: int | None = None,
) -> NewtonResult:
    """``unroll(step, params, carry, xs)`` computed by Newton's method in parallel over time (DEER).

    Args:
      step: any ``step(params, carry, x) -> (carry, out)`` acting on each batch element independently.
      carry: initial state, any pytree whose leaves are ``(..., F)`` with one batch shape ``(...)``.
      xs: inputs ``(T, ..., D)`` or token ids ``(T, ...)`` (any pytree of such leaves), as for ``unroll``.
      jacobian: ``"full"`` (DEER, Newton) or ``"diagonal"`` (quasi-DEER); see the module docstring for costs.
      damping: ``lambda >= 0``; the linear model uses ``J / (1 + lambda)``. 0 is plain (quasi-)Newton.
      tol: stop once ``max_t |s_t - f(s_{t-1}, x_t)| <= tol * max(1, max_t |f(s_{t-1}, x_t)|)``; default
        ``default_tolerance(dtype)`` (8 eps).
      max_iter: most Newton updates per example; default ``T`` (enough in exact arithmetic, see above).
      init: initial guess for the states, a pytree like ``NewtonResult.states`` (e.g. the previous training
        step's solution: a warm start); default zeros. No gradient flows into it.
      adjoint: ``"parallel"`` (associative scan, stores ``T n^2`` Jacobian entries) or ``"sequential"``.
      batch_ndim: number of batch axes; default: the carry leaves' ``ndim - 1``.

    Returns: a ``NewtonResult``; ``(result.carry, result.hs)`` equals ``unroll(step, params, carry, xs)``.
      Differentiable in reverse mode only (``jax.grad``, ``jax.vjp``; the solve is a ``jax.custom_vjp``):
      ``jax.jvp`` and ``jax.jacfwd`` raise, and ``unroll(..., method="scan")`` serves forward mode.

    Example:
      >>> import jax, jaxrnn
      >>> from jaxrnn.newton import newton_unroll
      >>> params = jaxrnn.init_gru(jax.random.key(0), input_size=3, hidden_size=4, output_size=3)
      >>> xs = jax.random.normal(jax.random.key(1), (50, 3))  # T = 50 steps of one sequence
      >>> result = newton_unroll(jaxrnn.gru_step, params, jaxrnn.initial_carry(params), xs)
      >>> bool(result.converged), result.hs.shape
      (True, (50, 4))
    """
    _check_options(jacobian, damping, max_iter, adjoint)
    leaves: list[Array] = jax.tree.leaves(carry)
    if not leaves:
        raise ValueError("newton_unroll: the carry has no arrays")
    if batch_ndim is None:
        batch_ndim = leaves[0].ndim - 1
    batch_shape = tuple(leaves[0].shape[:batch_ndim])
    if any(tuple(leaf.shape[:batch_ndim]) != batch_shape for leaf in leaves):
        raise ValueError(
            f"newton_unroll: carry leaves {[leaf.shape for leaf in leaves]} do not share a batch "
            f"shape of {batch_ndim} axes"
        )
    x_leaves = jax.tree.leaves(xs)
    if not x_leaves or any(
        x.ndim < 1 + batch_ndim
        or x.shape[0] != x_leaves[0].shape[0]
        or tuple(x.shape[1 : 1 + batch_ndim]) != batch_shape
        for x in x_leaves
    ):
        raise ValueError(f"newton_unroll: xs leaves {[x.shape for x in x_leaves]} must be (T, {batch_shape}, ...)")
    T = x_leaves[0].shape[0]
    if T == 0:
        raise ValueError("newton_unroll: xs has no time steps (T = 0)")
    max_iter = T if max_iter is None else max_iter

    one_carry = jax.tree.map(lambda leaf: leaf[(0,) * batch_ndim], carry)
    s0_example, unravel = ravel_pytree(one_carry)
    dtype = s0_example.dtype
    tol = default_tolerance(dtype) if tol is None else tol
    f = _flat_step(step, unravel)
    solve = _make_solver(
        f, diagonal=jacobian == "diagonal", damping=float(damping), tol=tol, max_iter=max_iter, adjoint=adjoint
    )

    def per_example(carry, xs, S_init):
        s0 = ravel_pytree(carry)[0]
        S, iterations, residual, converged = solve(params, s0, xs, S_init)
        S_prev = _shift(S, s0)
        _, hs = jax.vmap(lambda s, x: f(params, s, x))(S_prev, xs)
        return S, hs, iterations, residual, converged

    if init is None:
        S_init = jnp.zeros((T, *batch_shape, s0_example.size), dtype)
    else:
        S_init = jax.vmap(_ravel_batched(batch_ndim))(init).astype(dtype)

    run = per_example
    for _ in range(batch_ndim):
        run = jax.vmap(run, in_axes=(0, 1, 1), out_axes=(1, 1, 0, 0, 0))
    S, hs, iterations, residual, converged = run(carry, xs, S_init)
    states = _unravel_batched(unravel, batch_ndim + 1)(S)
    carry_T = jax.tree.map(lambda leaf: leaf[-1], states)
    return NewtonResult(carry_T, hs, states, iterations, residual, converged)


def _ravel_batched(batch_ndim):
    """Flatten a carry pytree with ``batch_ndim`` leading batch axes to ``(..., n)``."""
    ravel = lambda c: ravel_pytree(c)[0]
    for _ in range(batch_ndim):
        ravel = jax.vmap(ravel)
    return ravel


def _unravel_batched(unravel, leading):
    for _ in range(leading):
        unravel = jax.vmap(unravel)
    return unravel


@dataclasses.dataclass(frozen=True)
class NewtonSolver:
    """The options of ``newton_unroll`` in one hashable value (a static argument of ``jit``).

    ``solver(step, params, carry, xs, init=None)`` returns the ``NewtonResult``; ``solver.unroll(step, params,
    carry, xs)`` returns ``unroll``'s ``(carry_T, hs)``. In ``unroll(..., method="newton")``: ``reverse=True`` is
    ``xs`` flipped on the time axis and ``hs`` flipped back; ``mask``/``lengths`` are ``mask_step(step)`` with
    ``xs = (xs, mask)``, as for the scan; ``remat`` and ``unroll`` do not apply.
    """

    jacobian: Jacobian = "full"
    damping: float = 0.0
    tol: float | None = None
    max_iter: int | None = None
    adjoint: Adjoint = "parallel"

    def __post_init__(self) -> None:
        _check_options(self.jacobian, self.damping, self.max_iter, self.adjoint)

    def __call__(
        self, step: Step, params: Params, carry: Carry, xs: PyTree, *, init: Carry | None = None
    ) -> NewtonResult:
        return newton_unroll(
            step,
            params,
            carry,
            xs,
            jacobian=self.jacobian,
            damping=self.damping,
            tol=self.tol,
            max_iter=self.max_iter,
            init=init,
            adjoint=self.adjoint,
        )

    def unroll(self, step: Step, params: Params, carry: Carry, xs: PyTree) -> tuple[Carry, Array]:
        """``(carry_T, hs)``, like ``jaxrnn.unroll(step, params, carry, xs)``."""
        result = self(step, params, carry, xs)
        return result.carry, result.hs
