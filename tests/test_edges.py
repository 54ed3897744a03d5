"""Input at the library's edges: bad ids, missing keys, wrong layouts and dtypes get a named error or NaN, never a
silently wrong number; re-registered cells; forward mode where it is defined."""

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.experimental import checkify

import jaxrnn
from jaxrnn import cells

D, H, V, T, B = 5, 8, 7, 6, 3


def _lstm(seed=0, dtype=jnp.float32):
    return jaxrnn.init_lstm(jax.random.key(seed), V, H, V, dtype=dtype)


def _ids(shape=(T, B), seed=1):
    return jax.random.randint(jax.random.key(seed), shape, 0, V)


def _all_nan(tree) -> bool:
    return all(bool(jnp.isnan(leaf).all()) for leaf in jax.tree.leaves(tree))


@pytest.mark.parametrize("where", ["xs", "targets"])
@pytest.mark.parametrize("bad", [V, -1])
def test_an_id_out_of_range_is_named_with_the_range_and_V(where, bad):
    params, ids = _lstm(), _ids((T + 1, B))
    xs, ys = ids[:-1], ids[1:]
    xs, ys = (xs.at[2, 1].set(bad), ys) if where == "xs" else (xs, ys.at[2, 1].set(bad))
    carry = jaxrnn.initial_carry(params, (B,))
    found = f"found {min(bad, 0)}..{max(bad, int(ids.max()))}" if bad < 0 else f"found 0..{bad}"
    with pytest.raises(
        ValueError,
        match=rf"sequence_loss: {where}: token ids must lie in \[0, {V}\) \(V = {V}\), "
        rf"{found}",
    ):
        jaxrnn.sequence_loss(params, carry, xs, ys)
    with pytest.raises(ValueError, match=rf"train_step: {where}: token ids must lie in \[0, {V}\)"):
        opt = optax.sgd(0.1)
        jaxrnn.make_train_step(opt)(params, opt.init(params), carry, xs, ys)
    if where == "xs":
        with pytest.raises(ValueError, match=rf"unroll: xs: token ids must lie in \[0, {V}\)"):
            jaxrnn.unroll(jaxrnn.lstm_step, params, carry, xs)


@pytest.mark.parametrize("method", ["scan", "loop", "fused", "newton"])
def test_under_jit_a_bad_id_makes_the_loss_and_every_gradient_nan(method):
    params, ids = _lstm(), _ids((T + 1, B))
    carry = jaxrnn.initial_carry(params, (B,))

    @jax.jit
    def loss_and_grads(xs, ys):
        f = lambda p, c: jaxrnn.sequence_loss(p, c, xs, ys, method=method)[0]
        return jax.value_and_grad(f, argnums=(0, 1))(params, carry)

    good_loss, good_grads = loss_and_grads(ids[:-1], ids[1:])
    assert np.isfinite(good_loss) and all(np.isfinite(leaf).all() for leaf in jax.tree.leaves(good_grads))
    for xs, ys in [(ids[:-1].at[0, 0].set(-1), ids[1:]), (ids[:-1], ids[1:].at[3, 2].set(V))]:
        loss, grads = loss_and_grads(xs, ys)
        assert bool(jnp.isnan(loss)) and _all_nan(grads), method


def test_unroll_and_sample_under_jit_give_nan_states_for_bad_ids():
    params = _lstm()
    carry = jaxrnn.initial_carry(params, (B,))
    carry_T, hs = jax.jit(lambda xs: jaxrnn.unroll(jaxrnn.lstm_step, params, carry, xs))(_ids().at[1, 1].set(V))
    assert _all_nan((carry_T, hs))
    with pytest.raises(ValueError, match=r"sample: xs: token ids must lie in \[0, 7\)"):
        jaxrnn.sample(jax.random.key(0), params, carry, jnp.array([0, 9, 1]), 4)
    _, carry = jax.jit(lambda x: jaxrnn.sample(jax.random.key(0), params, carry, x, 4))(jnp.array([0, -1, 1]))
    assert _all_nan(carry)


def test_the_train_step_under_jit_turns_a_bad_batch_into_nan():
    params, ids = _lstm(), _ids((T + 1, B))
    opt = optax.adam(1e-2)
    step = jax.jit(jaxrnn.make_train_step(opt, method="fused"))
    new_params, _, _, loss = step(
        params, opt.init(params), jaxrnn.initial_carry(params, (B,)), ids[:-1], ids[1:].at[0, 0].set(V + 3)
    )
    assert bool(jnp.isnan(loss)) and _all_nan(new_params)


def test_checkify_reports_a_bad_id_inside_jit():
    params, ids = _lstm(), _ids((T + 1, B))
    carry = jaxrnn.initial_carry(params, (B,))
    f = checkify.checkify(jax.jit(lambda xs, ys: jaxrnn.sequence_loss(params, carry, xs, ys)[0]))
    with jaxrnn.checkify_token_ids():
        err, _ = f(ids[:-1], ids[1:])
        assert err.get() is None
        err, loss = f(ids[:-1].at[2, 0].set(-3), ids[1:])
        assert "sequence_loss: xs: token ids must lie in [0, 7)" in err.get() and bool(jnp.isnan(loss))
        err, _ = f(ids[:-1], ids[1:].at[2, 0].set(V))
        assert "sequence_loss: targets: token ids must lie in [0, 7)" in err.get()
    # outside the context the compiled function carries no check (it would slow every call)
    step = jax.jit(lambda xs, ys: jaxrnn.sequence_loss(params, carry, xs, ys)[0])
    assert "check" not in str(jax.make_jaxpr(step)(ids[:-1], ids[1:]))


def test_a_stack_checks_ids_against_its_embedding():
    stack = jaxrnn.init_stack(jax.random.key(0), V, (H, H), V, embed_size=4)
    carry = jaxrnn.initial_carry(stack, (B,))
    with pytest.raises(ValueError, match=r"xs: token ids must lie in \[0, 7\)"):
        jaxrnn.sequence_loss(stack, carry, _ids().at[0, 0].set(V), _ids(seed=2))
    loss, grads = jax.jit(jax.value_and_grad(lambda p, xs: jaxrnn.sequence_loss(p, carry, xs, _ids(seed=2))[0]))(
        stack, _ids().at[0, 0].set(V)
    )
    assert bool(jnp.isnan(loss)) and _all_nan(grads)


def test_dropout_without_a_key_is_an_error_not_dropout_off():
    stack = jaxrnn.init_stack(jax.random.key(0), V, (H, H), V)
    carry, xs, ys = jaxrnn.initial_carry(stack, (B,)), _ids(), _ids(seed=2)
    with pytest.raises(ValueError, match=r"sequence_loss: dropout=0.9 needs key="):
        jaxrnn.sequence_loss(stack, carry, xs, ys, dropout=0.9)
    with pytest.raises(ValueError, match=r"unroll: dropout=0.5 needs key="):
        jaxrnn.unroll(jaxrnn.stack_step, stack, carry, xs, dropout=0.5)
    opt = optax.sgd(0.1)
    step = jaxrnn.make_train_step(opt, dropout=0.5)
    with pytest.raises(ValueError, match=r"train_step: dropout=0.5 needs key="):
        step(stack, opt.init(stack), carry, xs, ys)
    with_key = jaxrnn.sequence_loss(stack, carry, xs, ys, dropout=0.9, key=jax.random.key(3))[0]
    without = jaxrnn.sequence_loss(stack, carry, xs, ys)[0]
    assert abs(float(with_key) - float(without)) > 1e-3  # a rate of 0.9 does change the loss


@pytest.mark.parametrize(
    "options, match",
    [
        (dict(method="scann"), "make_train_step: unknown method 'scann'"),
        (dict(reduction="avg"), "make_train_step: unknown reduction 'avg'"),
        (dict(unroll=0), "make_train_step: unroll must be a positive integer"),
        (dict(dropout=1.0), r"make_train_step: dropout must be in \[0, 1\)"),
        (dict(segment_length=0), "make_train_step: segment_length must be a positive integer"),
        (dict(updates_per_call=0), "make_train_step: updates_per_call must be a positive integer"),
        (dict(method="scan", newton=object()), "newton= gives the options of method='newton'"),
        (dict(method="fused", remat=True), "method='fused' takes no mask, lengths or remat"),
    ],
)
def test_the_train_step_builder_checks_its_options_when_built(options, match):
    with pytest.raises(ValueError, match=match):
        jaxrnn.make_train_step(optax.sgd(0.1), **options)


def test_the_builder_refuses_an_optimizer_that_is_not_optax():
    with pytest.raises(TypeError, match="optimizer must be an optax.GradientTransformation"):
        jaxrnn.make_train_step(lambda g: g)


def test_batch_major_inputs_get_a_named_error_and_time_major_false_reads_them():
    params = jaxrnn.init_lstm(jax.random.key(0), D, H, V)
    carry = jaxrnn.initial_carry(params, (4,))
    xs_bm = jax.random.normal(jax.random.key(1), (4, 16, D))  # (B, T, D), B = 4, T = 16
    for method in ("scan", "fused"):
        with pytest.raises(
            ValueError,
            match=r"unroll: inputs xs \(4, 16, 5\) float32 do not fit the carry's batch "
            r"shape \(4,\): inputs are time-major.*time_major=False",
        ):
            jaxrnn.unroll(jaxrnn.lstm_step, params, carry, xs_bm, method=method)
    carry_T, hs_bm = jaxrnn.unroll(jaxrnn.lstm_step, params, carry, xs_bm, time_major=False)
    carry_T2, hs_tm = jaxrnn.unroll(jaxrnn.lstm_step, params, carry, jnp.swapaxes(xs_bm, 0, 1))
    assert hs_bm.shape == (4, 16, H)
    np.testing.assert_array_equal(hs_bm, jnp.swapaxes(hs_tm, 0, 1))
    np.testing.assert_array_equal(carry_T.c, carry_T2.c)
    ys_bm = jax.random.randint(jax.random.key(2), (4, 16), 0, V)
    mask_bm = jnp.arange(16)[None, :] < jnp.array([16, 9, 3, 12])[:, None]
    f = lambda p, xs, ys, m, tm: jaxrnn.sequence_loss(p, carry, xs, ys, mask=m, time_major=tm)[0]
    bm = jax.value_and_grad(f)(params, xs_bm, ys_bm, mask_bm, False)
    tm = jax.value_and_grad(f)(params, *(jnp.swapaxes(a, 0, 1) for a in (xs_bm, ys_bm, mask_bm)), True)
    for a, b in zip(jax.tree.leaves(bm), jax.tree.leaves(tm)):
        np.testing.assert_array_equal(a, b)


def test_an_integer_feature_vector_is_read_as_token_ids_and_said_so():
    params = jaxrnn.init_rnn(jax.random.key(0), D, H, V)
    with pytest.raises(
        ValueError,
        match=r"rnn_step: input x \(5,\) int32 does not fit the carry's batch shape "
        r"\(\): integer inputs are token ids \(\), float inputs are features \(5,\)",
    ):
        jaxrnn.rnn_step(params, jaxrnn.initial_carry(params), jnp.arange(D))
    with pytest.raises(ValueError, match=r"inputs xs \(6, 5\) int32 do not fit the carry's batch shape \(\)"):
        jaxrnn.unroll(jaxrnn.rnn_step, params, jaxrnn.initial_carry(params), jnp.ones((T, D), int))


def test_float64_inputs_with_float32_parameters_compute_in_float32(x64):
    params = jaxrnn.init_gru(jax.random.key(0), D, H, V)
    xs = np.random.default_rng(0).normal(size=(T, B, D))  # float64 NumPy, as a user's data loader gives
    carry = jaxrnn.initial_carry(params, (B,))
    for method in ("scan", "fused"):
        carry_T, hs = jaxrnn.unroll(jaxrnn.gru_step, params, carry, xs, method=method)
        assert carry_T.dtype == hs.dtype == jnp.float32
        _, hs32 = jaxrnn.unroll(jaxrnn.gru_step, params, carry, xs.astype(np.float32), method=method)
        np.testing.assert_array_equal(hs, hs32)


def test_a_carry_of_another_dtype_names_the_cause(x64):
    params = jaxrnn.init_lstm(jax.random.key(0), D, H, V)
    carry = jax.tree.map(lambda a: a.astype(jnp.float64), jaxrnn.initial_carry(params, (B,)))
    with pytest.raises(ValueError, match="the carry is float64 but the step computes in float32"):
        jaxrnn.unroll(jaxrnn.lstm_step, params, carry, jnp.zeros((T, B, D)))


class _Leaky(NamedTuple):
    Wxh: jax.Array
    Whh: jax.Array
    Why: jax.Array
    bh: jax.Array
    by: jax.Array


def _define_leaky_cell():
    """What a notebook cell defining a cell of one's own does: new classes and functions on every run."""

    class LeakyParams(NamedTuple):
        Wxh: jax.Array
        Whh: jax.Array
        Why: jax.Array
        bh: jax.Array
        by: jax.Array

    def leaky_step(params, h, x):
        h = 0.5 * h + 0.5 * jnp.tanh(cells.input_projection(params.Wxh, x) + h @ params.Whh.T + params.bh)
        return h, h

    return jaxrnn.CellType("leaky_notebook", LeakyParams, leaky_step, cells.rnn_initial_carry)


def test_registering_the_same_cell_again_replaces_it_and_a_different_one_is_refused():
    first, again = _define_leaky_cell(), _define_leaky_cell()
    assert first.params_type is not again.params_type
    jaxrnn.register_cell(first)
    jaxrnn.register_cell(again)  # the notebook cell run a second time
    assert jaxrnn.cell_type("leaky_notebook") is again
    assert jaxrnn.registry._by_type.get(first.params_type) is None  # the old class is gone with its cell
    other = jaxrnn.CellType("leaky_notebook", _Leaky, cells.rnn_step, cells.rnn_initial_carry)
    with pytest.raises(ValueError, match=r"already registered for 'leaky_notebook' \(pass replace=True"):
        jaxrnn.register_cell(other)
    jaxrnn.register_cell(other, replace=True)
    assert jaxrnn.cell_type("leaky_notebook") is other and jaxrnn.cell_type(_Leaky(*[0] * 5)) is other
    with pytest.raises(ValueError, match="a built-in cell"):
        jaxrnn.register_cell(jaxrnn.CellType("lstm", _Leaky, cells.rnn_step, cells.rnn_initial_carry), replace=True)


def test_forward_mode_works_through_scan_and_is_refused_by_the_reverse_mode_paths():
    params = jaxrnn.init_rnn(jax.random.key(0), D, H, V)
    carry, xs = jaxrnn.initial_carry(params, (B,)), jax.random.normal(jax.random.key(1), (T, B, D))
    f = lambda method: lambda p: jaxrnn.unroll(jaxrnn.rnn_step, p, carry, xs, method=method)[1]
    tangent = jax.tree.map(jnp.ones_like, params)
    _, jvp_scan = jax.jvp(f("scan"), (params,), (tangent,))
    _, vjp = jax.vjp(f("fused"), params)
    (grad,) = vjp(jnp.ones((T, B, H)))
    # <J t, 1> = <t, J^T 1>: the forward-mode scan and the reverse-mode fused path agree
    np.testing.assert_allclose(jvp_scan.sum(), sum(g.sum() for g in jax.tree.leaves(grad)), rtol=1e-4)
    for method in ("fused", "newton"):
        with pytest.raises(TypeError, match="can't apply forward-mode autodiff"):
            jax.jvp(f(method), (params,), (tangent,))


class _Embedded(NamedTuple):
    """A model of one's own: an embedding ``Wemb (E, V)`` before an LSTM whose ``Wxh`` reads E features."""

    Wemb: jax.Array
    Wxh: jax.Array
    Whh: jax.Array
    Why: jax.Array
    bh: jax.Array
    by: jax.Array


def test_a_model_of_one_s_own_reads_its_ids_its_own_way():
    lstm = jaxrnn.init_lstm(jax.random.key(0), 4, H, V)  # Wxh reads E = 4 features; the ids go up to V = 7
    params = _Embedded(jax.random.normal(jax.random.key(1), (4, V)), *lstm)
    step = lambda p, c, x: jaxrnn.lstm_step(jaxrnn.LSTMParams(*p[1:]), c, jaxrnn.embed(p.Wemb, x))
    opt = optax.sgd(0.1)
    ids = _ids((T + 1, B))
    *_, loss = jaxrnn.make_train_step(opt, step=step)(
        params, opt.init(params), jaxrnn.initial_carry(lstm, (B,)), ids[:-1], ids[1:]
    )
    assert np.isfinite(loss)
    with pytest.raises(ValueError, match=r"train_step: targets: token ids must lie in \[0, 7\)"):
        jaxrnn.make_train_step(opt, step=step)(
            params, opt.init(params), jaxrnn.initial_carry(lstm, (B,)), ids[:-1], ids[1:].at[0, 0].set(V)
        )
