"""The fused recurrence (hoisted projection, manual-BPTT custom VJP) equals the plain step: values and gradients."""

import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jaxrnn
from jaxrnn import recurrence as fused, reference
from jaxrnn.recurrence import recurrence

fused_loss = functools.partial(jaxrnn.sequence_loss, method="fused")

V, H, T = 11, 6, 8


def _problem(kind, batch, dtype, ids=True, seed=0):
    """Weights large enough to saturate the gates, a non-zero initial state, ids or float inputs."""
    k = jax.random.split(jax.random.PRNGKey(seed), 5)
    init = jaxrnn.init_rnn if kind == "rnn" else jaxrnn.init_lstm
    D = V if ids else 4
    params = init(k[0], D, H, V, dtype=dtype)
    params = jax.tree.map(
        lambda a, kk: a + 0.5 * jax.random.normal(kk, a.shape, dtype), params, type(params)(*jax.random.split(k[1], 5))
    )
    carry = jax.tree.map(lambda a: a + 0.3, jaxrnn.initial_carry(params, batch))
    xs = jax.random.randint(k[2], (T, *batch), 0, V) if ids else jax.random.normal(k[2], (T, *batch, D), dtype)
    ys = jax.random.randint(k[3], (T, *batch), 0, V)
    return params, carry, xs, ys


def _value_and_grads(loss_fn, params, carry, xs, ys, **kw):
    """Loss, carry_T and gradients with respect to params and the initial carry, with a cotangent on carry_T
    too (as the next chunk would send), so every output of the custom VJP is exercised."""

    def f(p, c):
        loss, carry_T = loss_fn(p, c, xs, ys, **kw)
        return loss + 0.7 * sum(jnp.sum(jnp.sin(leaf)) for leaf in jax.tree.leaves(carry_T)), (loss, carry_T)

    (_, aux), grads = jax.value_and_grad(f, argnums=(0, 1), has_aux=True)(params, carry)
    return aux, grads


def _max_rel(a, b):
    return max(float(reference.relative_error(x, y).max()) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


SLOW = pytest.mark.slow  # repeated compilations of a path another case already covers: run by CI's -m slow


@pytest.mark.parametrize(
    "kind, batch, ids, reduction",
    [
        ("rnn", (), True, "sum"),
        ("rnn", (3,), False, "mean"),
        pytest.param("lstm", (), False, "sum", marks=SLOW),
        pytest.param("lstm", (3,), True, "mean", marks=SLOW),
        ("lstm", (2, 3), True, "sum"),
    ],
)
def test_fast_loss_equals_plain_float64(x64, kind, batch, ids, reduction):
    params, carry, xs, ys = _problem(kind, batch, jnp.float64, ids)
    plain = _value_and_grads(jaxrnn.sequence_loss, params, carry, xs, ys, reduction=reduction)
    fast = _value_and_grads(fused_loss, params, carry, xs, ys, reduction=reduction)
    assert fast[1][0].Whh.dtype == jnp.float64
    assert max(float(jnp.abs(g).max()) for g in jax.tree.leaves(plain[1])) > 1e-2  # non-trivial gradients
    # identical maths in a different order: agreement to float64 rounding, up to tiny entries near zero
    np.testing.assert_allclose(fast[0][0], plain[0][0], rtol=1e-13)
    for a, b in zip(jax.tree.leaves(fast), jax.tree.leaves(plain)):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-13)


@pytest.mark.parametrize(
    "kind, batch", [pytest.param("rnn", (4,), marks=SLOW), ("lstm", (4,)), pytest.param("lstm", (1,), marks=SLOW)]
)
def test_fast_loss_equals_plain_float32(kind, batch):
    params, carry, xs, ys = _problem(kind, batch, jnp.float32, seed=1)
    plain = _value_and_grads(jaxrnn.sequence_loss, params, carry, xs, ys)
    fast = _value_and_grads(fused_loss, params, carry, xs, ys)
    assert fast[1][0].Whh.dtype == jnp.float32
    for a, b in zip(jax.tree.leaves(fast), jax.tree.leaves(plain)):
        np.testing.assert_allclose(a, b, rtol=2e-4, atol=2e-5)


@pytest.mark.parametrize("kind", ["rnn", "lstm"])
def test_fast_gradients_equal_manual_bptt_reference(x64, kind):
    """The fast path's weight gradients against the independent NumPy reference, unbatched ids."""
    params, carry, xs, ys = _problem(kind, (), jnp.float64, seed=2)
    (loss, _), grads = jax.value_and_grad(fused_loss, has_aux=True)(params, carry, xs, ys)
    np_params = [np.asarray(p) for p in params]
    if kind == "rnn":
        loss_ref, *grads_ref, _ = reference.rnn_loss_fun(np.asarray(xs), np.asarray(ys), np.asarray(carry), np_params)
    else:
        loss_ref, *grads_ref, _, _ = reference.lstm_loss_fun(
            np.asarray(xs), np.asarray(ys), np.asarray(carry.h), np.asarray(carry.c), np_params
        )
    assert reference.relative_error(loss, loss_ref) <= 1e-13
    for name, g, g_ref in zip(reference.PARAM_NAMES, grads, grads_ref):
        assert np.abs(g_ref).max() > 1e-3, name
        assert reference.relative_error(g, g_ref).max() <= 1e-9, name


def test_recurrence_matches_scan_of_lstm_step(x64):
    """The custom-VJP recurrence alone equals unrolling lstm_step over the same projections."""
    params, carry, xs, _ = _problem("lstm", (2,), jnp.float64, ids=False)
    zxs = xs @ params.Wxh.T
    identity = params._replace(Wxh=jnp.eye(4 * H, dtype=jnp.float64))
    out_fast = recurrence(params.Whh, params.bh, carry, zxs)
    out_plain = jaxrnn.unroll(jaxrnn.lstm_step, identity, carry, zxs)
    assert _max_rel(out_fast, out_plain) <= 1e-13


def test_gates_as_one_equal_lstm_gates(x64):
    """The single-row forward's gates, tanh written through the sigmoid, against ``lstm_gates``, including
    saturated and tiny pre-activations."""
    z = jnp.concatenate([jnp.linspace(-40.0, 40.0, 397, dtype=jnp.float64), jnp.asarray([0.0, 1e-12, -1e-9])])
    z = jnp.stack([z, z[::-1]])  # each value in every gate block: (2, 400), H = 100
    one = fused._gates_as_one(z)
    for block, gate in zip(fused._gate_blocks(one), jaxrnn.lstm_gates(z)):
        np.testing.assert_allclose(block, gate, rtol=1e-12, atol=1e-15)
    z32 = z.astype(jnp.float32)
    for block, gate in zip(fused._gate_blocks(fused._gates_as_one(z32)), jaxrnn.lstm_gates(z32)):
        np.testing.assert_allclose(block, gate, rtol=1e-6, atol=2e-7)


@pytest.mark.parametrize(
    "hidden, batch, transposed",
    [(6, (), True), pytest.param(6, (1,), True, marks=SLOW), pytest.param(8, (), False, marks=SLOW), (6, (2,), False)],
)
@pytest.mark.parametrize("layout", ["xla_cpu", "portable"])
def test_each_layout_equals_the_plain_lstm(x64, hidden, batch, transposed, layout):
    """Both layouts (what a CPU compiles, what every other backend compiles) give the plain path's loss and
    gradients; in the CPU one, batch 1 with H not a multiple of 8 reads a copy of Whh^T (ids, float64)."""
    chosen = {"xla_cpu": fused._XLA_CPU, "portable": fused._PORTABLE}[layout]
    _, recurrence_ids = fused._make_recurrences(lambda fn, *args: fn(chosen, *args))

    def fixed_layout_loss(params, carry, xs, ys):
        carry_T, hs = recurrence_ids(params.Wxh, params.Whh, params.bh, carry, xs)
        return jaxrnn.softmax_cross_entropy(jaxrnn.readout(params, hs), ys), carry_T

    k = jax.random.split(jax.random.PRNGKey(3), 4)
    params = jaxrnn.init_lstm(k[0], V, hidden, V, dtype=jnp.float64)
    params = params._replace(Whh=params.Whh + 0.5 * jax.random.normal(k[1], params.Whh.shape, jnp.float64))
    carry = jax.tree.map(lambda a: a + 0.3, jaxrnn.initial_carry(params, batch))
    xs, ys = (jax.random.randint(kk, (T, *batch), 0, V) for kk in k[2:])
    rows = int(np.prod(batch))
    assert fused._reads_transposed(chosen, 4 * hidden, hidden, rows) is (transposed and layout == "xla_cpu")
    plain = _value_and_grads(jaxrnn.sequence_loss, params, carry, xs, ys)
    quick = _value_and_grads(fixed_layout_loss, params, carry, xs, ys)
    assert float(jnp.abs(quick[1][0].Whh).max()) > 1e-2
    for a, b in zip(jax.tree.leaves(quick), jax.tree.leaves(plain)):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-13)


def test_fused_train_step_equals_plain_and_is_traced_once(x64):
    params, carry, xs, ys = _problem("rnn", (), jnp.float64)
    optimizer = jaxrnn.lecture_optimizer(0.1)
    opt_state = optimizer.init(params)
    plain = jaxrnn.make_train_step(optimizer)(params, opt_state, carry, xs, ys)

    @chex.assert_max_traces(n=1)
    def counting_loss(p, c, x, y, mask=None):
        return fused_loss(p, c, x, y, mask=mask)

    fused_step = jaxrnn.make_train_step(optimizer, loss_fn=counting_loss)
    out = fused_step(params, opt_state, carry, xs, ys)
    fused_step(out[0], out[1], out[2], xs, ys)  # second call: no new trace (assert_max_traces would raise)
    assert _max_rel(out, plain) <= 1e-10


def test_updates_per_call_equal_repeated_steps(x64):
    params, carry, _, _ = _problem("lstm", (2,), jnp.float64)
    chunks = jax.random.randint(jax.random.PRNGKey(5), (3, T + 1, 2), 0, V)
    xs, ys = chunks[:, :-1], chunks[:, 1:]
    optimizer = optax.adam(1e-2)
    step = jaxrnn.make_train_step(optimizer, method="fused")
    state = (params, optimizer.init(params), carry)
    losses = []
    for n in range(3):
        *state, loss = step(*state, xs[n], ys[n])
        losses.append(loss)
    out = jaxrnn.make_train_step(optimizer, method="fused", updates_per_call=3)(
        params, optimizer.init(params), carry, xs, ys
    )
    assert _max_rel(out[0], state[0]) <= 1e-12
    np.testing.assert_allclose(out[3], losses, rtol=1e-12)


@pytest.mark.parametrize(
    "method, updates_per_call",
    [pytest.param("scan", 1, marks=SLOW), pytest.param("fused", 1, marks=SLOW), ("fused", 2)],
)
def test_donated_step_gives_the_same_numbers_and_consumes_only_params_and_opt_state(method, updates_per_call):
    params, carry, xs, ys = _problem("lstm", (2,), jnp.float32)
    if updates_per_call == 2:
        xs, ys = jnp.stack([xs, xs[::-1]]), jnp.stack([ys, ys[::-1]])
    make = functools.partial(jaxrnn.make_train_step, method=method, updates_per_call=updates_per_call)
    optimizer = optax.adam(1e-2)
    kept = make(optimizer)(params, optimizer.init(params), carry, xs, ys)
    mine = jax.tree.map(jnp.copy, params)
    opt_state = optimizer.init(mine)
    donated = make(optimizer, donate=True)(mine, opt_state, carry, xs, ys)
    for a, b in zip(jax.tree.leaves(kept), jax.tree.leaves(donated)):
        np.testing.assert_array_equal(a, b)
    assert all(leaf.is_deleted() for leaf in jax.tree.leaves((mine, opt_state)))
    assert not any(leaf.is_deleted() for leaf in jax.tree.leaves((params, carry, xs, ys)))


@pytest.mark.parametrize(
    "reduction, method",
    [pytest.param("sum", "scan", marks=SLOW), pytest.param("mean", "scan", marks=SLOW), ("mean", "fused")],
)
def test_segmented_loss_equals_plain(x64, reduction, method):
    params, carry, xs, ys = _problem("lstm", (3,), jnp.float64)
    plain = _value_and_grads(jaxrnn.sequence_loss, params, carry, xs, ys, reduction=reduction)
    seg = _value_and_grads(
        jaxrnn.sequence_loss, params, carry, xs, ys, segment_length=4, reduction=reduction, method=method
    )
    for a, b in zip(jax.tree.leaves(seg), jax.tree.leaves(plain)):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-13)


def test_bad_inputs_give_clear_errors():
    params, carry, xs, ys = _problem("lstm", (3,), jnp.float32)
    with pytest.raises(TypeError, match="does not match"):
        fused_loss(params, carry.h, xs, ys)
    with pytest.raises(ValueError, match=r"xs \(8, 3\) int32 do not fit the carry's batch shape \(2,\)"):
        fused_loss(params, jaxrnn.initial_carry(params, (2,)), xs, ys)
    with pytest.raises(ValueError, match="segment_length"):
        jaxrnn.sequence_loss(params, carry, xs, ys, segment_length=3)
    with pytest.raises(ValueError, match="takes no mask"):
        jaxrnn.unroll(jaxrnn.lstm_step, params, carry, xs, method="fused", remat=True)
    with pytest.raises(ValueError, match="registered step"):
        jaxrnn.unroll(jaxrnn.mask_step(jaxrnn.lstm_step), params, carry, xs, method="fused")


def test_out_of_range_ids_are_refused_or_nan_on_every_path():
    """An id outside [0, V), negative ones included, is a ValueError where its value is known; under jit it makes
    the loss and every entry of every gradient NaN, on the plain and the fused path alike (never a finite loss
    with finite gradients, never another id's row)."""
    W = jnp.arange(12.0).reshape(3, 4)  # E = 3, V = 4
    with pytest.raises(ValueError, match=r"embed: ids: token ids must lie in \[0, 4\).*found -1\.\.4"):
        jaxrnn.embed(W, jnp.array([0, 3, -1, 4]))
    rows = jax.jit(jaxrnn.embed)(W, jnp.array([0, 3, -1, 4, -5]))
    np.testing.assert_array_equal(rows[:2], [[0, 4, 8], [3, 7, 11]])
    assert bool(jnp.isnan(rows[2:]).all())  # -1 is not row V - 1
    params, carry, xs, ys = _problem("lstm", (3,), jnp.float32)
    for bad in (V, -1, -V - 1):
        xs_bad = xs.at[4, 1].set(bad)
        for loss_fn in (jaxrnn.sequence_loss, fused_loss):
            with pytest.raises(ValueError, match=f"xs: token ids must lie in \\[0, {V}\\)"):
                loss_fn(params, carry, xs_bad, ys)
            loss, grads = jax.jit(jax.value_and_grad(lambda p, x: loss_fn(p, carry, x, ys)[0]))(params, xs_bad)
            assert bool(jnp.isnan(loss)), (loss_fn, bad)
            for leaf in jax.tree.leaves(grads):
                assert bool(jnp.isnan(leaf).all()), (loss_fn, bad)
