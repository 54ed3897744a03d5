"""Why two correct min-char-rnn implementations cannot be compared by running them freely.

Runs the float64 NumPy reference twice from the same start, once with one weight moved by 1e-14, and prints
how far the losses drift apart per iteration; then repeats with Adagrad's epsilon at 1e-4 instead of 1e-8.
The first Adagrad steps divide by ``sqrt(g*g + eps)``: with eps = 1e-8 a parameter whose gradient is 1e-6
still moves by about lr, so gradient differences far below any tolerance become parameter differences of lr.

    python -m experiments.min_char_rnn_chaos [--preset lecture|tiny] [--out experiments/results]

Writes ``min_char_rnn_chaos.json`` (the loss difference at every iteration for each epsilon) and
``min_char_rnn_chaos.png`` (the difference against iteration, log axis) to ``--out``.
"""

from __future__ import annotations

import dataclasses
import sys


import numpy as np

from experiments import common
from jaxrnn import reference
from jaxrnn.data import Vocabulary, load_corpus


@dataclasses.dataclass(frozen=True)
class Config:
    iterations: int = 300
    hidden_size: int = 100
    seq_length: int = 25
    perturbation: float = 1e-14  # added to Whh[0, 0] in the second run
    epsilons: tuple = (1e-8, 1e-4)


PRESETS = {"lecture": Config(), "tiny": Config(iterations=60, hidden_size=32)}


def run(data, V, eps, perturb, iterations, H=100, T=25, seed=0):
    rng = np.random.default_rng(seed)
    params = [
        rng.standard_normal((H, V)) * 0.01,
        rng.standard_normal((H, H)) * 0.01,
        rng.standard_normal((V, H)) * 0.01,
        np.zeros(H),
        np.zeros(V),
    ]
    params[1][0, 0] += perturb
    mem = [np.zeros_like(p) for p in params]
    hprev, p, losses = np.zeros(H), 0, []
    for _ in range(iterations):
        inputs, targets = data[p : p + T], data[p + 1 : p + T + 1]
        loss, *grads, hprev = reference.rnn_loss_fun(inputs, targets, hprev, params)
        reference.adagrad_update(params, grads, mem, eps=eps)
        losses.append(loss)
        p += T
    return np.array(losses)


def main(config: Config = PRESETS["lecture"]) -> dict:
    """``summary``: the loss difference at a few iterations and its largest value, per epsilon (what the script
    prints); ``gap``: the difference at every iteration."""
    iterations, H, T = config.iterations, config.hidden_size, config.seq_length
    text = load_corpus()
    vocab = Vocabulary.from_text(text)
    data = vocab.encode(text[: T * iterations + 1])
    summary, gaps = {}, {}
    for eps in config.epsilons:
        losses = [run(data, vocab.size, eps, perturb, iterations, H=H, T=T) for perturb in (0.0, config.perturbation)]
        gap = np.abs(losses[0] - losses[1])
        checkpoints = [n for n in (1, 10, 20, 50, 100, 200, 299) if n < iterations]
        summary[f"eps={eps:g}"] = {
            **{f"iteration {n}": float(gap[n]) for n in checkpoints},
            "largest": float(gap.max()),
            "at iteration": int(gap.argmax()),
        }
        gaps[f"eps={eps:g}"] = gap.tolist()
    return {"config": dataclasses.asdict(config), "summary": summary, "gap": gaps}


def make_figure(results: dict):
    """|loss difference| of the two runs against iteration, one line per epsilon, log axis."""
    fig, ax = common.new_figure(1, 1)
    for name, gap in results["gap"].items():
        gap = np.asarray(gap, dtype=float)
        ax[0, 0].plot(np.arange(len(gap)), np.where(gap > 0, gap, np.nan), label=f"Adagrad {name}")
    ax[0, 0].set(
        title=f"min-char-rnn, float64: one weight moved by {results['config']['perturbation']:g}",
        xlabel="iteration",
        ylabel="|loss difference| (nats per chunk)",
        yscale="log",
    )
    ax[0, 0].legend()
    ax[0, 0].grid(alpha=0.3)
    fig.tight_layout()
    return fig


def cli(argv=None) -> int:
    return common.cli("min_char_rnn_chaos", PRESETS, main, make_figure, argv, default="lecture")


if __name__ == "__main__":
    sys.exit(cli())
