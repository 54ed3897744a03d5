"""Checkpoints: exact round trip, keep-last-N-and-best, unreadable and unwritable directories; plain orbax saves
every parameter pytree jaxrnn makes; checkpoints of jaxrnn 0.3 still restore."""

import os

import jax
import jax.numpy as jnp
import numpy as np
import optax
import orbax.checkpoint as ocp
import pytest
from flax import nnx

import jaxrnn
from jaxrnn.checkpoint import CheckpointError, CheckpointStore
from jaxrnn.data import Vocabulary
from jaxrnn.flax_modules import NnxCell
from jaxrnn.lm import ModelConfig, RunConfig, generate_text, init_train_state, load_model

RUN_0_3 = os.path.join(os.path.dirname(__file__), "data", "jaxrnn_0_3_run")


def _state(seed=0):
    return init_train_state(jax.random.PRNGKey(seed), ModelConfig(5, hidden_size=4, layers=2), optax.adam(1e-3), 2)


def test_round_trip_is_bitwise_and_keeps_the_pytree_types(tmp_path):
    state = _state()
    state = state._replace(carry=jax.tree.map(lambda z: z + 0.5, state.carry), step=jnp.asarray(7, jnp.int32))
    store = CheckpointStore(tmp_path / "ck")
    store.save(7, state, {"vocabulary": "abcde"}, val_loss=1.5)
    back = store.restore(7, _state(seed=1))
    assert type(back) is type(state) and type(back.params) is type(state.params)
    assert jax.tree.structure(back) == jax.tree.structure(state)
    for a, b in zip(jax.tree.leaves(state), jax.tree.leaves(back)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    meta = store.read_meta(7)
    assert meta["vocabulary"] == "abcde" and meta["step"] == 7 and meta["val_loss"] == 1.5


def test_keeps_the_last_n_and_the_best(tmp_path):
    store = CheckpointStore(tmp_path / "ck", keep_last=2)
    state = _state()
    for step, val in [(1, 3.0), (2, 1.0), (3, 2.0), (4, 2.5), (5, 2.7)]:
        store.save(step, state, {}, val_loss=val)
    assert store.steps() == [2, 4, 5] and store.best_step() == 2 and store.latest_step() == 5
    leftovers = [p for p in os.listdir(tmp_path / "ck") if not p.isdigit()]
    assert not [p for p in leftovers if "tmp" in p]  # every write was committed by a rename


def test_corrupt_checkpoint_is_a_one_line_error(tmp_path):
    store = CheckpointStore(tmp_path / "ck")
    store.save(3, _state(), {}, val_loss=1.0)
    for root, _, files in os.walk(tmp_path / "ck" / "3" / "state"):
        for name in files:
            with open(os.path.join(root, name), "wb") as f:
                f.write(b"garbage")
    with open(tmp_path / "ck" / "3" / "meta" / "metadata", "w") as f:
        f.write("{not json")
    with pytest.raises(CheckpointError, match=r"checkpoint .*3 is unreadable") as e:
        CheckpointStore(tmp_path / "ck").restore(3, _state())
    assert "\n" not in str(e.value)
    with pytest.raises(CheckpointError, match="unreadable"):
        CheckpointStore(tmp_path / "ck").read_meta(3)


def test_unwritable_directory_is_refused_before_training(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    with pytest.raises(CheckpointError, match="cannot write checkpoints to .*a_file"):
        CheckpointStore(blocker / "ck")
    with pytest.raises(CheckpointError, match="not a directory"):
        CheckpointStore(tmp_path / "missing", create=False)


def _assert_same_tree(a, b):
    assert type(a) is type(b) and jax.tree.structure(a) == jax.tree.structure(b)
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        assert np.asarray(x).dtype == np.asarray(y).dtype
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


PYTREES = {
    "rnn": lambda k: jaxrnn.init_rnn(k, 3, 4, 5),
    "lstm": lambda k: jaxrnn.init_lstm(k, 3, 4, 5),
    "gru": lambda k: jaxrnn.init_gru(k, 3, 4, 5),
    "stack": lambda k: jaxrnn.init_stack(k, 3, (4, 6), 5, cell=("lstm", "gru")),
    "stack_embedded": lambda k: jaxrnn.init_stack(k, 7, (4,), 7, cell="rnn", embed_size=2),
    "nnx_cell": lambda k: NnxCell(3, 4, cell="gru", rngs=nnx.Rngs(params=k)).cell_params(),
}


@pytest.mark.parametrize("what", PYTREES)
def test_plain_orbax_saves_and_restores_every_parameter_pytree(tmp_path, what):
    """``orbax.checkpoint.StandardCheckpointer`` takes jaxrnn's pytrees as they are: the stack layers' and the
    nnx cell's missing readouts are ``None``, not arrays of size zero (which orbax refuses)."""
    params = PYTREES[what](jax.random.key(0))
    params = jax.tree.map(lambda a: a + 0.25, params)  # biases off zero
    checkpointer = ocp.StandardCheckpointer()
    checkpointer.save(tmp_path / "ck", params)
    checkpointer.wait_until_finished()
    template = jax.tree.map(ocp.utils.to_shape_dtype_struct, PYTREES[what](jax.random.key(1)))
    _assert_same_tree(checkpointer.restore(tmp_path / "ck", template), params)
    checkpointer.close()


def _in_0_3_spelling(params):
    """A stack's layers as jaxrnn 0.3 held them: no readout spelled ``Why (0, H)``, ``by (0,)``."""
    empty = lambda layer: layer._replace(
        Why=jnp.zeros((0, layer.Whh.shape[1]), layer.Whh.dtype), by=jnp.zeros((0,), layer.Whh.dtype)
    )
    return params._replace(layers=tuple(empty(layer) for layer in params.layers))


def test_a_state_in_0_3_spelling_saves_and_restores_into_today_s_template(tmp_path):
    """A training state whose layers spell "no readout" as zero-size arrays (0.3's parameters and Adam moments)
    saves as 0.3 saved it and restores into today's template (``Why = by = None``), equal leaf for leaf."""
    optimizer = optax.adam(1e-3)
    today = _state()
    old_params = _in_0_3_spelling(jax.tree.map(lambda a: a + 0.5, today.params))
    old = today._replace(params=old_params, opt_state=optimizer.init(old_params), step=jnp.asarray(3, jnp.int32))
    assert old.opt_state[0].mu.layers[0].Why.shape == (0, 4)
    store = CheckpointStore(tmp_path / "ck")
    store.save(3, old, {}, val_loss=1.0)
    back = store.restore(3, _state(seed=1))
    assert back.params.layers[1].Why is None and back.opt_state[0].nu.layers[0].by is None
    assert jax.tree.structure(back) == jax.tree.structure(today)
    old_leaves = [leaf for leaf in jax.tree.leaves(old) if np.size(leaf)]  # today, the zero-size ones are None
    assert len(jax.tree.leaves(back)) == len(old_leaves)
    for a, b in zip(jax.tree.leaves(back), old_leaves):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert int(back.step) == 3
    # a template still in 0.3's spelling gets its own structure back
    again = store.restore(3, old)
    assert again.params.layers[0].Why.shape == (0, 4)
    _assert_same_tree(jax.tree.map(np.asarray, again), jax.tree.map(np.asarray, old))


def test_a_checkpoint_written_by_jaxrnn_0_3_loads_samples_and_restores_for_resuming():
    """``tests/data/jaxrnn_0_3_run`` was written by jaxrnn 0.3.0 (``jaxrnn train --cell gru --layers 2
    --embed-size 4 --hidden 8``, 4 steps); its parameter sums and greedy sample after "the " are 0.3's own."""
    params, vocab, meta = load_model(RUN_0_3)
    assert meta["format"] == 2 and vocab.size == 40 and params.embedding.shape == (4, 40)
    assert all(layer.Why is None and layer.by is None for layer in params.layers)
    sums = [  # sum |w| in float64, as 0.3 loaded them
        (params.layers[0].Whh, 56.518621527124196),
        (params.layers[1].Wxh, 53.703572186117526),
        (params.layers[1].bhn, 0.04452476743608713),
        (params.Why, 91.05574442609213),
        (params.embedding, 128.77404909394681),
    ]
    for leaf, value in sums:
        assert float(np.abs(np.asarray(leaf, np.float64)).sum()) == pytest.approx(value, rel=1e-12)
    text = "".join(generate_text(params, vocab, prime="the ", length=40, temperature=0.0))
    assert text == "zzzzzzzzxzxzxzxxzxxzxxzxxzxxzxxzxxzxxzxx"

    config = RunConfig.from_saved(meta["config"])  # what --resume restores: the whole training state
    template = init_train_state(
        jax.random.PRNGKey(1), config.model(vocab.size), config.make_optimizer(), config.batch_size
    )
    store = CheckpointStore(os.path.join(RUN_0_3, "checkpoints"), create=False)
    state = store.restore(4, template)
    store.close()
    assert int(state.step) == 4 and jax.tree.structure(state) == jax.tree.structure(template)
    _assert_same_tree(state.params, params)
    assert Vocabulary(tuple(meta["vocabulary"])).size == vocab.size
