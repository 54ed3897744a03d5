"""Scan and Python-loop unrolls agree; steps take batches; the embedding equals a one-hot product; bad input."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxrnn

D, H, V, T, B = 7, 16, 11, 12, 3


def _setup(kind, seed=0):
    key = jax.random.PRNGKey(seed)
    k_p, k_x, k_h, k_y = jax.random.split(key, 4)
    init = jaxrnn.init_rnn if kind == "rnn" else jaxrnn.init_lstm
    params = init(k_p, D, H, V)
    xs = jax.random.normal(k_x, (T, B, D))
    h0 = 0.5 * jax.random.normal(k_h, (B, H))
    carry = h0 if kind == "rnn" else jaxrnn.LSTMCarry(h0, -h0)
    targets = jax.random.randint(k_y, (T, B), 0, V)
    return params, carry, xs, targets


def _loss(params, carry, xs, targets, **kw):
    return jaxrnn.sequence_loss(params, carry, xs, targets, **kw)


@pytest.mark.parametrize("kind", ["rnn", "lstm"])
def test_scan_and_loop_agree(kind):
    params, carry, xs, targets = _setup(kind)
    step = jaxrnn.step_for(params)
    results = {}
    for method, unroll in [("scan", 1), ("scan", 4), ("loop", 1)]:
        carry_T, hs = jax.jit(lambda p, c, x: jaxrnn.unroll(step, p, c, x, method=method, unroll=unroll))(
            params, carry, xs
        )
        (loss, _), grads = jax.value_and_grad(_loss, has_aux=True)(
            params, carry, xs, targets, method=method, unroll=unroll
        )
        results[method, unroll] = (carry_T, hs, loss, grads)
    base = results["scan", 1]
    assert base[1].shape == (T, B, H)
    for key, other in results.items():
        for a, b in zip(jax.tree.leaves(base), jax.tree.leaves(other)):
            np.testing.assert_allclose(a, b, rtol=2e-5, atol=2e-6, err_msg=str(key))


@pytest.mark.parametrize("kind", ["rnn", "lstm"])
def test_remat_changes_memory_not_values(kind, x64):
    # float64: remat compiles to another program, whose float32 sums may round differently in the last bit
    to64 = lambda a: a.astype(jnp.float64) if jnp.issubdtype(a.dtype, jnp.floating) else a
    params, carry, xs, targets = jax.tree.map(to64, _setup(kind))
    plain = jax.value_and_grad(_loss, has_aux=True)(params, carry, xs, targets)
    remat = jax.value_and_grad(_loss, has_aux=True)(params, carry, xs, targets, remat=True)
    for a, b in zip(jax.tree.leaves(plain), jax.tree.leaves(remat)):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("kind", ["rnn", "lstm"])
def test_loop_equals_handwritten_recurrence_and_batch_equals_single(kind):
    params, carry, xs, _ = _setup(kind)
    step = jaxrnn.step_for(params)
    carry_T, hs = jaxrnn.unroll(step, params, carry, xs)
    for b in range(B):  # each example alone, stepped by hand
        c = jax.tree.map(lambda a: a[b], carry)
        for t in range(T):
            c, h = step(params, c, xs[t, b])
            np.testing.assert_allclose(hs[t, b], h, rtol=1e-5, atol=1e-6)
        for a, e in zip(jax.tree.leaves(carry_T), jax.tree.leaves(c)):
            np.testing.assert_allclose(a[b], e, rtol=1e-5, atol=1e-6)


def test_rnn_step_is_the_lecture_equation():
    params, carry, xs, _ = _setup("rnn")
    p = jax.tree.map(np.asarray, params)
    h, x = np.asarray(carry[0]), np.asarray(xs[0, 0])
    expected = np.tanh(p.Whh @ h + p.Wxh @ x + p.bh)
    np.testing.assert_allclose(jaxrnn.rnn_step(params, carry[0], xs[0, 0])[0], expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(jaxrnn.readout(params, expected), p.Why @ expected + p.by, rtol=1e-5, atol=1e-6)


def test_lstm_gate_order_is_i_f_o_g():
    """With only the forget block's bias large and everything else zero: c keeps its value, i * g adds 0."""
    assert jaxrnn.LSTM_GATE_ORDER == ("i", "f", "o", "g")
    params = jaxrnn.init_lstm(jax.random.PRNGKey(0), D, H, V, forget_bias=50.0)
    params = params._replace(Wxh=0 * params.Wxh, Whh=0 * params.Whh)
    assert np.all(params.bh[H : 2 * H] == 50.0) and np.all(params.bh[:H] == 0) and np.all(params.bh[2 * H :] == 0)
    c0 = jnp.linspace(-2, 2, H)
    carry, h = jaxrnn.lstm_step(params, jaxrnn.LSTMCarry(jnp.zeros(H), c0), jnp.ones(D))
    np.testing.assert_allclose(carry.c, c0, rtol=1e-6)  # f = 1, g = tanh(0) = 0
    np.testing.assert_allclose(h, 0.5 * np.tanh(c0), rtol=1e-6)  # o = sigmoid(0)


def test_reverse_unroll_runs_backwards_in_time():
    params, carry, xs, _ = _setup("rnn")
    fwd_carry, fwd_hs = jaxrnn.unroll(jaxrnn.rnn_step, params, carry, xs[::-1])
    for method in ["scan", "loop"]:
        rev_carry, rev_hs = jaxrnn.unroll(jaxrnn.rnn_step, params, carry, xs, reverse=True, method=method)
        np.testing.assert_allclose(rev_hs, fwd_hs[::-1], rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(rev_carry, fwd_carry, rtol=1e-5, atol=1e-6)


def test_empty_sequence_returns_the_initial_carry():
    params, carry, xs, _ = _setup("lstm")
    for method in ["scan", "loop"]:
        carry_T, hs = jaxrnn.unroll(jaxrnn.lstm_step, params, carry, xs[:0], method=method)
        assert hs.shape == (0, B, H)
        np.testing.assert_array_equal(carry_T.h, carry.h)


@pytest.mark.parametrize("init", ["rnn", "lstm"])
def test_integer_inputs_equal_one_hot_products(init):
    """The lecture's embedding layer: looking up column k of Wxh is Wxh @ one_hot(k)."""
    params = (jaxrnn.init_rnn if init == "rnn" else jaxrnn.init_lstm)(jax.random.PRNGKey(1), V, H, V)
    ids = jax.random.randint(jax.random.PRNGKey(2), (T, B), 0, V)
    carry = jaxrnn.initial_carry(params, (B,))
    step = jaxrnn.step_for(params)
    by_ids = jaxrnn.unroll(step, params, carry, ids)
    by_one_hot = jaxrnn.unroll(step, params, carry, jax.nn.one_hot(ids, V))
    for a, b in zip(jax.tree.leaves(by_ids), jax.tree.leaves(by_one_hot)):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
    W = params.Wxh
    np.testing.assert_allclose(jaxrnn.embed(W, ids), jax.nn.one_hot(ids, V) @ W.T, rtol=1e-6, atol=1e-7)
    np.testing.assert_array_equal(jaxrnn.embed(W, 3), W[:, 3])


def test_init_options():
    key = jax.random.PRNGKey(0)
    lecture = jaxrnn.init_rnn(key, 65, 100, 65, init="lecture")
    assert abs(float(jnp.std(lecture.Whh)) - 0.01) < 0.001 and not jnp.any(lecture.bh)
    default = jaxrnn.init_rnn(key, 65, 100, 65)
    np.testing.assert_allclose(jnp.linalg.svd(default.Whh, compute_uv=False), 1.0, rtol=1e-5)
    lstm = jaxrnn.init_lstm(key, 5, 8, 5, forget_bias=2.5, dtype=jnp.bfloat16)
    assert lstm.Whh.dtype == jnp.bfloat16 and lstm.Wxh.shape == (32, 5) and lstm.Whh.shape == (32, 8)
    assert float(lstm.bh[8:16].mean()) == 2.5 and float(jnp.abs(lstm.bh).sum()) == 2.5 * 8
    assert jaxrnn.initial_carry(lstm, (4,)).c.shape == (4, 8)


def test_bad_input_is_named():
    params, carry, xs, targets = _setup("lstm")
    with pytest.raises(ValueError, match="unknown method 'while'"):
        jaxrnn.unroll(jaxrnn.lstm_step, params, carry, xs, method="while")
    with pytest.raises(TypeError, match="carry must be LSTMCarry"):
        jaxrnn.unroll(jaxrnn.lstm_step, params, carry.h, xs)
    with pytest.raises(TypeError, match="carry must be an array"):
        jaxrnn.rnn_step(jaxrnn.init_rnn(jax.random.PRNGKey(0), D, H, V), carry, xs[0])
    with pytest.raises(TypeError, match="params must be LSTMParams"):
        jaxrnn.lstm_step(jaxrnn.init_rnn(jax.random.PRNGKey(0), D, H, V), carry, xs[0])
    with pytest.raises(ValueError, match=r"expected \(\.\.\., 7\)"):
        jaxrnn.unroll(jaxrnn.lstm_step, params, carry, xs[..., :5])
    with pytest.raises(ValueError, match=r"carry.h has shape \(3, 15\); expected \(\.\.\., 16\)"):
        jaxrnn.lstm_step(params, jaxrnn.LSTMCarry(carry.h[:, :15], carry.c), xs[0])
    with pytest.raises(ValueError, match=r"do not fit the carry's batch shape \(\).*jaxrnn.initial_carry"):
        jaxrnn.unroll(jaxrnn.lstm_step, params, jaxrnn.initial_carry(params), xs)
    with pytest.raises(ValueError, match="targets of shape"):
        jaxrnn.sequence_loss(params, carry, xs, targets[:-1])
    with pytest.raises(ValueError, match="hidden_size must be a positive integer"):
        jaxrnn.init_rnn(jax.random.PRNGKey(0), 3, 0, 3)
    with pytest.raises(ValueError, match="unroll must be a positive integer"):
        jaxrnn.unroll(jaxrnn.lstm_step, params, carry, xs, unroll=0)


def test_auto_method_picks_fused_where_it_applies_and_scan_elsewhere():
    key = jax.random.PRNGKey(0)
    lstm, gru = jaxrnn.init_lstm(key, D, H, V), jaxrnn.init_gru(key, D, H, V)
    own_step = lambda p, c, x: jaxrnn.lstm_step(p, c, x)
    assert jaxrnn.choose_method(jaxrnn.lstm_step, lstm) == "fused"
    assert jaxrnn.choose_method(jaxrnn.rnn_step, jaxrnn.init_rnn(key, D, H, V)) == "fused"
    assert jaxrnn.choose_method(jaxrnn.gru_step, gru) == "scan"
    assert jaxrnn.choose_method(jaxrnn.lstm_step, lstm, masked=True) == "scan"
    assert jaxrnn.choose_method(jaxrnn.lstm_step, lstm, remat=True) == "scan"
    assert jaxrnn.choose_method(own_step, lstm) == "scan"
    assert jaxrnn.choose_method(jaxrnn.stack_step, jaxrnn.init_stack(key, V, (H, H), V, cell="lstm")) == "fused"
    assert jaxrnn.choose_method(jaxrnn.stack_step, jaxrnn.init_stack(key, V, (H,), V, cell="gru")) == "scan"


@pytest.mark.parametrize("kind", ["rnn", "lstm"])
def test_auto_method_computes_what_the_chosen_method_computes(kind):
    params, carry, xs, targets = _setup(kind)
    step = jaxrnn.step_for(params)
    run = lambda method, **kw: jax.jit(
        jax.value_and_grad(lambda p: _loss(p, carry, xs, targets, method=method, **kw)[0])
    )(params)
    np.testing.assert_array_equal(
        *[np.asarray(jax.flatten_util.ravel_pytree(r)[0]) for r in (run("auto"), run("fused"))]
    )
    lengths = jnp.array([T, T - 3, 1])  # a masked unroll: auto runs scan
    auto, scan = run("auto", lengths=lengths), run("scan", lengths=lengths)
    np.testing.assert_array_equal(*[np.asarray(jax.flatten_util.ravel_pytree(r)[0]) for r in (auto, scan)])
    hs_auto = jaxrnn.unroll(step, params, carry, xs, method="auto")[1]
    hs_own = jaxrnn.unroll(lambda p, c, x: step(p, c, x), params, carry, xs, method="auto")[1]
    np.testing.assert_array_equal(hs_own, jaxrnn.unroll(step, params, carry, xs, method="scan")[1])
    np.testing.assert_allclose(hs_auto, hs_own, rtol=1e-5, atol=1e-6)


def test_make_train_step_runs_the_fused_recurrence_by_default():
    params, carry, xs, targets = _setup("lstm")
    optimizer = jaxrnn.lecture_optimizer(0.1)
    default = jaxrnn.make_train_step(optimizer)(params, optimizer.init(params), carry, xs, targets)
    fused = jaxrnn.make_train_step(optimizer, method="fused")(params, optimizer.init(params), carry, xs, targets)
    for a, b in zip(jax.tree.leaves(default), jax.tree.leaves(fused)):
        np.testing.assert_array_equal(a, b)
