"""jax.grad of the JAX loss against the float64 NumPy manual BPTT, and the reference against finite differences."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxrnn
from jaxrnn import reference

V, H, T = 13, 20, 25


def _problem(kind, seed):
    """Random weights with std 0.5 (tanh/sigmoid saturate somewhat), random ids, a non-zero initial state."""
    rng = np.random.default_rng(seed)
    rows = H if kind == "rnn" else 4 * H
    params = [
        rng.normal(0, 0.5, (rows, V)),
        rng.normal(0, 0.5, (rows, H)),
        rng.normal(0, 0.5, (V, H)),
        rng.normal(0, 0.5, rows),
        rng.normal(0, 0.5, V),
    ]
    inputs, targets = rng.integers(V, size=T), rng.integers(V, size=T)
    h0, c0 = rng.normal(0, 0.5, H), rng.normal(0, 0.5, H)
    return params, inputs, targets, h0, c0


def _manual(kind, params, inputs, targets, h0, c0):
    if kind == "rnn":
        loss, *grads, h = reference.rnn_loss_fun(inputs, targets, h0, params)
        return loss, grads, (h,)
    loss, *grads, h, c = reference.lstm_loss_fun(inputs, targets, h0, c0, params)
    return loss, grads, (h, c)


@pytest.mark.parametrize("kind", ["rnn", "lstm"])
@pytest.mark.parametrize("seed", [0, 1])
def test_jax_grad_equals_manual_bptt_float64(x64, kind, seed):
    params, inputs, targets, h0, c0 = _problem(kind, seed)
    loss_ref, grads_ref, state_ref = _manual(kind, params, inputs, targets, h0, c0)
    Params = jaxrnn.RNNParams if kind == "rnn" else jaxrnn.LSTMParams
    p = Params(*map(jnp.asarray, params))
    carry = jnp.asarray(h0) if kind == "rnn" else jaxrnn.LSTMCarry(jnp.asarray(h0), jnp.asarray(c0))
    (loss, carry_T), grads = jax.value_and_grad(jaxrnn.sequence_loss, has_aux=True)(
        p, carry, jnp.asarray(inputs), jnp.asarray(targets)
    )
    assert grads.Wxh.dtype == jnp.float64
    # the weights are large enough to saturate: some tanh argument beyond 1.5 (tanh' < 0.19) along the way
    keep_carry = lambda step: lambda p, c, x: (step(p, c, x)[0],) * 2
    _, states = jaxrnn.unroll(keep_carry(jaxrnn.step_for(p)), p, carry, jnp.asarray(inputs))
    tanh_in = np.arctanh(np.asarray(states)) if kind == "rnn" else np.asarray(states.c)
    assert np.abs(tanh_in).max() > 1.5
    assert reference.relative_error(loss, loss_ref) <= 1e-13
    for name, g, g_ref in zip(reference.PARAM_NAMES, grads, grads_ref):
        assert np.abs(g_ref).max() > 1e-3, name  # every gradient is non-trivial
        err = reference.relative_error(g, g_ref).max()
        assert err <= 1e-10, f"{kind} d{name}: relative error {err:.2e}"
    for s, s_ref in zip(jax.tree.leaves(carry_T), state_ref):
        np.testing.assert_allclose(s, s_ref, rtol=1e-13, atol=1e-14)


@pytest.mark.parametrize("kind", ["rnn", "lstm"])
def test_manual_gradients_equal_central_differences(kind):
    params, inputs, targets, h0, c0 = _problem(kind, seed=2)
    _, grads, _ = _manual(kind, params, inputs, targets, h0, c0)
    loss = lambda ps: _manual(kind, ps, inputs, targets, h0, c0)[0]
    # five-point central differences: the losses are sums over 25 steps, so round-off limits a plain 2-point
    # difference at small d while curvature limits it at large d
    errors = reference.gradient_check(loss, params, grads, num_checks=20, delta=1e-4, order=4, seed=0)
    for name, errs in zip(reference.PARAM_NAMES, errors):
        assert errs.max() <= 1e-6, f"{kind} d{name}: finite-difference relative error {errs.max():.2e}"


def test_gradient_check_catches_a_wrong_gradient():
    """The checker is not vacuous: a gradient off by 1% in one entry is flagged."""
    params, inputs, targets, h0, _ = _problem("rnn", seed=3)
    _, grads, _ = _manual("rnn", params, inputs, targets, h0, None)
    grads[1] = grads[1] * 1.01
    loss = lambda ps: reference.rnn_loss_fun(inputs, targets, h0, ps)[0]
    errors = reference.gradient_check(loss, params, grads, num_checks=5, seed=0)
    assert errors[1].max() > 1e-3 and errors[0].max() <= 1e-6
