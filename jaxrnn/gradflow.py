"""How gradients flow back through time: Jacobian norms against the lag, and the LSTM's cell path.

Shapes: ``T`` time, ``B`` batch, ``D`` input, ``H`` hidden. Functions named ``*_jacobians`` take ONE sequence
(carry ``(H,)``, ``xs (T, D)`` or ids ``(T,)``); ``jax.vmap`` them over a batch (``lag_norms`` does).
Index ``t`` names the state after ``t`` inputs (``h_0`` is the initial carry, ``h_T`` the final one); the lag
of ``dh_T/dh_t`` is ``T - t``.

The lecture's claims, which these functions measure (``experiments/vanishing_gradients.py`` plots them):

* Backpropagating through ``h_t = tanh(Wxh x_t + Whh h_{t-1} + bh)`` multiplies by ``diag(1 - h_t^2) Whh`` at
  every step, so ``dh_T/dh_t = prod_{u=t+1..T} diag(1 - h_u^2) Whh``: ``Whh`` is multiplied ``T - t`` times.
* Linear RNN with ``Whh = s Q`` (``Q`` orthogonal): ``dh_T/dh_t = s^(T-t) Q^(T-t)``, whose norm is exactly
  ``s^(T-t)``. The log-norm falls on a line of slope ``ln s`` against the lag: it vanishes for ``s < 1``
  and explodes for ``s > 1``.
* tanh RNN: ``|tanh'| <= 1``, so ``||dh_T/dh_t||_2 <= ||Whh||_2^(T-t) = s^(T-t)``. A largest singular value
  below 1 is *sufficient* for vanishing; above 1 it is only *necessary* for exploding (saturated units
  have ``tanh' ~ 0`` and can still make the gradient vanish).
* LSTM: ``c_t = f_t * c_{t-1} + i_t * g_t``. Along the cell path (gates held fixed) ``dc_T/dc_t`` is the
  diagonal matrix of the product of the forget gates ``f_{t+1} ... f_T``: nothing is multiplied by a
  weight matrix, so with ``f`` near 1 the gradient survives long lags; with ``f = 1, i = 0`` the cell keeps
  its content for any number of steps.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from jaxrnn.cells import LSTM_GATE_ORDER, LSTMCarry, LSTMParams, RNNParams, input_projection, lstm_step
from jaxrnn.typing import Array, ArrayLike, Carry, DTypeLike, Method, Params, PRNGKey, PyTree, Step
from jaxrnn.unrolling import unroll


def scaled_orthogonal(key: PRNGKey, hidden_size: int, scale: float, dtype: DTypeLike = jnp.float32) -> Array:
    """``Whh = scale * Q`` with ``Q (H, H)`` a random orthogonal matrix: every singular value equals ``scale``."""
    Q = jax.nn.initializers.orthogonal()(key, (hidden_size, hidden_size), dtype)
    return jnp.asarray(scale, dtype) * Q


def linear_rnn_step(params: RNNParams, h: Array, x: Array) -> tuple[Array, Array]:
    """The vanilla RNN without its tanh: ``h_t = Wxh x_t + Whh h_{t-1} + bh``; returns ``(h_t, h_t)``.

    Takes ``RNNParams``; pass it explicitly as ``step=`` (``step_for`` maps ``RNNParams`` to ``rnn_step``).
    """
    h = input_projection(params.Wxh, x) + h @ params.Whh.T + params.bh
    return h, h


def lstm_cell_path_step(params: LSTMParams, carry: LSTMCarry, x: Array) -> tuple[LSTMCarry, Array]:
    """``lstm_step`` with the gates blind to gradients through ``h_{t-1}`` (``stop_gradient``): same values.

    The only route left from ``c_{t-1}`` to ``c_t`` is ``c_t = f_t * c_{t-1} + i_t * g_t``, so differentiating
    through this step measures the cell path alone: ``dc_t/dc_{t-1} = diag(f_t)``.
    """
    return lstm_step(params, LSTMCarry(jax.lax.stop_gradient(carry.h), carry.c), x)


def _get(carry, part):
    return carry if part is None else getattr(carry, part)


def _add(carry, part, e):
    if part is None:
        return jax.tree.map(jnp.add, carry, e)
    return carry._replace(**{part: getattr(carry, part) + e})


def _zeros_per_step(T, carry, part):
    return jax.tree.map(lambda a: jnp.zeros((T, *a.shape), a.dtype), _get(carry, part))


def _perturbed_unroll(step, params, carry, xs, eps, part, method):
    """Unroll with ``eps[t]`` added to (field ``part`` of) the carry entering step ``t``, i.e. to ``h_t``.

    At ``eps = 0`` the values are the plain unroll's, and ``d(anything)/d eps[t] = d(anything)/dh_t``.
    """

    def perturbed_step(p, c, x_and_e):
        x, e = x_and_e
        return step(p, _add(c, part, e), x)

    return unroll(perturbed_step, params, carry, (xs, eps), method=method)


def final_state_jacobians(
    step: Step, params: Params, carry: Carry, xs: PyTree, *, part: str | None = None, method: Method = "scan"
) -> Array:
    """``dh_T/dh_t`` for t = 0..T-1 of one sequence, by ``jax.jacrev`` through the unrolled scan.

    Args:
      step: e.g. ``rnn_step``, ``linear_rnn_step``, ``lstm_step``, ``lstm_cell_path_step``.
      carry: ``h_0 (H,)`` or ``LSTMCarry``; part: ``None`` for an array carry, or the field (``"h"``, ``"c"``)
        of a NamedTuple carry to perturb and to differentiate (that field must be an array).
      xs: ``(T, D)`` floats or ``(T,)`` ids.
    Returns: ``J (T, H, H)`` with ``J[t] = d part(carry_T) / d part(carry_t)`` (lag ``T - t``).
    """
    eps = _zeros_per_step(jax.tree.leaves(xs)[0].shape[0], carry, part)
    final = lambda e: _get(_perturbed_unroll(step, params, carry, xs, e, part, method)[0], part)
    return jnp.moveaxis(jax.jacrev(final)(eps), -2, 0)  # (H, T, H) -> (T, H, H)


def state_gradients(
    step: Step,
    params: Params,
    carry: Carry,
    xs: PyTree,
    loss_of_outputs: Callable[[Any, Carry], Array],
    *,
    part: str | None = None,
    method: Method = "scan",
) -> PyTree:
    """``dL/dh_t`` for t = 0..T-1 (one ``jax.vjp``), where ``L = loss_of_outputs(hs, carry_T)``.

    Works on a batch: carry ``(B, H)``, xs ``(T, B, ...)`` give ``(T, B, H)``; each sample's loss only
    depends on its own states, so row ``[t, b]`` is that sample's ``dL/dh_t``. With ``part=None`` and an
    ``LSTMCarry`` the result is an ``LSTMCarry`` of ``(T, B, H)`` gradients (``dL/dh_t``, ``dL/dc_t``).
    """
    eps = _zeros_per_step(jax.tree.leaves(xs)[0].shape[0], carry, part)

    def loss(e):
        carry_T, hs = _perturbed_unroll(step, params, carry, xs, e, part, method)
        return loss_of_outputs(hs, carry_T)

    value, vjp = jax.vjp(loss, eps)
    return vjp(jnp.ones_like(value))[0]


def by_lag(per_time: Array) -> Array:
    """Reorder ``(..., T)`` values indexed by ``t = 0..T-1`` into lags ``1..T`` (``T - t``), lag on the last axis."""
    return jnp.flip(per_time, axis=-1)


def lag_norms(
    step: Step, params: Params, carry: Carry, xs: PyTree, *, part: str | None = None, method: Method = "scan"
) -> Array:
    """Spectral norms ``||dh_T/dh_{T-k}||_2`` for a batch: carry ``(B, H)``, xs ``(T, B, ...)`` -> ``(B, T)``.

    Column ``k - 1`` is lag ``k`` (1..T). The 2-norm is the largest singular value, the quantity bounded by
    ``s^k`` in the lecture's argument.
    """
    jac = lambda c, x: final_state_jacobians(step, params, c, x, part=part, method=method)
    J = jax.vmap(jac, in_axes=(0, 1))(carry, xs)  # (B, T, H, H)
    return by_lag(jnp.linalg.norm(J, ord=2, axis=(-2, -1)))


def forget_gates(params: LSTMParams, carry: LSTMCarry, xs: Array) -> Array:
    """The forget gates ``f_t = sigmoid(W_f x_t + U_f h_{t-1} + b_f)`` for t = 1..T: ``(T, ..., H)``.

    Written from the gate equation (not from a derivative), so it is an independent check of
    ``lstm_cell_path_step``'s Jacobian.
    """
    _, hs = unroll(lstm_step, params, carry, xs)
    h_prev = jnp.concatenate([carry.h[None], hs[:-1]], axis=0)
    H = params.Whh.shape[1]
    rows = slice(LSTM_GATE_ORDER.index("f") * H, (LSTM_GATE_ORDER.index("f") + 1) * H)
    z_f = input_projection(params.Wxh[rows], xs) + h_prev @ params.Whh[rows].T + params.bh[rows]
    return jax.nn.sigmoid(z_f)


def forget_gate_products(f: Array) -> Array:
    """``P[t] = prod(f[t:])``, the product of ``f_{t+1}`` to ``f_T``, for t = 0..T-1 from ``f (T, ..., H)``.

    ``f[t]`` is ``f_{t+1}``.

    This is the diagonal of the cell-path Jacobian ``dc_T/dc_t``; multiplied from ``f_T`` backwards, the order
    in which backpropagation multiplies.
    """
    return jnp.flip(jnp.cumprod(jnp.flip(f, axis=0), axis=0), axis=0)


def log_norm_slope(lags: ArrayLike, norms: Array) -> Array:
    """Least-squares slope of ``ln(norms)`` against ``lags`` (``ln s`` for the linear RNN with ``Whh = s Q``)."""
    lags = jnp.asarray(lags, jnp.result_type(norms))
    y = jnp.log(norms)
    lc = lags - lags.mean()
    return jnp.sum(lc * (y - y.mean())) / jnp.sum(lc * lc)
