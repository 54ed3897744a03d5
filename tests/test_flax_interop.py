"""Flax parity: Flax's own cells and jaxrnn's steps with converted weights give the same outputs and gradients;
jaxrnn's cells wrapped as linen and nnx modules give the same numbers again, inside Flax's own ``RNN`` and
``Bidirectional`` (linen and nnx), and nnx cells' parameters convert both ways."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import linen as nn
from flax import nnx

import jaxrnn
from jaxrnn.convert import from_flax, to_flax, to_nnx
from jaxrnn.flax_modules import LinenCell, NnxCell, linen_variables

D, H, T, B = 4, 5, 6, 3
FLAX_CELLS = [("rnn", nn.SimpleCell), ("lstm", nn.LSTMCell), ("lstm", nn.OptimizedLSTMCell), ("gru", nn.GRUCell)]


def _setup(kind, FlaxCell, seed=0):
    k_x, k_p, k_h, k_w = jax.random.split(jax.random.key(seed), 4)
    f64 = jnp.float64
    cell = FlaxCell(H, param_dtype=f64)
    xs = jax.random.normal(k_x, (B, T, D), f64)  # Flax's nn.RNN is batch-major
    fparams = cell.init(k_p, cell.initialize_carry(k_p, (B, D)), xs[:, 0])["params"]
    # Flax starts its biases at zero; shift every leaf so that bias placement is tested too
    fparams = jax.tree.map(lambda a: a + 0.3 * jax.random.normal(k_h, a.shape, f64), fparams)
    h0, c0 = (0.5 * jax.random.normal(k, (B, H), f64) for k in jax.random.split(k_h))
    w = jax.random.normal(k_w, (B, T, H), f64)  # a fixed random direction to differentiate along
    return cell, xs, fparams, h0, c0, w


@pytest.mark.parametrize("kind, FlaxCell", FLAX_CELLS, ids=[c.__name__ for _, c in FLAX_CELLS])
def test_flax_cell_and_jaxrnn_step_agree_in_values_and_gradients(x64, kind, FlaxCell):
    cell, xs, fparams, h0, c0, w = _setup(kind, FlaxCell)
    flax_carry = (c0, h0) if kind == "lstm" else h0  # Flax's LSTM carry is (c, h)
    our_carry = jaxrnn.LSTMCarry(h0, c0) if kind == "lstm" else h0

    def flax_loss(fp):
        carry_T, ys = nn.RNN(cell).apply({"params": {"cell": fp}}, xs, initial_carry=flax_carry, return_carry=True)
        h_T = carry_T[1] if kind == "lstm" else carry_T
        return jnp.sum(ys * w) + jnp.sum(h_T**2), ys

    def our_loss(p):
        carry_T, hs = jaxrnn.unroll(jaxrnn.step_for(p), p, our_carry, jnp.swapaxes(xs, 0, 1))
        ys = jnp.swapaxes(hs, 0, 1)
        h_T = carry_T.h if kind == "lstm" else carry_T
        return jnp.sum(ys * w) + jnp.sum(h_T**2), ys

    params = from_flax(fparams)
    assert type(params).__name__ == {"rnn": "RNNParams", "lstm": "LSTMParams", "gru": "GRUParams"}[kind]
    (lf, ys_f), gf = jax.jit(jax.value_and_grad(flax_loss, has_aux=True))(fparams)
    (lo, ys_o), go = jax.jit(jax.value_and_grad(our_loss, has_aux=True))(params)
    np.testing.assert_allclose(ys_o, ys_f, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(lo, lf, rtol=1e-12)
    go_flax = to_flax(go)  # our gradient in Flax's layout
    assert jax.tree.structure(go_flax) == jax.tree.structure(jax.tree.map(np.asarray, gf))
    for a, b in zip(jax.tree.leaves(go_flax), jax.tree.leaves(gf)):
        np.testing.assert_allclose(a, b, rtol=1e-11, atol=1e-13)
    assert max(float(jnp.abs(g).max()) for g in jax.tree.leaves(gf)) > 1e-2

    # jaxrnn's cell as a linen module under Flax's own nn.RNN, with the same weights
    ys_linen = nn.RNN(LinenCell(H, cell=kind, param_dtype=jnp.float64)).apply(
        {"params": {"cell": linen_variables(params)["params"]}}, xs, initial_carry=our_carry
    )
    np.testing.assert_allclose(ys_linen, ys_f, rtol=1e-12, atol=1e-14)
    # ... and as an nnx module, stepped by hand
    module, carry, ys_nnx = NnxCell.from_params(params), our_carry, []
    for t in range(T):
        carry, y = module(carry, xs[:, t])
        ys_nnx.append(y)
    np.testing.assert_allclose(jnp.stack(ys_nnx, axis=1), ys_f, rtol=1e-12, atol=1e-14)


def test_linen_cell_initialises_like_jaxrnn():
    """Smoke-plus: shapes and jaxrnn's initialiser (orthogonal Whh blocks, forget bias 1) inside Flax."""
    module = nn.RNN(LinenCell(H, cell="lstm"))
    xs = jnp.ones((B, T, D))
    variables = module.init(jax.random.key(0), xs)
    p = variables["params"]["cell"]
    assert p["Wxh"].shape == (4 * H, D) and p["Whh"].shape == (4 * H, H) and p["bh"].shape == (4 * H,)
    np.testing.assert_array_equal(p["bh"], np.repeat([0.0, 1.0, 0.0, 0.0], H))  # i, f, o, g
    block = p["Whh"][:H]
    np.testing.assert_allclose(block @ block.T, np.eye(H), atol=1e-5)
    assert module.apply(variables, xs).shape == (B, T, H)


def test_unknown_cell_is_one_clear_error():
    with pytest.raises(ValueError, match="unknown cell 'gruu'"):
        nn.RNN(LinenCell(H, cell="gruu")).init(jax.random.key(0), jnp.ones((B, T, D)))


@pytest.mark.parametrize("kind", ["rnn", "lstm", "gru"])
def test_linen_cell_init_is_flax_init_and_draws_jaxrnn_weights(kind):
    """``LinenCell(...).init(key, carry, x)`` is Flax's ``Module.init`` (the initialiser scheme is the field
    ``init_scheme``); the weights have jaxrnn's shapes and the scheme's scale, and the cell runs jaxrnn's step."""
    cell = LinenCell(H, cell=kind, init_scheme="lecture")
    x = jnp.ones((B, D))
    variables = cell.init(jax.random.key(0), cell.initialize_carry(None, (B, D)), x)
    params = variables["params"]
    assert params["Whh"].shape == ({"rnn": 1, "lstm": 4, "gru": 3}[kind] * H, H)
    assert 0.002 < float(jnp.std(params["Whh"])) < 0.02  # "lecture": randn * 0.01
    carry, h = cell.apply(variables, cell.initialize_carry(None, (B, D)), x)
    step = jaxrnn.step_for(
        NnxCell.from_params(jaxrnn.cell_type(kind).params_type(Why=None, by=None, **params)).cell_params()
    )
    assert step is jaxrnn.cell_type(kind).step
    np.testing.assert_allclose(h, jax.tree.leaves(carry)[0], rtol=0, atol=0)


# --- nnx: NnxCell inside nnx.RNN and nnx.Bidirectional, and nnx cells' parameters -------------------------------

NNX_CELLS = [("rnn", nnx.SimpleCell), ("lstm", nnx.LSTMCell), ("lstm", nnx.OptimizedLSTMCell), ("gru", nnx.GRUCell)]
NNX_IDS = [c.__name__ for _, c in NNX_CELLS]


def _nnx_cell(FlaxCell, seed):
    """An nnx cell with every parameter shifted off Flax's initialisation (biases start at zero there)."""
    cell = FlaxCell(D, H, rngs=nnx.Rngs(seed))
    state = nnx.to_pure_dict(nnx.state(cell, nnx.Param))
    keys = iter(jax.random.split(jax.random.key(seed + 100), len(jax.tree.leaves(state))))
    nnx.update(cell, jax.tree.map(lambda a: a + 0.3 * jax.random.normal(next(keys), a.shape), state))
    return cell


def _flax_h(kind, carry):
    return carry[1] if kind == "lstm" else carry  # Flax's LSTM carry is (c, h)


@pytest.mark.parametrize("kind, FlaxCell", NNX_CELLS, ids=NNX_IDS)
def test_nnx_rnn_runs_an_nnx_cell_like_flax_s_own(kind, FlaxCell):
    """The same ``nnx.RNN`` over Flax's cell and over ``NnxCell`` holding its converted weights: equal outputs and
    final states (float32, 1e-6), and equal gradients of a loss with respect to the weights."""
    flax_cell = _nnx_cell(FlaxCell, 0)
    ours = NnxCell.from_params(from_flax(flax_cell))
    assert isinstance(ours, nnx.RNNCellBase) and ours.num_feature_axes == 1
    xs = jax.random.normal(jax.random.key(1), (B, T, D))
    carry_f, ys_f = nnx.RNN(flax_cell, return_carry=True)(xs)
    carry_o, ys_o = nnx.RNN(ours, return_carry=True)(xs)
    assert ys_o.dtype == jnp.float32 and ys_o.shape == (B, T, H)
    np.testing.assert_allclose(ys_o, ys_f, rtol=0, atol=1e-6)
    np.testing.assert_allclose(carry_o.h if kind == "lstm" else carry_o, _flax_h(kind, carry_f), rtol=0, atol=1e-6)
    if kind == "lstm":
        np.testing.assert_allclose(carry_o.c, carry_f[0], rtol=0, atol=1e-6)
    assert float(jnp.abs(ys_f).max()) > 0.1

    # d loss / d weights through nnx's scan, in jaxrnn's layout, against jax.grad of jaxrnn's own unroll
    w = jax.random.normal(jax.random.key(2), (B, T, H))
    loss_nnx = lambda cell: jnp.sum(nnx.RNN(cell)(xs) * w)
    grad_nnx = nnx.grad(loss_nnx)(ours)
    params = ours.cell_params()
    carry0 = jaxrnn.initial_carry(params, (B,))
    loss_jaxrnn = lambda p: jnp.sum(
        jnp.swapaxes(jaxrnn.unroll(jaxrnn.step_for(p), p, carry0, jnp.swapaxes(xs, 0, 1))[1], 0, 1) * w
    )
    grad_jaxrnn = jax.grad(loss_jaxrnn)(params)
    for name in ("Wxh", "Whh", "bh") + (("bhn",) if kind == "gru" else ()):
        np.testing.assert_allclose(grad_nnx[name][...], getattr(grad_jaxrnn, name), rtol=1e-5, atol=1e-5)
    # ... and Flax's own gradient, converted to jaxrnn's layout (nnx's GRUCell has no b_hn to compare)
    grad_flax = from_flax(nnx.grad(loss_nnx)(flax_cell))
    for name in ("Wxh", "Whh", "bh"):
        np.testing.assert_allclose(getattr(grad_flax, name), getattr(grad_jaxrnn, name), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("kind, FlaxCell", NNX_CELLS, ids=NNX_IDS)
def test_nnx_bidirectional_with_nnx_cells_equals_flax_s_own(kind, FlaxCell):
    """``nnx.Bidirectional`` of two ``nnx.RNN``: Flax's cells and ``NnxCell``s with their weights agree (1e-6),
    padded sequences included (``seq_lengths``: the backward pass starts at each sequence's own end)."""
    forward, backward = _nnx_cell(FlaxCell, 3), _nnx_cell(FlaxCell, 4)
    flax_bi = nnx.Bidirectional(nnx.RNN(forward), nnx.RNN(backward))
    ours_bi = nnx.Bidirectional(
        nnx.RNN(NnxCell.from_params(from_flax(forward))), nnx.RNN(NnxCell.from_params(from_flax(backward)))
    )
    xs = jax.random.normal(jax.random.key(5), (B, T, D))
    lengths = jnp.array([T, T - 2, 1])
    for kwargs in ({}, {"seq_lengths": lengths}):
        (cf, cb), ys_f = flax_bi(xs, return_carry=True, **kwargs)
        (of, ob), ys_o = ours_bi(xs, return_carry=True, **kwargs)
        assert ys_o.shape == (B, T, 2 * H)
        np.testing.assert_allclose(ys_o, ys_f, rtol=0, atol=1e-6)
        for mine, theirs in ((of, cf), (ob, cb)):
            np.testing.assert_allclose(mine.h if kind == "lstm" else mine, _flax_h(kind, theirs), rtol=0, atol=1e-6)


@pytest.mark.parametrize("kind, FlaxCell", FLAX_CELLS, ids=[c.__name__ for _, c in FLAX_CELLS])
def test_linen_bidirectional_with_linen_cells_equals_flax_s_own(kind, FlaxCell):
    """``nn.Bidirectional`` of two ``nn.RNN``: Flax's linen cells and ``LinenCell``s with their weights agree."""
    cell = FlaxCell(H)
    x0 = jnp.zeros((B, D))
    fp, bp = (
        jax.tree.map(
            lambda a: a + 0.3,
            cell.init(jax.random.key(s), cell.initialize_carry(jax.random.key(0), (B, D)), x0)["params"],
        )
        for s in (6, 7)
    )
    flax_bi = nn.Bidirectional(nn.RNN(FlaxCell(H)), nn.RNN(FlaxCell(H)))  # one cell in both would share weights
    ours_bi = nn.Bidirectional(nn.RNN(LinenCell(H, cell=kind)), nn.RNN(LinenCell(H, cell=kind)))
    xs = jax.random.normal(jax.random.key(8), (B, T, D))
    lengths = jnp.array([T, 3, 1])
    variables = lambda f, b: {"params": {"forward_rnn": {"cell": f}, "backward_rnn": {"cell": b}}}
    ours_params = [linen_variables(from_flax(p))["params"] for p in (fp, bp)]
    ys_f = flax_bi.apply(variables(fp, bp), xs, seq_lengths=lengths)
    ys_o = ours_bi.apply(variables(*ours_params), xs, seq_lengths=lengths)
    np.testing.assert_allclose(ys_o, ys_f, rtol=0, atol=1e-6)
    assert ys_o.shape == (B, T, 2 * H) and float(jnp.abs(ys_f).max()) > 0.1


def test_nnx_cell_draws_a_random_state_as_flax_s_lstm_does():
    """``initialize_carry(shape, rngs, carry_init)``: the same ``rngs`` give Flax's ``(c, h)`` as ``LSTMCarry(h, c)``;
    without ``carry_init`` the state is jaxrnn's zeros."""
    ours, theirs = NnxCell(D, H, cell="lstm", rngs=nnx.Rngs(0)), nnx.LSTMCell(D, H, rngs=nnx.Rngs(0))
    normal = nnx.initializers.normal(1.0)
    c, h = theirs.initialize_carry((B, D), nnx.Rngs(carry=7), normal)
    carry = ours.initialize_carry((B, D), nnx.Rngs(carry=7), normal)
    np.testing.assert_array_equal(carry.h, h)
    np.testing.assert_array_equal(carry.c, c)
    assert float(jnp.abs(h).max()) > 0.1
    zero = NnxCell(D, H, cell="gru", rngs=nnx.Rngs(0)).initialize_carry((B, D))
    np.testing.assert_array_equal(zero, np.zeros((B, H), np.float32))
    with pytest.raises(ValueError, match="rngs must be given"):
        ours.initialize_carry((B, D), None, normal)


@pytest.mark.parametrize("kind, FlaxCell", NNX_CELLS, ids=NNX_IDS)
def test_nnx_parameters_round_trip_exactly(kind, FlaxCell):
    """nnx cell -> jaxrnn -> ``to_nnx`` gives the cell's own state back, bit for bit, from the cell, its
    ``nnx.State`` or that state's pure dict; and jaxrnn -> nnx -> jaxrnn is exact (for the GRU, with bhn = 0)."""
    cell = _nnx_cell(FlaxCell, 9)
    state = nnx.to_pure_dict(nnx.state(cell, nnx.Param))
    for form in (cell, nnx.state(cell), state):
        params = from_flax(form)
        assert type(params).__name__ == {"rnn": "RNNParams", "lstm": "LSTMParams", "gru": "GRUParams"}[kind]
        assert params.Why is None and params.by is None
        back = to_nnx(params, cell)
        assert jax.tree.structure(back) == jax.tree.structure(state)
        for a, b in zip(jax.tree.leaves(back), jax.tree.leaves(state)):
            np.testing.assert_array_equal(a, b)
    if kind == "gru":
        np.testing.assert_array_equal(params.bhn, np.zeros(H))  # nnx's GRUCell has no b_hn

    p = {"rnn": jaxrnn.init_rnn, "lstm": jaxrnn.init_lstm, "gru": jaxrnn.init_gru}[kind](jax.random.key(10), D, H, 2)
    p = jax.tree.map(lambda a: a + 0.1, p)._replace(Why=None, by=None)
    if kind == "gru":
        p = p._replace(bhn=jnp.zeros(H))
    again = from_flax(to_nnx(p, FlaxCell))  # the class is enough to choose the layout
    for name in p._fields:
        np.testing.assert_array_equal(getattr(again, name), getattr(p, name))

    # loaded with nnx.update, the nnx cell computes jaxrnn's step
    fresh = FlaxCell(D, H, rngs=nnx.Rngs(11))
    nnx.update(fresh, to_nnx(p, fresh))
    xs = jax.random.normal(jax.random.key(12), (B, T, D))
    _, hs = jaxrnn.unroll(jaxrnn.step_for(p), p, jaxrnn.initial_carry(p, (B,)), jnp.swapaxes(xs, 0, 1))
    np.testing.assert_allclose(nnx.RNN(fresh)(xs), jnp.swapaxes(hs, 0, 1), rtol=0, atol=1e-6)


def test_nnx_conversions_refuse_what_they_cannot_hold():
    gru = jax.tree.map(lambda a: a + 0.1, jaxrnn.init_gru(jax.random.key(0), D, H, 2))
    with pytest.raises(ValueError, match="nnx.GRUCell has no recurrent candidate bias b_hn"):
        to_nnx(gru, nnx.GRUCell)
    np.testing.assert_array_equal(to_flax(gru)["hn"]["bias"], gru.bhn)  # linen's GRUCell keeps it
    with pytest.raises(ValueError, match="params are GRUParams but cell is nnx.LSTMCell"):
        to_nnx(gru, nnx.LSTMCell)
    with pytest.raises(TypeError, match="to_nnx: cell must be one of nnx.SimpleCell"):
        to_nnx(gru, nnx.Linear)
    rnn = jaxrnn.init_rnn(jax.random.key(0), D, H, 2)
    residual = nnx.SimpleCell(D, H, residual=True, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="residual=True"):
        to_nnx(rnn, residual)
    with pytest.raises(ValueError, match="residual=True"):
        from_flax(residual)
    with pytest.raises(ValueError, match="build the cell with the same in_features"):
        to_nnx(rnn, nnx.SimpleCell(D + 1, H, rngs=nnx.Rngs(0)))
    with pytest.raises(TypeError, match="cell_params must be a Flax cell's parameter dict"):
        from_flax([1, 2])
    with pytest.raises(TypeError, match="an nnx cell_params must be one of nnx.SimpleCell"):
        from_flax(nnx.Linear(D, H, rngs=nnx.Rngs(0)))
    with pytest.raises(ValueError, match="not the parameters of a Flax"):
        from_flax({"dense_i": {"kernel": np.zeros((D, 2 * H))}, "dense_h": {"kernel": np.zeros((H, 2 * H))}})
