"""The GRU step: jax.grad against the float64 NumPy manual BPTT, the reference against finite differences."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxrnn
from jaxrnn import cells, reference

V, H, T = 11, 16, 20


def _problem(seed):
    """Random weights with std 0.5 (gates saturate somewhat), random ids, a non-zero initial state."""
    rng = np.random.default_rng(seed)
    params = [
        rng.normal(0, 0.5, (3 * H, V)),
        rng.normal(0, 0.5, (3 * H, H)),
        rng.normal(0, 0.5, (V, H)),
        rng.normal(0, 0.5, 3 * H),
        rng.normal(0, 0.5, V),
        rng.normal(0, 0.5, H),
    ]
    return params, rng.integers(V, size=T), rng.integers(V, size=T), rng.normal(0, 0.5, H)


@pytest.mark.parametrize("seed", [0, 1])
def test_gru_jax_grad_equals_manual_bptt_float64(x64, seed):
    params, inputs, targets, h0 = _problem(seed)
    loss_ref, *grads_ref, h_ref = reference.gru_loss_fun(inputs, targets, h0, params)
    p = cells.GRUParams(*map(jnp.asarray, params))
    (loss, h_T), grads = jax.value_and_grad(jaxrnn.sequence_loss, has_aux=True)(
        p, jnp.asarray(h0), jnp.asarray(inputs), jnp.asarray(targets)
    )
    assert grads.Wxh.dtype == jnp.float64
    assert reference.relative_error(loss, loss_ref) <= 1e-13
    for name in reference.GRU_PARAM_NAMES:
        g, g_ref = getattr(grads, name), grads_ref[reference.GRU_PARAM_NAMES.index(name)]
        assert np.abs(g_ref).max() > 1e-3, name  # every gradient is non-trivial
        err = reference.relative_error(g, g_ref).max()
        assert err <= 1e-10, f"GRU d{name}: relative error {err:.2e}"
    np.testing.assert_allclose(h_T, h_ref, rtol=1e-13, atol=1e-14)


def test_gru_manual_gradients_equal_central_differences():
    params, inputs, targets, h0 = _problem(seed=2)
    _, *grads, _ = reference.gru_loss_fun(inputs, targets, h0, params)
    loss = lambda ps: reference.gru_loss_fun(inputs, targets, h0, ps)[0]
    errors = reference.gradient_check(loss, params, grads, num_checks=15, delta=1e-5, seed=0)
    for name, errs in zip(reference.GRU_PARAM_NAMES, errors):
        assert errs.max() <= 1e-6, f"GRU d{name}: finite-difference relative error {errs.max():.2e}"


def test_gru_gate_equations_match_module_docstring(x64):
    """One step written out from the docstring's equations, gate blocks sliced by GRU_GATE_ORDER."""
    params, inputs, _, h0 = _problem(seed=3)
    p = cells.GRUParams(*map(jnp.asarray, params))
    x = jax.nn.one_hot(inputs[0], V, dtype=jnp.float64)
    blk = {name: slice(k * H, (k + 1) * H) for k, name in enumerate(cells.GRU_GATE_ORDER)}
    W, U, b = p.Wxh, p.Whh, p.bh
    r = jax.nn.sigmoid(W[blk["r"]] @ x + U[blk["r"]] @ h0 + b[blk["r"]])
    z = jax.nn.sigmoid(W[blk["z"]] @ x + U[blk["z"]] @ h0 + b[blk["z"]])
    n = jnp.tanh(W[blk["n"]] @ x + b[blk["n"]] + r * (U[blk["n"]] @ h0 + p.bhn))
    h_expected = (1 - z) * n + z * h0
    h_ids, out = cells.gru_step(p, jnp.asarray(h0), jnp.asarray(inputs[0]))
    h_onehot, _ = cells.gru_step(p, jnp.asarray(h0), x)
    np.testing.assert_allclose(h_ids, h_expected, rtol=1e-14, atol=1e-15)
    np.testing.assert_allclose(h_onehot, h_expected, rtol=1e-14, atol=1e-15)
    np.testing.assert_array_equal(out, h_ids)


def test_gru_is_registered_and_has_a_zero_carry():
    p = cells.init_gru(jax.random.key(0), 5, 7, 5)
    assert jaxrnn.step_for(p) is cells.gru_step
    carry = jaxrnn.initial_carry(p, (3,))
    assert carry.shape == (3, 7) and float(jnp.abs(carry).max()) == 0.0
    assert p.Wxh.shape == (21, 5) and p.Whh.shape == (21, 7) and p.bh.shape == (21,) and p.bhn.shape == (7,)
    # default init: each H x H block of Whh is orthogonal
    for k in range(3):
        block = p.Whh[k * 7 : (k + 1) * 7]
        np.testing.assert_allclose(block @ block.T, np.eye(7), atol=1e-5)


def test_gru_step_is_not_retraced():
    p = cells.init_gru(jax.random.key(1), 4, 6, 4)
    step = jax.jit(chex.assert_max_traces(cells.gru_step, n=1))
    h = jnp.zeros((2, 6))
    h, _ = step(p, h, jnp.ones((2, 4)))
    h, _ = step(p, h, jnp.zeros((2, 4)))
    assert h.shape == (2, 6)


def test_gru_step_rejects_wrong_params_and_carry():
    p = cells.init_gru(jax.random.key(2), 4, 6, 4)
    with pytest.raises(TypeError, match="GRUParams"):
        cells.gru_step(cells.init_rnn(jax.random.key(0), 4, 6, 4), jnp.zeros(6), jnp.ones(4))
    with pytest.raises(ValueError, match=r"expected \(\.\.\., 6\)"):
        cells.gru_step(p, jnp.zeros(5), jnp.ones(4))
