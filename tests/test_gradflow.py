"""jaxrnn.gradflow: the lecture's gradient-flow claims as exact numbers (float64)."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxrnn
from jaxrnn import gradflow

H, T, B, D = 6, 15, 3, 2


def _rnn(s, seed=0):
    key = jax.random.PRNGKey(seed)
    p = jaxrnn.init_rnn(key, D, H, 1, dtype=jnp.float64)
    p = p._replace(Whh=gradflow.scaled_orthogonal(jax.random.fold_in(key, 1), H, s, jnp.float64))
    xs = jax.random.normal(jax.random.fold_in(key, 2), (T, B, D), jnp.float64)
    return p, jnp.zeros((B, H), jnp.float64), xs


def test_scaled_orthogonal_has_all_singular_values_equal_to_s(x64):
    W = gradflow.scaled_orthogonal(jax.random.PRNGKey(3), H, 1.3, jnp.float64)
    np.testing.assert_allclose(np.linalg.svd(np.asarray(W), compute_uv=False), 1.3, rtol=1e-12)


@pytest.mark.parametrize("s", [0.5, 0.9, 1.0, 1.1, 1.5])
def test_linear_rnn_log_norm_slope_is_ln_s(x64, s):
    p, h0, xs = _rnn(s)
    norms = gradflow.lag_norms(gradflow.linear_rnn_step, p, h0, xs)
    lags = np.arange(1, T + 1)
    for n in np.asarray(norms):
        assert abs(float(gradflow.log_norm_slope(lags, n)) - math.log(s)) < 1e-6
        np.testing.assert_allclose(n, s**lags, rtol=1e-9)  # not just the slope: the norm is s^(T-t)


@pytest.mark.parametrize("s", [0.5, 0.9])
def test_tanh_rnn_norm_is_below_s_to_the_lag_on_every_sample(x64, s):
    p, h0, xs = _rnn(s)
    norms = np.asarray(gradflow.lag_norms(jaxrnn.rnn_step, p, h0, xs))
    assert norms.shape == (B, T)
    assert np.all(norms <= s ** np.arange(1, T + 1) * (1 + 1e-12))
    assert np.all(norms < s ** np.arange(1, T + 1))  # tanh' < 1 away from 0: strictly below


def test_jacobian_equals_the_product_of_step_jacobians(x64):
    """Independent formula: dh_T/dh_t = prod_{u=t+1..T} diag(1 - h_u^2) Whh, multiplied out in NumPy."""
    p, h0, xs = _rnn(1.2)
    J = np.asarray(gradflow.final_state_jacobians(jaxrnn.rnn_step, p, h0[0], xs[:, 0]))
    _, hs = jaxrnn.unroll(jaxrnn.rnn_step, p, h0[0], xs[:, 0])
    hs, Whh = np.asarray(hs), np.asarray(p.Whh)
    for t in range(T):
        M = np.eye(H)
        for u in range(t, T):  # hs[u] is h_{u+1}
            M = np.diag(1 - hs[u] ** 2) @ Whh @ M
        np.testing.assert_allclose(J[t], M, rtol=1e-10, atol=1e-14)


def test_state_gradients_at_time_zero_equal_grad_of_initial_state(x64):
    p, h0, xs = _rnn(1.0)
    h0 = h0 + 0.1
    loss = lambda hs, hT: jnp.sum(jnp.sin(hs)) + jnp.sum(hT**2)
    g = gradflow.state_gradients(jaxrnn.rnn_step, p, h0, xs, loss)
    direct = jax.grad(lambda h: loss(*reversed(jaxrnn.unroll(jaxrnn.rnn_step, p, h, xs))))(h0)
    assert g.shape == (T, B, H)
    np.testing.assert_allclose(g[0], direct, rtol=1e-12)


def _lstm(forget_bias, zero_recurrence=False):
    key = jax.random.PRNGKey(4)
    p = jaxrnn.init_lstm(key, D, H, 1, forget_bias=forget_bias, dtype=jnp.float64)
    if zero_recurrence:
        p = p._replace(Whh=jnp.zeros_like(p.Whh))
    carry = jaxrnn.LSTMCarry(0.3 * jnp.ones((B, H)), -0.2 * jnp.ones((B, H)))
    xs = jax.random.normal(jax.random.fold_in(key, 1), (T, B, D), jnp.float64)
    return p, carry, xs


@pytest.mark.parametrize("forget_bias", [0.0, 1.0, 4.0])
def test_cell_path_jacobian_is_the_product_of_forget_gates(x64, forget_bias):
    p, carry, xs = _lstm(forget_bias)
    P = np.asarray(gradflow.forget_gate_products(gradflow.forget_gates(p, carry, xs)))  # (T, B, H)
    jac = jax.jit(
        jax.vmap(
            lambda c, x: gradflow.final_state_jacobians(gradflow.lstm_cell_path_step, p, c, x, part="c"), in_axes=(0, 1)
        )
    )
    J = np.asarray(jac(carry, xs))  # (B, T, H, H)
    np.testing.assert_allclose(np.diagonal(J, axis1=2, axis2=3), P.swapaxes(0, 1), rtol=1e-14, atol=0)
    assert np.all(J * (1 - np.eye(H)) == 0)


def test_cell_path_step_has_the_values_of_lstm_step(x64):
    p, carry, xs = _lstm(1.0)
    a = jaxrnn.unroll(jaxrnn.lstm_step, p, carry, xs)
    b = jaxrnn.unroll(gradflow.lstm_cell_path_step, p, carry, xs)
    jax.tree.map(lambda u, v: np.testing.assert_array_equal(u, v), a, b)


def test_without_recurrence_the_full_cell_jacobian_is_the_forget_product(x64):
    """With Whh = 0 the gates ignore h, so all of dc_T/dc_t is the cell path."""
    p, carry, xs = _lstm(1.0, zero_recurrence=True)
    P = np.asarray(gradflow.forget_gate_products(gradflow.forget_gates(p, carry, xs)))
    J = gradflow.final_state_jacobians(jaxrnn.lstm_step, p, jax.tree.map(lambda a: a[0], carry), xs[:, 0], part="c")
    np.testing.assert_allclose(np.diagonal(np.asarray(J), axis1=1, axis2=2), P[:, 0], rtol=1e-14, atol=0)


def test_forget_one_input_zero_keeps_the_cell_for_any_number_of_steps(x64):
    p, carry, _ = _lstm(0.0)
    f, i = (slice(jaxrnn.LSTM_GATE_ORDER.index(g) * H, (jaxrnn.LSTM_GATE_ORDER.index(g) + 1) * H) for g in "fi")
    p = p._replace(bh=p.bh.at[f].set(60.0).at[i].set(-60.0))
    xs = jax.random.normal(jax.random.PRNGKey(9), (500, B, D), jnp.float64)
    end, _ = jaxrnn.unroll(jaxrnn.lstm_step, p, carry, xs)
    np.testing.assert_array_equal(end.c, carry.c)


def test_log_norm_slope_of_an_exact_exponential():
    lags = np.arange(1, 20)
    assert abs(float(gradflow.log_norm_slope(lags, jnp.exp(-0.25 * jnp.asarray(lags, jnp.float32)))) + 0.25) < 1e-5
