"""Stacks: one stack step equals the layers unrolled one after another; the core helpers take a stack as is."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jaxrnn
from jaxrnn.stack import init_stack, stack_step
from jaxrnn.unrolling import unroll

V, T, B = 9, 7, 3


def _data(seed=0):
    kx, ky = jax.random.split(jax.random.key(seed))
    return jax.random.randint(kx, (T, B), 0, V), jax.random.randint(ky, (T, B), 0, V)


def _layer_by_layer_loss(params, carry, xs, targets):
    """Unroll layer 0 over the ids, layer 1 over layer 0's hs, ...; read out the top. Independent of stack_step."""
    hs, carry_T = xs, []
    for layer, c in zip(params.layers, carry):
        c, hs = unroll(jaxrnn.step_for(layer), layer, c, hs)
        carry_T.append(c)
    loss = jaxrnn.softmax_cross_entropy(hs @ params.Why.T + params.by, targets)
    return loss, tuple(carry_T)


def test_stack_equals_layer_by_layer_values_and_gradients(x64):
    params = init_stack(jax.random.key(0), V, (6, 5, 4), V, cell=("lstm", "gru", "rnn"), dtype=jnp.float64)
    params = jax.tree.map(lambda a: a + 0.1, params)  # non-zero biases
    carry = jax.tree.map(lambda z: z + 0.2, jaxrnn.initial_carry(params, (B,)))
    xs, targets = _data()
    (l1, c1), g1 = jax.jit(jax.value_and_grad(jaxrnn.sequence_loss, argnums=(0, 1), has_aux=True))(
        params, carry, xs, targets
    )
    (l2, c2), g2 = jax.jit(jax.value_and_grad(_layer_by_layer_loss, argnums=(0, 1), has_aux=True))(
        params, carry, xs, targets
    )
    assert abs(float(l1 - l2)) <= 1e-13 * abs(float(l2))
    for a, b in zip(jax.tree.leaves((c1, g1)), jax.tree.leaves((c2, g2))):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)
    assert float(jnp.abs(g1[0].layers[0].Whh).max()) > 1e-4  # the bottom layer gets a gradient


def test_one_layer_stack_equals_the_plain_cell():
    stack = init_stack(jax.random.key(1), V, (8,), V, cell="gru")
    plain = stack.layers[0]._replace(Why=stack.Why, by=stack.by)
    xs, targets = _data(1)
    l_stack, c_stack = jaxrnn.sequence_loss(stack, jaxrnn.initial_carry(stack, (B,)), xs, targets)
    l_plain, c_plain = jaxrnn.sequence_loss(plain, jaxrnn.initial_carry(plain, (B,)), xs, targets)
    np.testing.assert_allclose(l_stack, l_plain, rtol=1e-6)
    np.testing.assert_allclose(c_stack[0], c_plain, rtol=1e-6, atol=1e-7)


def test_stack_trains_and_samples_with_the_core_helpers():
    params = init_stack(jax.random.key(2), V, (16, 16), V, cell="lstm")
    xs, targets = _data(2)
    train_step = jaxrnn.make_train_step(optax.adam(1e-2))
    opt_state = optax.adam(1e-2).init(params)
    carry0 = jaxrnn.initial_carry(params, (B,))
    losses = []
    for _ in range(30):
        params, opt_state, _, loss = train_step(params, opt_state, carry0, xs, targets)
        losses.append(float(loss))
    assert losses[-1] < 0.5 * losses[0]  # memorising one small batch
    ids, carry = jaxrnn.sample(jax.random.key(0), params, carry0, xs[0], 5)
    assert ids.shape == (5, B) and int(ids.min()) >= 0 and int(ids.max()) < V
    assert carry[1].h.shape == (B, 16)


def test_stack_step_is_not_retraced():
    params = init_stack(jax.random.key(3), V, (4, 4), V, cell="rnn")
    step = jax.jit(chex.assert_max_traces(stack_step, n=1))
    carry = jaxrnn.initial_carry(params, (B,))
    carry, _ = step(params, carry, jnp.zeros(B, jnp.int32))
    carry, h = step(params, carry, jnp.ones(B, jnp.int32))
    assert h.shape == (B, 4)


def test_bad_stacks_fail_with_one_clear_line():
    with pytest.raises(ValueError, match="one of"):
        init_stack(jax.random.key(0), V, (4, 4), V, cell=("lstm",))
    with pytest.raises(ValueError, match="at least one layer"):
        init_stack(jax.random.key(0), V, (), V)
    params = init_stack(jax.random.key(0), V, (4, 4), V)
    with pytest.raises(TypeError, match="tuple of 2 per-layer carries"):
        stack_step(params, jnp.zeros((B, 4)), jnp.zeros(B, jnp.int32))
    with pytest.raises(TypeError, match="StackParams"):
        stack_step(params.layers[0], (), jnp.zeros(B, jnp.int32))


def test_a_stack_layer_has_no_readout_and_every_transformation_passes_over_it():
    """A layer's ``Why``/``by`` are ``None`` (empty pytree nodes): ``jax.tree.map``, ``jit``, ``grad`` and optax
    keep them ``None``, and reading a layer out is a one-line error."""
    params = init_stack(jax.random.key(4), V, (5, 6), V, cell=("gru", "lstm"), embed_size=3)
    assert all(layer.Why is None and layer.by is None for layer in params.layers)
    assert params.Why.shape == (V, 6) and params.by.shape == (V,)
    n_leaves = 4 + 3 + 2  # GRU: Wxh, Whh, bh, bhn; LSTM: Wxh, Whh, bh; the readout
    assert len(jax.tree.leaves(params)) == n_leaves + 1  # and the embedding
    doubled = jax.jit(lambda p: jax.tree.map(lambda a: 2 * a, p))(params)
    assert doubled.layers[1].Why is None
    np.testing.assert_array_equal(doubled.layers[1].Whh, 2 * params.layers[1].Whh)
    xs, targets = _data(4)
    grads = jax.grad(lambda p: jaxrnn.sequence_loss(p, jaxrnn.initial_carry(p, (B,)), xs, targets)[0])(params)
    assert grads.layers[0].Why is None and float(jnp.abs(grads.layers[0].Whh).max()) > 0
    optimizer = optax.adamw(1e-2)
    state = optimizer.init(params)
    updates, _ = optimizer.update(grads, state, params)
    assert state[0].mu.layers[0].by is None and updates.layers[1].Why is None
    with pytest.raises(ValueError, match="have no readout") as e:
        jaxrnn.cells.readout(params.layers[0], jnp.zeros((B, 5)))
    assert "\n" not in str(e.value)


def test_a_stack_s_layers_are_drawn_as_lone_cells():
    """Layer l is ``init`` of its cell with ``split(key)[l]`` (less its readout); the stack's readout is the top
    layer's."""
    key = jax.random.key(5)
    params = init_stack(key, V, (4, 3), V, cell="rnn", init="lecture")
    k0, k1 = jax.random.split(key, 2)
    lone0, lone1 = jaxrnn.init_rnn(k0, V, 4, V, init="lecture"), jaxrnn.init_rnn(k1, 4, 3, V, init="lecture")
    np.testing.assert_array_equal(params.layers[0].Wxh, lone0.Wxh)
    np.testing.assert_array_equal(params.layers[1].Whh, lone1.Whh)
    np.testing.assert_array_equal(params.Why, lone1.Why)


@pytest.mark.parametrize("cell", ["lstm", "rnn"])
def test_the_fused_path_folds_the_embedding_and_computes_the_same_model(x64, cell):
    """T B = 21 >= V = 9 ids: the fused path looks layer 0's input term up in ``Wxh @ embedding``."""
    params = init_stack(jax.random.key(1), V, (6, 5), V, cell=cell, embed_size=4, dtype=jnp.float64)
    carry = jaxrnn.initial_carry(params, (B,))
    xs, targets = _data(1)
    grad = lambda method: jax.jit(
        jax.value_and_grad(lambda p: jaxrnn.sequence_loss(p, carry, xs, targets, method=method)[0])
    )(params)
    (l_fused, g_fused), (l_scan, g_scan) = grad("fused"), grad("scan")
    assert abs(float(l_fused - l_scan)) <= 1e-13 * abs(float(l_scan))
    for a, b in zip(jax.tree.leaves(g_fused), jax.tree.leaves(g_scan)):
        np.testing.assert_allclose(a, b, rtol=1e-11, atol=1e-14)
    assert float(jnp.abs(g_fused.embedding).max()) > 1e-4  # the gradient reaches the folded embedding
    folded = jaxrnn.stack.fold_embedding(params)
    assert folded.embedding is None and folded.layers[0].Wxh.shape == (params.layers[0].Wxh.shape[0], V)
    hs = jaxrnn.unroll(jaxrnn.stack_step, folded, carry, xs, method="scan")[1]
    np.testing.assert_allclose(hs, jaxrnn.unroll(jaxrnn.stack_step, params, carry, xs, method="scan")[1], rtol=1e-12)
    hlo = jax.jit(lambda p: jaxrnn.unroll(jaxrnn.stack_step, p, carry, xs, method="fused")[1]).lower(params).as_text()
    assert "dot_general" in hlo and f"tensor<{params.layers[0].Wxh.shape[0]}x{V}xf64>" in hlo  # the folded table
