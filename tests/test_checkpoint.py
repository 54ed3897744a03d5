"""Checkpoints: exact round trip, keep-last-N-and-best, unreadable and unwritable directories."""

import os

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxrnn.checkpoint import CheckpointError, CheckpointStore
from jaxrnn.lm import ModelConfig, init_train_state


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
