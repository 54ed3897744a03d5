"""A user's program written against jaxrnn's documented signatures: mypy and pyright must accept every line.

``tests/test_typecheck.py`` type-checks this file (no errors allowed) and runs ``main()`` on its tiny sizes, so
it stays a program that works, not only one that type-checks. The work is done in a few jitted functions, as a
JAX program would do it; type checkers check the calls inside them like any other.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp

import jaxrnn
from jaxrnn.typing import Array, Carry, Method


class Models(NamedTuple):
    lstm: jaxrnn.LSTMParams
    rnn: jaxrnn.RNNParams
    gru: jaxrnn.GRUParams
    stack: jaxrnn.StackParams


@functools.partial(jax.jit, static_argnames=("vocab_size", "hidden_size"))
def init_models(key: Array, vocab_size: int, hidden_size: int) -> Models:
    """One model of each kind over ``vocab_size`` token ids; the stack is two GRU layers over an embedding. The
    cells beside the LSTM take min-char-rnn's small random weights, which compile faster than orthogonal ones."""
    k_lstm, k_rnn, k_gru, k_stack = jax.random.split(key, 4)
    V, H = vocab_size, hidden_size
    return Models(
        lstm=jaxrnn.init_lstm(k_lstm, V, H, V),  # orthogonal Whh, forget bias 1
        rnn=jaxrnn.init_rnn(k_rnn, V, H, V, init="lecture"),
        gru=jaxrnn.init_gru(k_gru, V, H, V, init="lecture"),
        stack=jaxrnn.init_stack(k_stack, V, (H, H), V, cell="gru", embed_size=4, init="lecture"),
    )


@jax.jit
def first_steps(models: Models, x: Array) -> tuple[Array, Array]:
    """One step of each model from its zero state, ``step(params, carry, x) -> (carry, h)``; returns the LSTM's
    readout of the three cells' summed outputs and the stack's top output."""
    lstm_carry: jaxrnn.LSTMCarry = jaxrnn.initial_carry(models.lstm, x.shape)
    lstm_carry, h = jaxrnn.lstm_step(models.lstm, lstm_carry, x)
    h_rnn, _ = jaxrnn.rnn_step(models.rnn, jaxrnn.initial_carry(models.rnn, x.shape), x)
    h_gru, _ = jaxrnn.gru_step(models.gru, jaxrnn.initial_carry(models.gru, x.shape), x)
    stack_carry = jaxrnn.initial_carry(models.stack, x.shape)
    stack_carry, h_top = jaxrnn.stack_step(models.stack, stack_carry, x)
    return jaxrnn.readout(models.lstm, h + h_rnn + h_gru), h_top


@jax.jit
def unroll_three_ways(params: jaxrnn.LSTMParams, carry: Carry, xs: Array) -> tuple[Carry, Array, Array]:
    """The sequence by the fused recurrence, the gap to the plain scan and Python loop, and one more step from
    the final state (where the next chunk would start)."""
    carry_T, hs = jaxrnn.unroll(jaxrnn.lstm_step, params, carry, xs, method="fused")
    ys: Array = jaxrnn.readout(params, hs)  # scores (T, B, V)
    methods: tuple[Method, ...] = ("scan", "loop")
    gaps = [jnp.max(jnp.abs(jaxrnn.unroll(jaxrnn.lstm_step, params, carry, xs, method=m)[1] - hs)) for m in methods]
    next_carry, _ = jaxrnn.lstm_step(params, carry_T, xs[-1])
    return next_carry, ys, jnp.max(jnp.stack(gaps))


def main(T: int = 6, B: int = 2, H: int = 8, V: int = 11, steps: int = 3) -> dict[str, float]:
    """Build each cell, unroll, take gradients, train a few steps and sample; returns the numbers to check."""
    k_models, k_data, k_sample = jax.random.split(jax.random.PRNGKey(0), 3)
    ids = jax.random.randint(k_data, (T + 1, B), 0, V)  # time-major token ids
    xs, targets = ids[:-1], ids[1:]
    models: Models = init_models(k_models, V, H)
    scores, h_top = first_steps(models, xs[0])

    lstm = models.lstm
    carry = jaxrnn.initial_carry(lstm, (B,))
    next_carry, ys, gap = unroll_three_ways(lstm, carry, xs)

    # The loss and its gradient with respect to the parameters; carry_T comes back as the auxiliary output
    def loss_fn(params: jaxrnn.LSTMParams) -> tuple[Array, Carry]:
        return jaxrnn.sequence_loss(params, carry, xs, targets, reduction="mean", method="fused")

    (loss, carry_T), grads = jax.jit(jax.value_and_grad(loss_fn, has_aux=True))(lstm)
    grad_norm = float(jnp.sqrt(sum(jnp.sum(g * g) for g in jax.tree.leaves(grads))))

    # Training: the lecture's clipped Adagrad, several updates carrying the state (truncated BPTT)
    optimizer = jaxrnn.lecture_optimizer(0.1)
    train_step = jaxrnn.make_train_step(optimizer, method="fused", reduction="mean")
    params, opt_state = lstm, optimizer.init(lstm)
    losses: list[float] = []
    for _ in range(steps):
        params, opt_state, carry, step_loss = train_step(params, opt_state, carry, xs, targets)
        losses.append(float(step_loss))

    # Sampling: feed an id, draw the next, feed it back
    sampled, _ = jaxrnn.sample(k_sample, params, next_carry, xs[-1], 5, temperature=0.8)

    return {
        "largest_gap_to_fused": float(gap),
        "loss": float(loss),
        "grad_norm": grad_norm,
        "first_train_loss": losses[0],
        "last_train_loss": losses[-1],
        "sampled_max_id": float(jnp.max(sampled)),
        "score_columns": float(scores.shape[-1]),
        "sequence_score_columns": float(ys.shape[-1]),
        "stack_h_top_rows": float(h_top.shape[0]),
    }


if __name__ == "__main__":
    for name, value in main().items():
        print(f"{name}: {value:.6g}")
