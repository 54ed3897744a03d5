"""The synthetic tasks of the long-memory experiments (the adding problem, the copy task) and the many-to-one
model they train: unroll from the zero state, read out the last hidden state.

Shapes: ``T`` time, ``B`` batch. Inputs are time-major ``(T, B, ...)``.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

import jaxrnn


def adding_batch(key, T: int, B: int):
    """The adding problem: ``xs (T, B, 2)`` = (value in [0, 1], marker), target ``(B,)`` = sum of the two
    marked values (one marker in each half of the sequence). Predicting 1 always scores MSE 1/6."""
    k_v, k_a, k_b = jax.random.split(key, 3)
    values = jax.random.uniform(k_v, (T, B))
    half = max(T // 2, 1)
    first = jax.random.randint(k_a, (B,), 0, half)
    second = jax.random.randint(k_b, (B,), half, T)
    t = jnp.arange(T)[:, None]
    marks = ((t == first) | (t == second)).astype(values.dtype)
    return jnp.stack([values, marks], axis=-1), jnp.sum(values * marks, axis=0)


ADDING_BASELINE_MSE = 1.0 / 6.0
COPY_SYMBOLS, COPY_LENGTH = 8, 10
COPY_BLANK, COPY_GO = COPY_SYMBOLS, COPY_SYMBOLS + 1


def copy_batch(key, T: int, B: int):
    """The copy task: 10 symbols from 8, ``T - 1`` blanks, a go marker, 10 blanks; the targets are blanks
    until the last 10 steps, which must repeat the symbols. ``xs, targets (T + 20, B)`` integer ids."""
    symbols = jax.random.randint(key, (COPY_LENGTH, B), 0, COPY_SYMBOLS)
    blanks = lambda n: jnp.full((n, B), COPY_BLANK, symbols.dtype)
    go = jnp.full((1, B), COPY_GO, symbols.dtype)
    xs = jnp.concatenate([symbols, blanks(T - 1), go, blanks(COPY_LENGTH)])
    targets = jnp.concatenate([blanks(T + COPY_LENGTH), symbols])
    return xs, targets


def copy_baseline(T: int) -> float:
    """Mean cross-entropy (nats per step) of the memoryless answer: blanks right, uniform over the symbols."""
    return COPY_LENGTH * math.log(COPY_SYMBOLS) / (T + 2 * COPY_LENGTH)


def init_model(kind: str, key, input_size: int, hidden_size: int, output_size: int, **kwargs):
    """The library's initialiser for the cell named ``kind`` (``"rnn"``, ``"lstm"``, ``"gru"``): orthogonal
    ``Whh``; ``kwargs`` such as the LSTM's ``forget_bias`` go to it."""
    return jaxrnn.cell_type(kind).init(key, input_size, hidden_size, output_size, **kwargs)


def hidden(carry):
    """``h`` of an RNN state (the array itself) or of an ``LSTMCarry``."""
    return carry.h if isinstance(carry, jaxrnn.LSTMCarry) else carry


def final_readout(params, xs):
    """Many-to-one: unroll from the zero state and read out the last hidden state: ``(B, V)``."""
    carry = jaxrnn.initial_carry(params, xs.shape[1:2])
    carry_T, _ = jaxrnn.unroll(jaxrnn.step_for(params), params, carry, xs)
    return jaxrnn.readout(params, hidden(carry_T))
