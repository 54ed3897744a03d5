"""The character model: the fused unroll equals the core steps, truncated BPTT carries state but not gradients,
K updates in one call equal K single updates, evaluation, and sampling."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jaxrnn
from jaxrnn.data import DataError, Vocabulary
from jaxrnn import lm
from jaxrnn.lm import (
    ConfigError,
    ModelConfig,
    evaluate,
    generate_text,
    init_model,
    init_train_state,
    make_train_chunks,
    place_batch,
    warm_up,
)
from jaxrnn.losses import sequence_loss
from jaxrnn.sampling import sample
from jaxrnn.training import reset_carry

V, T, B = 7, 5, 3


def _ids(key, shape):
    return jax.random.randint(jax.random.PRNGKey(key), shape, 0, V)


def _rel(a, b):
    if a.size == 0:  # a stack layer's empty readout
        return 0.0
    return float(jnp.max(jnp.abs(a - b)) / max(float(jnp.max(jnp.abs(a)) + jnp.max(jnp.abs(b))), 1e-30))


@pytest.mark.parametrize(
    "cell,layers,embed",
    [("lstm", 2, 4), ("rnn", 2, 0), pytest.param("lstm", 1, 0, marks=pytest.mark.slow), ("gru", 2, 3)],
)
def test_fused_layers_equal_core_steps(x64, cell, layers, embed):
    """The model's loss (layer by layer, method="fused": jaxrnn.recurrence, or recurrence_ids for one-hot ids at
    embed 0; lax.scan for the GRU) == stack_step (the core steps, one time step at a time), values and
    gradients, in float64."""
    params = init_model(
        jax.random.PRNGKey(0),
        ModelConfig(V, cell=cell, hidden_size=6, layers=layers, embed_size=embed),
        dtype=jnp.float64,
    )
    carry = jax.tree.map(lambda z: z + 0.1, jaxrnn.initial_carry(params, (B,)))
    xs, ys = _ids(1, (T, B)), _ids(2, (T, B))
    fast = lambda p: lm.loss(p, carry, xs, ys)
    plain = lambda p: sequence_loss(p, carry, xs, ys, reduction="mean")  # scans the registered stack_step
    (l1, c1), g1 = jax.value_and_grad(fast, has_aux=True)(params)
    (l2, c2), g2 = jax.value_and_grad(plain, has_aux=True)(params)
    assert abs(float(l1 - l2)) < 1e-12
    assert max(jax.tree.leaves(jax.tree.map(_rel, c1, c2))) < 1e-12
    assert max(jax.tree.leaves(jax.tree.map(_rel, g1, g2))) < 1e-10


def _chunks(params):
    x1, y1, x2, y2 = _ids(3, (T, B)), _ids(4, (T, B)), _ids(5, (T, B)), _ids(6, (T, B))
    return x1, y1, x2, y2


def test_carried_state_changes_the_loss_but_no_gradient_reaches_the_previous_chunk(x64):
    """The loss of chunk 2 depends on the state chunk 1 left; the update's gradient equals the gradient
    with that state held constant, and differs from full backpropagation through both chunks."""
    params = init_model(jax.random.PRNGKey(0), ModelConfig(V, hidden_size=6), dtype=jnp.float64)
    x1, y1, x2, y2 = _chunks(params)
    zero = jaxrnn.initial_carry(params, (B,))
    _, carry1 = lm.loss(params, zero, x1, y1)
    loss_carried, _ = lm.loss(params, carry1, x2, y2)
    loss_fresh, _ = lm.loss(params, zero, x2, y2)
    assert abs(float(loss_carried - loss_fresh)) > 1e-3  # the state really is carried into the loss
    d_loss_d_carry = jax.grad(lambda c: lm.loss(params, c, x2, y2)[0])(carry1)
    assert float(jnp.abs(d_loss_d_carry[0].h).max()) > 1e-4  # ... and the loss is sensitive to it

    # One update with SGD at learning rate 1 returns params - grad: read the gradient it used.
    update = make_train_chunks(optax.sgd(1.0), 1)
    state = init_train_state(jax.random.PRNGKey(0), ModelConfig(V, hidden_size=6), optax.sgd(1.0), B)
    state = state._replace(params=params, carry=carry1)
    new_state, loss = update(state, x2[None], y2[None], jnp.zeros((1, B), bool), jnp.ones((1,), bool))
    loss = loss[0]
    used = jax.tree.map(lambda a, b: a - b, params, new_state.params)
    truncated = jax.grad(lambda p: lm.loss(p, carry1, x2, y2)[0])(params)
    full = jax.grad(lambda p: lm.loss(p, lm.loss(p, zero, x1, y1)[1], x2, y2)[0])(params)
    assert abs(float(loss - loss_carried)) < 1e-12
    assert max(jax.tree.leaves(jax.tree.map(_rel, used, truncated))) < 1e-10
    assert _rel(full.layers[0].Whh, truncated.layers[0].Whh) > 1e-4  # BPTT through chunk 1 would differ
    assert max(jax.tree.leaves(jax.tree.map(_rel, new_state.carry, lm.loss(params, carry1, x2, y2)[1]))) < 1e-12


def test_reset_zeroes_only_wrapped_streams():
    params = init_model(jax.random.PRNGKey(0), ModelConfig(V, hidden_size=4, layers=2))
    carry = jax.tree.map(lambda z: z + 1.0, jaxrnn.initial_carry(params, (B,)))
    out = reset_carry(carry, jnp.array([False, True, False]))
    for leaf in jax.tree.leaves(out):
        np.testing.assert_array_equal(leaf[:, 0], [1, 0, 1])


def test_k_updates_in_one_call_equal_k_single_updates_and_inactive_steps_are_skipped():
    config = ModelConfig(V, hidden_size=8, layers=2, dropout=0.25)
    opt = optax.adam(1e-2)
    state = init_train_state(jax.random.PRNGKey(0), config, opt, B)
    K = 4
    xs, ys = _ids(7, (K, T, B)), _ids(8, (K, T, B))
    reset = jnp.zeros((K, B), bool).at[2].set(True)
    update = make_train_chunks(opt, 1, dropout=0.25)
    single = state
    for k in range(3):
        single, _ = update(single, xs[k : k + 1], ys[k : k + 1], reset[k : k + 1], jnp.ones((1,), bool))
    train_chunks = make_train_chunks(opt, K, dropout=0.25)
    many, losses = train_chunks(state, xs, ys, reset, jnp.array([True, True, True, False]))
    assert int(many.step) == 3 and float(losses[3]) == 0.0
    assert max(jax.tree.leaves(jax.tree.map(_rel, many.params, single.params))) < 1e-6
    train_chunks(many, xs, ys, reset, jnp.array([True, False, False, False]))
    assert train_chunks._cache_size() == 1  # one compiled function for full and partial calls: no re-tracing


def test_evaluate_carries_state_through_the_held_out_stream():
    params = init_model(jax.random.PRNGKey(0), ModelConfig(V, hidden_size=8))
    xs, ys = _ids(9, (3, T, B)), _ids(10, (3, T, B))
    carry, losses = jaxrnn.initial_carry(params, (B,)), []
    for c in range(3):
        loss, carry = lm.loss(params, carry, xs[c], ys[c])
        losses.append(loss)
    assert abs(float(evaluate(params, xs, ys)) - float(np.mean(losses))) < 1e-6
    xs_b, ys_b = place_batch((xs, ys))
    assert float(evaluate(params, xs_b, ys_b)) == float(evaluate(params, xs, ys))


def test_bad_model_config_is_a_one_line_error():
    with pytest.raises(ConfigError, match="^hidden_size must be a positive integer, got 0$"):
        ModelConfig(V, hidden_size=0)
    with pytest.raises(ConfigError, match="unknown value 'tanh'"):
        ModelConfig(V, cell="tanh")
    with pytest.raises(ConfigError, match="needs 2 or more layers"):
        ModelConfig(V, dropout=0.5)


# --- sampling ---

VOCAB = Vocabulary(tuple("\nabcdef"))


@pytest.fixture(scope="module")
def lm_params():
    return init_model(jax.random.PRNGKey(3), ModelConfig(VOCAB.size, hidden_size=16, layers=2, embed_size=5))


def test_same_seed_same_text_and_longer_sample_extends_shorter(lm_params):
    text = lambda **kw: "".join(generate_text(lm_params, VOCAB, prime="ab", **kw))
    a, b = text(length=40, seed=1), text(length=40, seed=1)
    assert a == b and len(a) == 40
    assert text(length=40, seed=2) != a
    assert text(length=70, seed=1).startswith(a)


def test_temperature_zero_is_greedy_argmax(lm_params):
    carry, x = warm_up(lm_params, VOCAB.encode("ab"))
    expected = []
    c, xt = carry, x
    for _ in range(25):  # greedy decoding written out with the one-character step
        c, h = jaxrnn.stack_step(lm_params, c, xt)
        xt = jnp.argmax(h @ lm_params.Why.T + lm_params.by)
        expected.append(int(xt))
    ids0, _ = sample(jax.random.PRNGKey(0), lm_params, carry, x, 25, temperature=0.0)
    ids_cold, _ = sample(jax.random.PRNGKey(1), lm_params, carry, x, 25, temperature=1e-4)
    assert np.asarray(ids0).tolist() == expected
    assert np.asarray(ids_cold).tolist() == expected  # the limit temperature -> 0
    assert "".join(generate_text(lm_params, VOCAB, prime="ab", length=25, temperature=0.0)) == VOCAB.decode(expected)


def test_priming_text_changes_the_state_and_unknown_characters_are_an_error(lm_params):
    c_ab, _ = warm_up(lm_params, VOCAB.encode("ab"))
    c_fb, _ = warm_up(lm_params, VOCAB.encode("fb"))
    zero = jaxrnn.initial_carry(lm_params)
    assert float(jnp.abs(c_ab[0].h - zero[0].h).max()) > 1e-3
    assert float(jnp.abs(c_ab[1].h - c_fb[1].h).max()) > 1e-4  # same last character, different history
    with pytest.raises(DataError, match="characters not in the vocabulary: 'z'"):
        next(generate_text(lm_params, VOCAB, prime="abz", length=5))


def test_cell_names_come_from_the_cell_table_once():
    from typing import get_args

    from jaxrnn import registry
    from jaxrnn.lm import CELLS
    from jaxrnn.typing import CellName

    assert CELLS is registry.CELL_NAMES and get_args(CellName) == CELLS == ("rnn", "lstm", "gru")
    with pytest.raises(ConfigError, match="^cell: unknown value 'tanh'; choose one of: rnn, lstm, gru$"):
        lm.RunConfig(cell="tanh").resolved()  # type: ignore[arg-type]
