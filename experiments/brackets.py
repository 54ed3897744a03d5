"""Many-to-one: is a bracket string balanced? The final hidden state to a label; tanh RNN, LSTM and GRU.

Positives are random balanced strings; negatives are random rearrangements of the same brackets that are not
balanced (equal numbers of ``(`` and ``)``, so counting alone cannot tell: the model must track the depth
over the whole sequence). One model per length and seed; held-out accuracy against length.

Held-out strings are never trained on: a fixed hash of each string puts it in one of 100 buckets, the first
``TEST_BUCKETS`` for testing, the next ``VALIDATION_BUCKETS`` for early stopping, the rest for training, so the
three sets are disjoint by construction. At short lengths there are few strings (14 balanced ones of length 8,
1430 of length 16), and the held-out sets are all the distinct strings their buckets hold, half of each class:
smaller than asked, and their sizes are recorded. Both classes are equally frequent, so chance is 50%; the bar to
beat is the rule "balanced when the first bracket opens and the last one closes", which every balanced string
passes and most rearrangements fail; it is scored on the same test strings.

    python -m experiments.brackets --preset cpu --out experiments/results
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import math
import sys


import jax
import jax.numpy as jnp
import numpy as np
import optax

import jaxrnn
from experiments import common, tasks

OPEN, CLOSE = 0, 1
TEST_BUCKETS, VALIDATION_BUCKETS = 25, 10  # of 100: test [0, 25), validation [25, 35), training [35, 100)
ENUMERATE_UP_TO = 200_000  # list every string when there are at most this many


@dataclasses.dataclass(frozen=True)
class Config:
    lengths: tuple = (8, 16, 32, 64, 128, 256)
    models: tuple = ("rnn", "lstm", "gru")
    seeds: tuple = (0, 1, 2)
    hidden_size: int = 32
    batch: int = 64
    learning_rate: float = 1e-2
    clip: float = 1.0
    steps: int = 1500  # at most
    eval_every: int = 100
    patience: int = 4  # stop after this many evaluations without a better validation accuracy
    stop_accuracy: float = 0.995  # or once validation accuracy reaches this
    pool: int = 20_000  # training strings per length (half balanced), fewer where there are fewer
    eval_size: int = 2000  # asked for, per held-out set


PRESETS = {
    "cpu": Config(),
    "tiny": Config(
        lengths=(16,),
        models=("rnn", "lstm"),
        seeds=(0, 1),
        hidden_size=16,
        batch=32,
        steps=300,
        pool=2000,
        eval_size=500,
    ),
}


def balanced(rng: np.random.Generator, n: int, L: int) -> np.ndarray:
    """``n`` random balanced strings of even length ``L`` (0 = open, 1 = close): a random walk on the depth
    that opens when it must, closes when it must, and otherwise flips a coin."""
    out = np.empty((n, L), np.uint8)
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


def first_last_rule(s: np.ndarray) -> np.ndarray:
    """The trivial classifier: balanced when the first bracket opens and the last closes (along the last axis)."""
    return (s[..., 0] == OPEN) & (s[..., -1] == CLOSE)


def rule_accuracy(xs, labels) -> float:
    """The fraction of ``xs (L, n)`` (time-major ids) whose ``labels (n,)`` (1 = balanced) the rule gets right."""
    return float(np.mean(first_last_rule(np.asarray(xs).T) == (np.asarray(labels) == 1)))


def bucket(strings: np.ndarray) -> np.ndarray:
    """``strings (n, L)`` -> ``(n,)`` in 0..99, a hash of each string's brackets: the same string always lands
    in the same bucket, whatever the seed or the set it was drawn for."""
    return np.array(
        [
            int.from_bytes(hashlib.blake2b(np.packbits(s.astype(bool)).tobytes(), digest_size=8).digest(), "little")
            % 100
            for s in strings
        ],
        dtype=np.int64,
    )


def candidates(rng: np.random.Generator, n: int, L: int):
    """Distinct balanced and unbalanced strings with ``L / 2`` of each bracket, ``((n_pos, L), (n_neg, L))``:
    every one of them where there are at most ``ENUMERATE_UP_TO``, else about ``n`` of each drawn at random."""
    if math.comb(L, L // 2) <= ENUMERATE_UP_TO:
        every = np.ones((math.comb(L, L // 2), L), np.uint8)
        for row, opens in zip(every, itertools.combinations(range(L), L // 2)):
            row[list(opens)] = OPEN
    else:
        pos = balanced(rng, n, L)
        every = np.concatenate([pos, rng.permuted(balanced(rng, 2 * n, L), axis=1)])
    every = np.unique(every, axis=0)
    every = every[rng.permutation(len(every))]  # unique() sorts; the first rows of a sorted list are no sample
    keep = is_balanced(every)
    return every[keep], every[~keep]


def labelled(pos: np.ndarray, neg: np.ndarray, rng: np.random.Generator):
    """Positives and negatives shuffled together: ids ``(L, n)`` time-major, labels ``(n,)`` (1 = balanced)."""
    xs = np.concatenate([pos, neg])
    labels = np.concatenate([np.ones(len(pos), np.int32), np.zeros(len(neg), np.int32)])
    order = rng.permutation(len(xs))
    return jnp.asarray(xs[order].T), jnp.asarray(labels[order])


def make_sets(L: int, pool: int, eval_size: int, seed: int = 0) -> dict:
    """The training pools and the two held-out sets for length ``L``, disjoint by their buckets.

    Returns ``{"train": (pos (n, L), neg (m, L)), "validation": (xs (L, k), labels (k,)), "test": (xs, labels)}``;
    each held-out set has equally many of each class, at most ``eval_size`` in all.
    """
    rng = np.random.default_rng(seed + L)
    pos, neg = candidates(rng, pool + 2 * eval_size, L)
    b_pos, b_neg = bucket(pos), bucket(neg)
    sets = {}
    for name, lo, hi in (("test", 0, TEST_BUCKETS), ("validation", TEST_BUCKETS, TEST_BUCKETS + VALIDATION_BUCKETS)):
        p, q = pos[(lo <= b_pos) & (b_pos < hi)], neg[(lo <= b_neg) & (b_neg < hi)]
        half = min(eval_size // 2, len(p), len(q))
        sets[name] = labelled(p[:half], q[:half], rng)
    train = TEST_BUCKETS + VALIDATION_BUCKETS
    sets["train"] = (pos[b_pos >= train][: pool // 2], neg[b_neg >= train][: pool - pool // 2])
    return sets


def loss_fn(params, batch):
    xs, labels = batch
    y = tasks.final_readout(params, xs)
    return jaxrnn.softmax_cross_entropy(y, labels, reduction="mean")


def accuracy(params, batch):
    xs, labels = batch
    return jnp.mean(jnp.argmax(tasks.final_readout(params, xs), axis=-1) == labels)


def make_runner(cfg: Config, kind: str, sets: dict):
    """One compiled trainer per model and length, shared by the seeds: ``chunk`` steps on batches of half
    balanced, half unbalanced training strings."""
    pos, neg = (jnp.asarray(a.T) for a in sets["train"])
    half = cfg.batch // 2
    labels = jnp.concatenate([jnp.ones(half, jnp.int32), jnp.zeros(cfg.batch - half, jnp.int32)])

    def make_batch(key):
        k_p, k_n = jax.random.split(key)
        xs = jnp.concatenate(
            [
                pos[:, jax.random.randint(k_p, (half,), 0, pos.shape[1])],
                neg[:, jax.random.randint(k_n, (cfg.batch - half,), 0, neg.shape[1])],
            ],
            axis=1,
        )
        return xs, labels

    opt = optax.chain(optax.clip_by_global_norm(cfg.clip), optax.adam(cfg.learning_rate))
    return opt, common.make_trainer(loss_fn, opt, make_batch, cfg.eval_every)


def run_one(cfg: Config, kind: str, L: int, seed: int, sets: dict, opt, run, evaluate) -> dict:
    """Train until the validation accuracy stops improving; the test accuracy is that of the best-validation
    parameters."""
    params = tasks.init_model(kind, jax.random.PRNGKey(seed), 2, cfg.hidden_size, 2)
    opt_state = opt.init(params)
    key = jax.random.PRNGKey(seed + 1)
    best, best_params, since, curve, steps = -1.0, params, 0, [], []
    for i in range(cfg.steps // cfg.eval_every):
        key, k = jax.random.split(key)
        params, opt_state, losses, _ = run(params, opt_state, k)
        curve.append(float(evaluate(params, sets["validation"])))
        steps.append((i + 1) * cfg.eval_every)
        if curve[-1] > best:
            best, best_params, since = curve[-1], params, 0
        else:
            since += 1
        if best >= cfg.stop_accuracy or since >= cfg.patience:
            break
    return {
        "model": kind,
        "length": L,
        "seed": seed,
        "test_accuracy": float(evaluate(best_params, sets["test"])),
        "validation_accuracy": best,
        "steps_run": steps[-1],
        "eval_step": steps,
        "validation_curve": curve,
        "train_loss_last_chunk": float(np.mean(np.asarray(losses))),
    }


def main(cfg: Config) -> dict:
    runs, sets_info, summary = [], [], {}
    evaluate = jax.jit(accuracy)
    for L in cfg.lengths:
        sets = make_sets(L, cfg.pool, cfg.eval_size)
        rule = rule_accuracy(*sets["test"])
        sets_info.append(
            {
                "length": L,
                "test_size": len(sets["test"][1]),
                "validation_size": len(sets["validation"][1]),
                "train_balanced": len(sets["train"][0]),
                "train_unbalanced": len(sets["train"][1]),
                "first_last_rule_accuracy": rule,
            }
        )
        summary[f"first_last_rule_L{L}_test_accuracy"] = rule
        for kind in cfg.models:
            opt, run = make_runner(cfg, kind, sets)
            mine = [run_one(cfg, kind, L, seed, sets, opt, run, evaluate) for seed in cfg.seeds]
            runs += mine
            summary[f"{kind}_L{L}_test_accuracy"] = common.spread([r["test_accuracy"] for r in mine])
            summary[f"{kind}_L{L}_steps_run"] = common.spread([r["steps_run"] for r in mine])
            summary[f"{kind}_L{L}_versus_rule"] = common.verdict(
                summary[f"{kind}_L{L}_test_accuracy"], common.spread([rule]), (kind, "rule"), lower_is_better=False
            )
        for a, b in itertools.combinations(cfg.models, 2):
            summary[f"{a}_versus_{b}_L{L}"] = common.verdict(
                summary[f"{a}_L{L}_test_accuracy"], summary[f"{b}_L{L}_test_accuracy"], (a, b), lower_is_better=False
            )
    return {"config": cfg, "summary": summary, "sets": sets_info, "runs": runs}


def make_figure(results: dict):
    cfg = results["config"] if isinstance(results["config"], dict) else dataclasses.asdict(results["config"])
    lengths = list(cfg["lengths"])
    fig, ax = common.new_figure(1, 2, size=(5.4, 4.0))
    left, right = ax[0, 0], ax[0, 1]
    styles = {"rnn": ("C0", "o", "tanh RNN"), "lstm": ("C1", "s", "LSTM"), "gru": ("C2", "^", "GRU")}
    shift = {m: 1.0 + 0.04 * (k - (len(cfg["models"]) - 1) / 2) for k, m in enumerate(cfg["models"])}
    for kind in cfg["models"]:
        color, marker, name = styles.get(kind, (None, "o", kind))
        for a, key in ((left, "test_accuracy"), (right, "steps_run")):
            s = [results["summary"][f"{kind}_L{L}_{key}"] for L in lengths]
            mean = np.array([v["mean"] for v in s])
            x = np.array(lengths) * shift[kind]  # side by side, not on top of each other
            a.errorbar(
                x,
                mean,
                yerr=[mean - [v["min"] for v in s], [v["max"] for v in s] - mean],
                fmt=marker + "-",
                color=color,
                capsize=3,
                ms=4,
                label=f"{name}: mean, min-max over {len(cfg['seeds'])} seeds",
            )
    rule = [results["summary"][f"first_last_rule_L{L}_test_accuracy"] for L in lengths]
    left.plot(lengths, rule, "k--", lw=1, label="rule: first opens and last closes")
    left.axhline(0.5, color="0.5", ls=":", lw=1, label="chance")
    sizes = {s["length"]: s["test_size"] for s in results["sets"]}
    left.set(
        title="balanced brackets: held-out accuracy\n(n: distinct test strings, none of them trained on)",
        xlabel="string length (brackets)",
        ylabel="test accuracy (fraction of strings)",
        ylim=(0.38, 1.03),
    )
    right.axhline(cfg["steps"], color="k", ls="--", lw=0.8, label="step limit")
    right.set(
        title=f"training steps run (stopped at validation\naccuracy {cfg['stop_accuracy']} or "
        f"{cfg['patience']} evaluations without gain)",
        xlabel="string length (brackets)",
        ylabel=f"training steps (batches of {cfg['batch']})",
        ylim=(0, cfg["steps"] * 1.08),
    )
    for a in (left, right):
        a.set_xscale("log", base=2)
        a.set_xticks(lengths)
        a.set_xticklabels([f"{L}\nn={sizes[L]}" if a is left else str(L) for L in lengths], fontsize=8)
        a.minorticks_off()
        a.grid(alpha=0.3)
    left.legend(fontsize=7, loc="lower left", bbox_to_anchor=(0.0, 0.06))
    right.legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    return fig


if __name__ == "__main__":
    sys.exit(common.cli("brackets", PRESETS, main, make_figure))
