"""Converters: round trips to and from Flax's and PyTorch's layouts, and PyTorch's documented equations,
written here in NumPy against its state-dict layout, agreeing with jaxrnn's steps after conversion; PyTorch state
dicts with a module prefix, of several layers (a ``StackParams``) and of both directions, against torch itself."""

import importlib.util

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxrnn
from jaxrnn import cells
from jaxrnn.convert import from_flax, from_torch, stack_from_torch, to_flax, to_torch

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


def _torch_layers(kind, layers, seed=0, direction=""):
    """A NumPy state dict of ``layers`` torch layers (random weights), as ``to_torch`` spells them."""
    rng = np.random.default_rng(seed)
    rows = {"rnn": H, "lstm": 4 * H, "gru": 3 * H}[kind]
    sd = {}
    for layer in range(layers):
        D_l = D if layer == 0 else H
        for name, shape in (("weight_ih", (rows, D_l)), ("weight_hh", (rows, H)), ("bias_ih", rows), ("bias_hh", rows)):
            sd[f"{name}_l{layer}{direction}"] = rng.normal(size=shape)
    return sd


def test_a_module_prefix_is_found_or_named():
    """The state dict of a model holding its ``nn.LSTM`` as ``self.lstm`` converts as the LSTM's own does."""
    sd = _torch_layers("lstm", 1)
    plain = from_torch(sd)
    model = {f"lstm.{k}": v for k, v in sd.items()} | {"out.weight": np.zeros((V, H)), "out.bias": np.zeros(V)}
    for q in (from_torch(model), from_torch(model, prefix="lstm"), from_torch(model, prefix="lstm.")):
        for a, b in zip(plain, q):
            np.testing.assert_array_equal(a, b)
    two = model | {f"decoder.{k}": v for k, v in sd.items()}
    with pytest.raises(ValueError, match=r"2 recurrent modules \(key prefixes \['decoder.', 'lstm.'\]\); pass prefix="):
        from_torch(two)
    np.testing.assert_array_equal(from_torch(two, prefix="decoder").Wxh, plain.Wxh)
    with pytest.raises(KeyError, match="no gru.weight_ih_l0"):
        from_torch(model, prefix="gru")
    with pytest.raises(TypeError, match="state_dict must be a mapping"):
        from_torch([("weight_ih_l0", sd["weight_ih_l0"])])


def test_stack_from_torch_takes_every_layer_in_order():
    sd = {f"rnn.{k}": v for k, v in _torch_layers("gru", 3).items()}
    Why, by, table = np.ones((V, H)), np.arange(V, dtype=float), np.arange(6 * D, dtype=float).reshape(6, D)
    stack = stack_from_torch(sd, Why=Why, by=by, embedding=table)
    assert isinstance(stack, jaxrnn.StackParams) and len(stack.layers) == 3
    for layer, params in enumerate(stack.layers):
        expected = from_torch(sd, layer=layer)
        assert params.Why is None and params.by is None
        for name in ("Wxh", "Whh", "bh", "bhn"):
            np.testing.assert_array_equal(getattr(params, name), getattr(expected, name))
    np.testing.assert_array_equal(stack.Why, Why)
    np.testing.assert_array_equal(stack.embedding, table.T)  # nn.Embedding's (V_in, E) is jaxrnn's (E, V_in)
    bare = stack_from_torch(sd)
    assert bare.Why is None and bare.by is None and bare.embedding is None
    with pytest.raises(ValueError, match=r"numbered \[0, 2\]; expected 0 to 1"):
        stack_from_torch({k: v for k, v in sd.items() if "_l1" not in k})
    with pytest.raises(ValueError, match=rf"embedding has shape \(6, {D + 1}\)"):
        stack_from_torch(sd, embedding=np.zeros((6, D + 1)))
    with pytest.raises(ValueError, match="do not fit hidden size"):
        stack_from_torch(sd, Why=np.zeros((V, H + 1)))


def test_bidirectional_and_projected_state_dicts_are_refused_or_told_apart():
    sd = _torch_layers("lstm", 2) | _torch_layers("lstm", 2, seed=1, direction="_reverse")
    with pytest.raises(ValueError, match="bidirectional; pass direction='forward' or 'reverse'") as e:
        from_torch(sd)
    assert "\n" not in str(e.value)
    with pytest.raises(ValueError, match="bidirectional module's upper layers read both directions"):
        stack_from_torch(sd)
    reverse = from_torch(sd, layer=1, direction="reverse")
    np.testing.assert_array_equal(reverse.Whh, from_torch(_torch_layers("lstm", 2, seed=1), layer=1).Whh)
    np.testing.assert_array_equal(from_torch(sd, direction="forward").Whh, from_torch(_torch_layers("lstm", 1)).Whh)
    with pytest.raises(ValueError, match="direction='reverse' is for a bidirectional module"):
        from_torch(_torch_layers("lstm", 1), direction="reverse")
    projected = _torch_layers("lstm", 1) | {"weight_hr_l0": np.zeros((2, H))}
    with pytest.raises(ValueError, match="proj_size"):
        from_torch(projected)


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


needs_torch = pytest.mark.skipif(importlib.util.find_spec("torch") is None, reason="torch is not installed")


@needs_torch
@pytest.mark.parametrize("kind", ["rnn", "lstm", "gru"])
def test_a_two_layer_torch_model_runs_as_a_jaxrnn_stack(kind):
    """A model of ``nn.Embedding``, a two-layer ``nn.RNN``/``LSTM``/``GRU`` held as ``self.rnn`` and ``nn.Linear``:
    ``stack_from_torch`` of its state dict, unrolled by jaxrnn, gives torch's scores, outputs and final states
    (float32, 1e-5)."""
    import torch

    torch.manual_seed(0)
    V_in, E, T, num_layers = 11, D, 6, 2

    class Model(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = torch.nn.Embedding(V_in, E)
            self.rnn = {"rnn": torch.nn.RNN, "lstm": torch.nn.LSTM, "gru": torch.nn.GRU}[kind](E, H, num_layers)
            self.out = torch.nn.Linear(H, V)

        def forward(self, ids):
            hs, state = self.rnn(self.embed(ids))
            return self.out(hs), hs, state

    model = Model()
    ids = np.random.default_rng(0).integers(0, V_in, size=(T, B))
    with torch.no_grad():
        scores_torch, hs_torch, state_torch = model(torch.from_numpy(ids))
    sd = model.state_dict()
    stack = stack_from_torch(sd, Why=sd["out.weight"], by=sd["out.bias"], embedding=sd["embed.weight"])
    assert [type(layer).__name__ for layer in stack.layers] == [type(from_torch(sd)).__name__] * num_layers
    carry, hs = jaxrnn.unroll(jaxrnn.step_for(stack), stack, jaxrnn.initial_carry(stack, (B,)), jnp.asarray(ids))
    assert hs.dtype == jnp.float32
    np.testing.assert_allclose(hs, hs_torch.numpy(), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(cells.readout(stack, hs), scores_torch.numpy(), rtol=1e-5, atol=1e-5)
    h_n = state_torch[0] if kind == "lstm" else state_torch  # torch's final states: (layers, B, H)
    for layer in range(num_layers):
        np.testing.assert_allclose(jax.tree.leaves(carry[layer])[0], h_n[layer].numpy(), rtol=1e-5, atol=1e-5)
        if kind == "lstm":
            np.testing.assert_allclose(carry[layer].c, state_torch[1][layer].numpy(), rtol=1e-5, atol=1e-5)
    assert float(np.abs(hs_torch.numpy()).max()) > 0.1


@needs_torch
def test_a_bidirectional_torch_lstm_is_jaxrnn_s_bidirectional_unroll():
    """One bidirectional ``nn.LSTM`` layer: its two directions, each converted with ``direction=``, run by
    ``jaxrnn.unroll_bidirectional``, give torch's outputs (float32, 1e-5)."""
    import torch

    torch.manual_seed(1)
    module = torch.nn.LSTM(D, H, bidirectional=True)
    xs = np.random.default_rng(1).normal(size=(7, B, D)).astype(np.float32)
    with torch.no_grad():
        ys_torch = module(torch.from_numpy(xs))[0].numpy()
    sd = module.state_dict()
    pair = (from_torch(sd, direction="forward"), from_torch(sd, direction="reverse"))
    carry = tuple(jaxrnn.initial_carry(p, (B,)) for p in pair)
    _, hs = jaxrnn.unroll_bidirectional(cells.lstm_step, pair, carry, jnp.asarray(xs))
    np.testing.assert_allclose(hs, ys_torch, rtol=1e-5, atol=1e-5)
