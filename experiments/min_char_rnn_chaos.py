"""Why two correct min-char-rnn implementations cannot be compared by running them freely.

Runs the float64 NumPy reference twice from the same start, once with one weight moved by 1e-14, and prints
how far the losses drift apart per iteration; then repeats with Adagrad's epsilon at 1e-4 instead of 1e-8.
The first Adagrad steps divide by ``sqrt(g*g + eps)``: with eps = 1e-8 a parameter whose gradient is 1e-6
still moves by about lr, so gradient differences far below any tolerance become parameter differences of lr.

    python experiments/min_char_rnn_chaos.py
"""
from __future__ import annotations

import json
import sys

import numpy as np

from jaxrnn import reference
from jaxrnn.data import Vocabulary, load_corpus


def run(data, V, eps, perturb, iterations, H=100, T=25, seed=0):
    rng = np.random.default_rng(seed)
    params = [rng.standard_normal((H, V)) * 0.01, rng.standard_normal((H, H)) * 0.01,
              rng.standard_normal((V, H)) * 0.01, np.zeros(H), np.zeros(V)]
    params[1][0, 0] += perturb
    mem = [np.zeros_like(p) for p in params]
    hprev, p, losses = np.zeros(H), 0, []
    for _ in range(iterations):
        inputs, targets = data[p:p + T], data[p + 1:p + T + 1]
        loss, *grads, hprev = reference.rnn_loss_fun(inputs, targets, hprev, params)
        reference.adagrad_update(params, grads, mem, eps=eps)
        losses.append(loss)
        p += T
    return np.array(losses)


def main(iterations: int = 300) -> dict:
    text = load_corpus()
    vocab = Vocabulary.from_text(text)
    data = vocab.encode(text[: 25 * iterations + 1])
    results = {}
    for eps in (1e-8, 1e-4):
        gap = np.abs(run(data, vocab.size, eps, 0.0, iterations) - run(data, vocab.size, eps, 1e-14, iterations))
        checkpoints = [n for n in (1, 10, 20, 50, 100, 200, 299) if n < iterations]
        results[f"eps={eps:g}"] = {**{f"iteration {n}": float(gap[n]) for n in checkpoints},
                                   "largest": float(gap.max()), "at iteration": int(gap.argmax())}
    return results


if __name__ == "__main__":
    json.dump(main(), sys.stdout, indent=2)
    print()
