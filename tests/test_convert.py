"""Converters: round trips to and from Flax's and PyTorch's layouts, and PyTorch's documented equations,
written here in NumPy against its state-dict layout, agreeing with jaxrnn's steps after conversion."""

import importlib.util

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxrnn
from jaxrnn import cells
from jaxrnn.convert import from_flax, from_torch, to_flax, to_torch

D, H, V, B = 3, 4, 5, 2
INIT = {"rnn": cells.init_rnn, "lstm": cells.init_lstm, "gru": cells.init_gru}


def _params(kind, seed=0):
    p = INIT[kind](jax.random.key(seed), D, H, V)
    return jax.tree.map(lambda a: a + 0.1 * jnp.arange(a.size, dtype=a.dtype).reshape(a.shape) / a.size, p)


def _sigmoid(z):
    return 1 / (1 + np.exp(-z))


def _torch_step(kind, sd, h, c, x):
    """One step of torch.nn.RNN/LSTM/GRU as its documentation writes it, in its layout (x @ W.T, i,f,g,o)."""
    W_ih, W_hh, b_ih, b_hh = (sd[k] for k in ("weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0"))
    gi, gh = x @ W_ih.T + b_ih, h @ W_hh.T + b_hh
    if kind == "rnn":
        h = np.tanh(gi + gh)
        return h, None
    if kind == "lstm":
        i, f, g, o = np.split(gi + gh, 4, axis=-1)
        c = _sigmoid(f) * c + _sigmoid(i) * np.tanh(g)
        return _sigmoid(o) * np.tanh(c), c
    (i_r, i_z, i_n), (h_r, h_z, h_n) = np.split(gi, 3, axis=-1), np.split(gh, 3, axis=-1)
    r, z = _sigmoid(i_r + h_r), _sigmoid(i_z + h_z)
    n = np.tanh(i_n + r * h_n)
    return (1 - z) * n + z * h, None


@pytest.mark.parametrize("kind", ["rnn", "lstm", "gru"])
def test_torch_documented_equations_agree_after_conversion(x64, kind):
    rng = np.random.default_rng(0)
    rows = {"rnn": H, "lstm": 4 * H, "gru": 3 * H}[kind]
    sd = {
        "weight_ih_l0": rng.normal(size=(rows, D)),
        "weight_hh_l0": rng.normal(size=(rows, H)) / 2,
        "bias_ih_l0": rng.normal(size=rows),
        "bias_hh_l0": rng.normal(size=rows),
    }
    Why, by = rng.normal(size=(V, H)), rng.normal(size=V)
    params = from_torch(sd, Why=Why, by=by)
    assert isinstance(params, {"rnn": cells.RNNParams, "lstm": cells.LSTMParams, "gru": cells.GRUParams}[kind])
    h, c = rng.normal(size=(B, H)), rng.normal(size=(B, H))
    x = rng.normal(size=(B, D))
    carry = cells.LSTMCarry(jnp.asarray(h), jnp.asarray(c)) if kind == "lstm" else jnp.asarray(h)
    h_torch, c_torch = h, c
    for _ in range(3):
        carry, _ = jaxrnn.step_for(params)(params, carry, jnp.asarray(x))
        h_torch, c_torch = _torch_step(kind, sd, h_torch, c_torch, x)
    np.testing.assert_allclose(carry.h if kind == "lstm" else carry, h_torch, rtol=1e-13, atol=1e-14)
    if kind == "lstm":
        np.testing.assert_allclose(carry.c, c_torch, rtol=1e-13, atol=1e-14)
    np.testing.assert_array_equal(params.Why, Why)
    # torch -> jaxrnn -> torch: the same weights and bias sums (the only thing torch's equations see) ...
    back = to_torch(params)
    for k in ("weight_ih_l0", "weight_hh_l0"):
        np.testing.assert_array_equal(back[k], sd[k])
    np.testing.assert_allclose(
        back["bias_ih_l0"] + back["bias_hh_l0"], sd["bias_ih_l0"] + sd["bias_hh_l0"], rtol=1e-15, atol=1e-15
    )
    if kind == "gru":  # ... and the GRU's b_hn, which sits inside r * (...), kept on its own
        np.testing.assert_array_equal(back["bias_hh_l0"][2 * H :], sd["bias_hh_l0"][2 * H :])


@pytest.mark.parametrize("kind", ["rnn", "lstm", "gru"])
def test_round_trips_through_flax_and_torch_are_exact(kind):
    p = _params(kind)
    for there_and_back in (
        lambda q: from_flax(to_flax(q), Why=q.Why, by=q.by),
        lambda q: from_torch(to_torch(q, layer=2), layer=2, Why=q.Why, by=q.by),
    ):
        q = there_and_back(p)
        assert type(q) is type(p)
        for a, b in zip(p, q):
            np.testing.assert_array_equal(a, b)
    flax_params = to_flax(p)
    again = to_flax(from_flax(flax_params))
    assert jax.tree.structure(again) == jax.tree.structure(flax_params)
    for a, b in zip(jax.tree.leaves(again), jax.tree.leaves(flax_params)):
        np.testing.assert_array_equal(a, b)


def test_lstm_layouts_name_the_gates():
    """Spelled out once: our row block k of Wxh is gate LSTM_GATE_ORDER[k]; Flax's kernel is its transpose
    under the gate's name; torch stacks the blocks i, f, g, o."""
    p = _params("lstm")
    blocks = dict(zip(cells.LSTM_GATE_ORDER, np.split(np.asarray(p.Wxh), 4)))
    fl, th = to_flax(p), to_torch(p)
    for k, gate in enumerate("ifgo"):
        np.testing.assert_array_equal(fl[f"i{gate}"]["kernel"], blocks[gate].T)
        np.testing.assert_array_equal(th["weight_ih_l0"][k * H : (k + 1) * H], blocks[gate])
    np.testing.assert_array_equal(fl["hf"]["bias"], np.asarray(p.bh)[H : 2 * H])


def test_bad_inputs_fail_with_one_clear_line():
    with pytest.raises(ValueError, match="not the parameters of a Flax"):
        from_flax({"kernel": np.zeros((2, 2))})
    with pytest.raises(KeyError, match="weight_ih_l1"):
        from_torch(to_torch(_params("rnn")), layer=1)
    with pytest.raises(ValueError, match="rows H, 3H or 4H"):
        from_torch({"weight_ih_l0": np.zeros((2 * H, D)), "weight_hh_l0": np.zeros((2 * H, H))})
    with pytest.raises(ValueError, match="do not fit hidden size"):
        from_flax(to_flax(_params("gru")), Why=np.zeros((V, H + 1)))
    with pytest.raises(TypeError, match="GRUParams"):
        to_flax((1, 2, 3))
    with pytest.raises(ValueError, match="by .* given without Why"):
        from_torch(to_torch(_params("rnn")), by=np.zeros(V))


def test_without_a_readout_the_cell_has_none():
    """No ``Why``/``by`` given: ``Why = by = None`` (no readout, as a stack layer), and reading out refuses."""
    for q in (from_torch(to_torch(_params("lstm"))), from_flax(to_flax(_params("gru")))):
        assert q.Why is None and q.by is None
        with pytest.raises(ValueError, match="no readout"):
            cells.readout(q, jnp.zeros(H))
    with_Why = from_torch(to_torch(_params("rnn")), Why=np.ones((V, H)))
    np.testing.assert_array_equal(with_Why.by, np.zeros(V))  # by defaults to zero when Why is given


@pytest.mark.skipif(importlib.util.find_spec("torch") is None, reason="torch is not installed")
@pytest.mark.parametrize("kind", ["rnn", "lstm", "gru"])
def test_against_torch_itself(kind):
    import torch

    torch.manual_seed(0)
    module = {"rnn": torch.nn.RNN, "lstm": torch.nn.LSTM, "gru": torch.nn.GRU}[kind](D, H).double()
    xs = np.random.default_rng(0).normal(size=(5, B, D))
    ys_torch = module(torch.from_numpy(xs))[0].detach().numpy()
    with jax.enable_x64(True):
        params = from_torch(module.state_dict())
        assert params.Wxh.dtype == jnp.float64
        _, hs = jaxrnn.unroll(jaxrnn.step_for(params), params, jaxrnn.initial_carry(params, (B,)), jnp.asarray(xs))
        np.testing.assert_allclose(hs, ys_torch, rtol=1e-10, atol=1e-12)
