"""The one table from parameter type to step, zero state and name; a cell of one's own plugs in with one call."""

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jaxrnn
from jaxrnn import cells, registry


class LeakyParams(NamedTuple):
    Wxh: jax.Array
    Whh: jax.Array
    Why: jax.Array
    bh: jax.Array
    by: jax.Array


def leaky_step(params, h, x):
    """A leaky-integrator RNN: ``h_t = (1 - a) h_{t-1} + a tanh(Wxh x + Whh h + bh)`` with ``a = 0.5``."""
    h = 0.5 * h + 0.5 * jnp.tanh(cells.input_projection(params.Wxh, x) + h @ params.Whh.T + params.bh)
    return h, h


def init_leaky(key, input_size, hidden_size, output_size, *, init="default", dtype=jnp.float32):
    return LeakyParams(*cells.init_rnn(key, input_size, hidden_size, output_size, init=init, dtype=dtype))


LEAKY = jaxrnn.CellType("leaky", LeakyParams, leaky_step, cells.rnn_initial_carry, init_leaky)


@pytest.fixture(scope="module", autouse=True)
def leaky_registered():
    jaxrnn.register_cell(LEAKY)
    yield
    registry._by_name.pop("leaky")
    registry._by_type.pop(LeakyParams)


def test_built_in_cells_by_name_and_by_type():
    key = jax.random.key(0)
    for name, step in (("rnn", jaxrnn.rnn_step), ("lstm", jaxrnn.lstm_step), ("gru", jaxrnn.gru_step)):
        params = registry.cell_type(name).init(key, 3, 4, 2)
        assert jaxrnn.step_for(params) is step and registry.cell_name(params) == name
    lstm = jaxrnn.init_lstm(key, 3, 4, 2)
    carry = jaxrnn.initial_carry(lstm, (5,))
    assert isinstance(carry, jaxrnn.LSTMCarry) and carry.h.shape == carry.c.shape == (5, 4)
    stack = jaxrnn.init_stack(key, 3, (4, 6), 2, cell=("gru", "lstm"))
    assert jaxrnn.step_for(stack) is jaxrnn.stack_step and registry.cell_name(stack) == "stack"
    assert [np.shape(jax.tree.leaves(c)[0]) for c in jaxrnn.initial_carry(stack, (5,))] == [(5, 4), (5, 6)]


def test_a_registered_cell_unrolls_trains_stacks_and_samples_like_a_built_in_one():
    key = jax.random.key(1)
    params = init_leaky(key, 5, 4, 5)
    xs = jax.random.randint(key, (6, 2), 0, 5)
    carry = jaxrnn.initial_carry(params, (2,))
    _, hs = jaxrnn.unroll(jaxrnn.step_for(params), params, carry, xs)
    h, expected = carry, []
    for t in range(6):  # the leaky update written out
        h = 0.5 * h + 0.5 * np.tanh(np.asarray(params.Wxh).T[np.asarray(xs[t])] + h @ params.Whh.T + params.bh)
        expected.append(h)
    np.testing.assert_allclose(hs, np.stack(expected), rtol=1e-5, atol=1e-6)
    opt = optax.sgd(0.1)
    loss0 = jaxrnn.sequence_loss(params, carry, xs, xs)[0]
    step = jaxrnn.make_train_step(opt, method="fused")  # a cell with no fused recurrence is scanned
    p, s = params, opt.init(params)
    for _ in range(20):
        p, s, _, loss = step(p, s, carry, xs, xs)
    assert float(loss) < 0.9 * float(loss0)
    stack = jaxrnn.init_stack(key, 5, (4, 3), 5, cell=("leaky", "lstm"))
    assert isinstance(stack.layers[0], LeakyParams)
    ids, _ = jaxrnn.sample(key, stack, jaxrnn.initial_carry(stack), jnp.asarray(0), 7)
    assert ids.shape == (7,) and int(ids.max()) < 5


def test_unknown_and_conflicting_cells_are_one_clear_error():
    with pytest.raises(TypeError, match="no cell type registered for dict"):
        jaxrnn.step_for({"Whh": 0})
    with pytest.raises(ValueError, match="unknown cell 'tanh'"):
        registry.cell_type("tanh")
    with pytest.raises(ValueError, match="already registered for 'rnn'"):
        jaxrnn.register_cell(jaxrnn.CellType("rnn", LeakyParams, leaky_step, cells.rnn_initial_carry))
    with pytest.raises(ValueError, match="cell must be one of"):
        jaxrnn.init_stack(jax.random.key(0), 3, (4,), 2, cell="stack")
