"""The lecture's toy: vocabulary [h, e, l, o], training sequence "hello".

A vanilla RNN learns to predict each next character of "hello"; fed "h" and sampled greedily it spells
"hello". The two "l"s need the hidden state: after "l" the answer is "l" once and "o" the next time.

    python -m experiments.hello [--preset lecture|tiny] [--out experiments/results]

Writes ``hello.json`` (the greedy continuation, the loss per iteration, the predicted probabilities) to ``--out``.
"""

from __future__ import annotations

import dataclasses
import sys
from dataclasses import dataclass


import jax
import numpy as np

import jaxrnn
from experiments import common
from jaxrnn.data import Vocabulary

WORD = "hello"
VOCAB = Vocabulary(("h", "e", "l", "o"))  # the lecture's order, not sorted


@dataclass(frozen=True)
class Config:
    hidden_size: int = 8
    iterations: int = 300
    seed: int = 0


PRESETS = {"lecture": Config(), "tiny": Config(iterations=150)}


def main(config: Config = PRESETS["lecture"]) -> dict:
    """Train on "hell" -> "ello" with the lecture's optimiser; return the greedy continuation of "h"."""
    ids = VOCAB.encode(WORD)
    params = jaxrnn.init_rnn(jax.random.PRNGKey(config.seed), VOCAB.size, config.hidden_size, VOCAB.size)
    optimizer = jaxrnn.lecture_optimizer(learning_rate=0.1)
    opt_state = optimizer.init(params)
    train_step = jaxrnn.make_train_step(optimizer)
    h0 = jaxrnn.initial_carry(params)
    losses = []
    for _ in range(config.iterations):
        params, opt_state, _, loss = train_step(params, opt_state, h0, ids[:-1], ids[1:])
        losses.append(float(loss))
    generated, _ = jaxrnn.sample(jax.random.PRNGKey(0), params, h0, ids[0], len(WORD) - 1, temperature=0.0)
    return {
        "config": dataclasses.asdict(config),
        "text": WORD[0] + VOCAB.decode(generated),
        "losses": losses,
        "probabilities": np.asarray(
            jax.nn.softmax(
                jaxrnn.readout(  # float64 so that 0.001 prints as 0.001
                    params, jaxrnn.unroll(jaxrnn.rnn_step, params, h0, ids[:-1])[1]
                )
            ),
            np.float64,
        )
        .round(3)
        .tolist(),
    }


def report(result: dict, out: str) -> None:
    print(f"loss {result['losses'][0]:.3f} -> {result['losses'][-1]:.4f}; feeding 'h' gives {result['text']!r}")


def cli(argv=None) -> int:
    return common.cli("hello", PRESETS, main, None, argv, default="lecture", after=report)


if __name__ == "__main__":
    sys.exit(cli())
