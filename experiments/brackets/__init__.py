"""Many-to-one: is a bracket string balanced? The final hidden state to a label; tanh RNN, LSTM and GRU, trained on
strings of at most 64 brackets and tested on longer ones.

Positives are random balanced strings. Negatives are balanced strings with one bracket flipped in the middle
third: the same length, never below depth 0 in the first third, ending at depth +-2. Their first and last thirds
are those of a balanced string, so no rule that reads the ends can tell them apart; a model must keep the count
across the middle. Training strings have every length in ``train_lengths`` (left-padded with a neutral symbol);
each model is tested at ``test_lengths``, 128 and 256 longer than any it saw.

Held-out strings are never trained on: a fixed hash of each string puts it in one of 100 buckets, the first
``TEST_BUCKETS`` for testing, the next ``VALIDATION_BUCKETS`` for the validation set (early stopping and each cell's
learning-rate search, at the training lengths), the rest for training. Both classes are equally frequent, so chance
is 50%. The bar to beat is the best window rule (``task.window_rule``): it reads the first and last ``k`` brackets
for ``k`` in ``window_sizes`` with ``2 k < L`` (so that part of the string stays unread), with ``k`` chosen on the
test strings themselves (a choice in the rule's favour).

Each cell gets its own learning rate, chosen among ``learning_rates`` on validation accuracy with seed 0; then every
seed trains at that rate. Comparisons: an exact permutation test between cells and an exact sign-flip test of each
cell against the rule's accuracy on the same strings, with Holm's correction over all of them (``experiments.stats``).

    python -m experiments.brackets --preset cpu --out experiments/results
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import optax

import jaxrnn
from experiments import common, stats, tasks
from experiments.brackets import task as task  # the strings and sets, for tests and readers
from experiments.brackets.task import make_sets, rule_accuracy


@dataclasses.dataclass(frozen=True)
class Config:
    train_lengths: tuple = (8, 16, 24, 32, 40, 48, 56, 64)
    test_lengths: tuple = (64, 128, 256)
    window_sizes: tuple = (8, 16, 32, 64)
    models: tuple = ("rnn", "lstm", "gru")
    seeds: tuple = tuple(range(10))  # 10 against 10, and a sign-flip test at p = 0.002 at best: 18 comparisons
    learning_rates: tuple = (1e-3, 3e-3, 1e-2)  # searched per cell on the validation set
    hidden_size: int = 32
    batch: int = 64
    clip: float = 1.0
    steps: int = 3000  # at most
    eval_every: int = 100
    patience: int = 5  # stop after this many evaluations without a better validation accuracy
    stop_accuracy: float = 0.999  # or once validation accuracy reaches this
    pool: int = 40_000  # training strings (half balanced), fewer where there are fewer distinct ones
    eval_size: int = 2000  # asked for, per held-out set


PRESETS = {
    "cpu": Config(),
    "tiny": Config(
        train_lengths=(8, 16),
        test_lengths=(16, 32),
        window_sizes=(4, 8),
        models=("rnn", "lstm"),
        seeds=(0, 1),
        learning_rates=(1e-2,),
        hidden_size=16,
        batch=32,
        steps=300,
        pool=2000,
        eval_size=400,
    ),
}


def loss_fn(params, batch):
    xs, labels = batch
    y = tasks.final_readout(params, xs)
    return jaxrnn.softmax_cross_entropy(y, labels, reduction="mean")


def accuracy(params, batch):
    xs, labels = batch
    return jnp.mean(jnp.argmax(tasks.final_readout(params, xs), axis=-1) == labels)


def make_runner(cfg: Config, kind: str, lr: float, sets: dict):
    """A compiled trainer of ``eval_every`` steps on batches of half balanced, half unbalanced training strings."""
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

    opt = optax.chain(optax.clip_by_global_norm(cfg.clip), optax.adam(lr))
    return opt, common.make_trainer(loss_fn, opt, make_batch, cfg.eval_every)


def run_one(cfg: Config, kind: str, lr: float, seed: int, sets: dict, runner, evaluate) -> dict:
    """Train until the validation accuracy stops improving; the test accuracies are those of the best-validation
    parameters. ``runner = make_runner(cfg, kind, lr, sets)``."""
    opt, run = runner
    params = tasks.init_model(kind, jax.random.PRNGKey(seed), 3, cfg.hidden_size, 2)
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
        "learning_rate": lr,
        "seed": seed,
        "test_accuracy": {str(L): float(evaluate(best_params, sets["test"][L])) for L in cfg.test_lengths},
        "validation_accuracy": best,
        "steps_run": steps[-1],
        "eval_step": steps,
        "validation_curve": curve,
        "train_loss_last_chunk": float(np.mean(np.asarray(losses))),
    }


def main(cfg: Config, runs: common.Runs | None = None) -> dict:
    kept = runs or common.Runs()
    sets = make_sets(cfg.train_lengths, cfg.test_lengths, cfg.pool, cfg.eval_size)
    evaluate = jax.jit(accuracy)
    summary, comparisons, search, results = {}, {}, {}, []
    rules = {  # windows that leave part of the string unread (2k < L): reading it all is no shortcut
        L: {k: rule_accuracy(*sets["test"][L], k) for k in cfg.window_sizes if 2 * k < L} for L in cfg.test_lengths
    }
    for L in cfg.test_lengths:
        summary[f"window_rule_L{L}_test_accuracy"] = max(rules[L].values())
        summary[f"window_rule_L{L}_k"] = max(rules[L], key=rules[L].get)
    runners = {}

    def one(kind, lr, seed):
        def fresh():
            if (kind, lr) not in runners:
                runners[kind, lr] = make_runner(cfg, kind, lr, sets)
            return run_one(cfg, kind, lr, seed, sets, runners[kind, lr], evaluate)

        return kept({"model": kind, "learning_rate": lr, "seed": seed}, fresh)

    for kind in cfg.models:
        search[kind] = [one(kind, lr, cfg.seeds[0]) for lr in cfg.learning_rates]
        lr = max(search[kind], key=lambda r: r["validation_accuracy"])["learning_rate"]
        summary[f"{kind}_learning_rate"] = lr
        mine = [one(kind, lr, seed) for seed in cfg.seeds]
        results += mine
        summary[f"{kind}_steps_run"] = common.spread([r["steps_run"] for r in mine])
        summary[f"{kind}_validation_accuracy"] = common.spread([r["validation_accuracy"] for r in mine])
        for L in cfg.test_lengths:
            values = [r["test_accuracy"][str(L)] for r in mine]
            summary[f"{kind}_L{L}_test_accuracy"] = common.spread(values)
            comparisons[f"L{L}: {kind} vs window rule"] = stats.compare_to(
                values, summary[f"window_rule_L{L}_test_accuracy"], (kind, "window rule"), lower_is_better=False
            )
    for L in cfg.test_lengths:
        scores = {kind: summary[f"{kind}_L{L}_test_accuracy"]["values"] for kind in cfg.models}
        comparisons.update(stats.pairwise(scores, prefix=f"L{L}: ", lower_is_better=False))
    summary["comparisons"] = stats.decide(comparisons)
    sizes = {
        "train_balanced": len(sets["train"][0]),
        "train_unbalanced": len(sets["train"][1]),
        "validation": len(sets["validation"][1]),
        **{f"test_L{L}": len(sets["test"][L][1]) for L in cfg.test_lengths},
    }
    return {
        "config": cfg,
        "summary": summary,
        "sets": sizes,
        "window_rules": {str(L): {str(k): v for k, v in r.items()} for L, r in rules.items()},
        "learning_rate_search": search,
        "runs": results,
    }
