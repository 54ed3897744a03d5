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
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import optax

import jaxrnn
from experiments import common, tasks
from experiments.brackets import task as task  # the strings and sets, for tests and readers
from experiments.brackets.task import make_sets, rule_accuracy


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
