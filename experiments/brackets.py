"""Many-to-one: is a bracket string balanced? The final hidden state to a label, tanh RNN against LSTM.

Positives are random balanced strings; negatives are random rearrangements of the same brackets that are not
balanced (equal numbers of ``(`` and ``)``, so counting alone cannot tell: the model must track the depth
over the whole sequence). One model per length; held-out accuracy against length (chance is 50%).

    python experiments/brackets.py --preset cpu --out experiments/results
"""
from __future__ import annotations

import dataclasses
import os
import sys

if __package__ in (None, ""):
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax
import jax.numpy as jnp
import numpy as np
import optax

import jaxrnn
from experiments import common

OPEN, CLOSE = 0, 1


@dataclasses.dataclass(frozen=True)
class Config:
    lengths: tuple = (8, 16, 32, 64)
    models: tuple = ("rnn", "lstm")
    hidden_size: int = 32
    batch: int = 64
    learning_rate: float = 1e-2
    clip: float = 1.0
    steps: int = 1500
    eval_every: int = 100
    pool: int = 20_000               # training strings per length (half balanced)
    eval_size: int = 2000
    seed: int = 0


PRESETS = {
    "cpu": Config(),
    "tiny": Config(lengths=(6,), hidden_size=16, batch=32, steps=200, pool=2000, eval_size=500),
}


def balanced(rng: np.random.Generator, n: int, L: int) -> np.ndarray:
    """``n`` random balanced strings of even length ``L`` (0 = open, 1 = close): a random walk on the depth
    that opens when it must, closes when it must, and otherwise flips a coin."""
    out = np.empty((n, L), np.int32)
    depth = np.zeros(n, np.int64)
    for t in range(L):
        left = L - t
        must_close = depth >= left
        must_open = depth == 0
        choice = np.where(must_close, CLOSE, np.where(must_open, OPEN, rng.integers(0, 2, n)))
        out[:, t] = choice
        depth += np.where(choice == OPEN, 1, -1)
    return out


def is_balanced(s: np.ndarray) -> np.ndarray:
    """Along the last axis: the depth never goes below 0 and ends at 0."""
    depth = np.cumsum(np.where(s == OPEN, 1, -1), axis=-1)
    return (depth.min(axis=-1) >= 0) & (depth[..., -1] == 0)


def make_set(rng: np.random.Generator, n: int, L: int):
    """``n`` strings (half balanced, half shuffled and unbalanced): ids ``(L, n)`` time-major, labels ``(n,)``."""
    pos = balanced(rng, n // 2, L)
    neg = rng.permuted(balanced(rng, 4 * (n - n // 2), L), axis=1)
    neg = neg[~is_balanced(neg)][: n - n // 2]
    xs = np.concatenate([pos, neg])
    labels = np.concatenate([np.ones(len(pos), np.int32), np.zeros(len(neg), np.int32)])
    order = rng.permutation(len(xs))
    return jnp.asarray(xs[order].T), jnp.asarray(labels[order])


def loss_fn(params, batch):
    xs, labels = batch
    y = common.final_readout(params, xs)
    return jaxrnn.softmax_cross_entropy(y, labels, reduction="mean")


def accuracy(params, batch):
    xs, labels = batch
    return jnp.mean(jnp.argmax(common.final_readout(params, xs), axis=-1) == labels)


def run_one(cfg: Config, kind: str, L: int) -> dict:
    rng = np.random.default_rng(cfg.seed + L)
    train_xs, train_labels = make_set(rng, cfg.pool, L)
    test = make_set(rng, cfg.eval_size, L)

    def make_batch(key):
        idx = jax.random.randint(key, (cfg.batch,), 0, train_labels.shape[0])
        return train_xs[:, idx], train_labels[idx]

    params = common.init_model(kind, jax.random.PRNGKey(cfg.seed), 2, cfg.hidden_size, 2)
    opt = optax.chain(optax.clip_by_global_norm(cfg.clip), optax.adam(cfg.learning_rate))
    test_accuracy = jax.jit(lambda p: accuracy(p, test))
    params, hist = common.train(loss_fn, params, opt, make_batch, jax.random.PRNGKey(cfg.seed + 1), cfg.steps,
                                chunk=cfg.eval_every, evaluate=lambda p: 1.0 - test_accuracy(p))
    acc = [1.0 - e for e in hist["eval"]]
    return {"model": kind, "length": L, "test_accuracy": acc[-1], "best_test_accuracy": max(acc),
            "eval_step": hist["eval_step"], "accuracy_curve": acc, "train_loss_last_100": float(
                np.mean(hist["losses"][-100:])), "fraction_balanced_in_test": float(jnp.mean(test[1]))}


def main(cfg: Config) -> dict:
    runs = [run_one(cfg, kind, L) for L in cfg.lengths for kind in cfg.models]
    summary = {f"{r['model']}_L{r['length']}_test_accuracy": r["test_accuracy"] for r in runs}
    return {"config": cfg, "summary": summary, "runs": runs}


def make_figure(results: dict):
    fig, ax = common.new_figure(1, 1)
    for kind, marker in (("rnn", "o:"), ("lstm", "s-")):
        runs = sorted((r for r in results["runs"] if r["model"] == kind), key=lambda r: r["length"])
        ax[0, 0].plot([r["length"] for r in runs], [r["test_accuracy"] for r in runs], marker, label=kind)
    ax[0, 0].axhline(0.5, color="k", ls="--", lw=0.8, label="chance")
    ax[0, 0].set(title="balanced brackets: held-out accuracy", xlabel="string length", xscale="log", ylim=(0.4, 1.02))
    ax[0, 0].legend()
    ax[0, 0].grid(alpha=0.3)
    fig.tight_layout()
    return fig


if __name__ == "__main__":
    sys.exit(common.cli("brackets", PRESETS, main, make_figure))
