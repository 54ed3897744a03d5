"""Long-range dependencies, tanh RNN against LSTM and GRU: the adding problem and the copy task across lengths T.

Adding problem: predict the sum of the two marked values among ``T`` (MSE; always answering 1 scores 1/6).
Copy task: reproduce 10 symbols (of 8) after ``T`` blanks (mean cross-entropy per step; the memoryless answer
scores ``10 ln 8 / (T + 20)`` nats). Adam with global-norm clipping, the library's default initialisation
(orthogonal ``Whh``; LSTM forget bias 1).

Every model gets the same tuning: a learning-rate x hidden-size grid at one length per task, chosen on a
validation set (its own keys, never the test set's); the chosen setting then runs at every length over several
seeds. A run stops early once its validation loss is below ``stop_fraction x baseline``; the reported number is
the test loss at the evaluation with the lowest validation loss. A model *fails* at ``T`` when its mean test loss
over seeds is above ``fail_fraction x baseline``.

    python -m experiments.long_range --preset cpu --out experiments/results
"""

from __future__ import annotations

import dataclasses
import math
import time


import jax
import jax.numpy as jnp
import optax

import jaxrnn
from experiments import common, tasks
from experiments.long_range.scoring import finish

VALIDATION_KEY, TEST_KEY = 20_000, 10_000  # held-out sets: PRNGKey(KEY + T); training keys come from the seed


@dataclasses.dataclass(frozen=True)
class Config:
    adding_lengths: tuple = (10, 25, 50, 100)
    copy_lengths: tuple = (10, 25)
    models: tuple = ("rnn", "lstm", "gru")
    seeds: tuple = (0, 1, 2, 3, 4, 5)  # 6 against 6: p = 0.0022 at best, below 0.05 / 18 comparisons (Holm)
    learning_rates: tuple = (1e-3, 3e-3, 1e-2)  # the grid, the same for every model
    hidden_sizes: tuple = (32, 64)
    select_T: tuple = (("adding", 50), ("copy", 10))  # the length per task at which the grid is searched (seed 0)
    fixed: tuple = ()  # ((model, learning_rate, hidden_size), ...): skip the grid for these models
    batch: int = 64
    clip: float = 1.0
    adding_steps: int = 1500
    copy_steps: int = 1500
    eval_every: int = 100
    eval_size: int = 512
    stop_fraction: float = 0.01  # stop a run once its validation loss is below this x baseline
    fail_fraction: float = 0.1  # a model fails at T when its mean test loss is above this x baseline


PRESETS = {
    "cpu": Config(),
    "tiny": Config(
        adding_lengths=(10,),
        copy_lengths=(),
        seeds=(0, 1),
        learning_rates=(3e-3, 1e-2),
        hidden_sizes=(16,),
        select_T=(("adding", 10),),
        batch=32,
        adding_steps=200,
        eval_size=256,
    ),
}


def adding_loss(params, batch):
    xs, y = batch
    return jnp.mean((tasks.final_readout(params, xs)[:, 0] - y) ** 2)


def copy_loss(params, batch):
    xs, targets = batch
    carry = jaxrnn.initial_carry(params, xs.shape[1:])
    return jaxrnn.sequence_loss(params, carry, xs, targets, reduction="mean")[0]


def copy_symbol_accuracy(params, batch):
    """Fraction of the 10 recalled symbols that the argmax gets right."""
    xs, targets = batch
    carry = jaxrnn.initial_carry(params, xs.shape[1:])
    _, hs = jaxrnn.unroll(jaxrnn.step_for(params), params, carry, xs)
    guess = jnp.argmax(jaxrnn.readout(params, hs[-tasks.COPY_LENGTH :]), axis=-1)
    return jnp.mean(guess == targets[-tasks.COPY_LENGTH :])


TASKS = {  # name: (batch(key, T, B), loss, input size, output size, baseline(T))
    "adding": (tasks.adding_batch, adding_loss, 2, 1, lambda T: tasks.ADDING_BASELINE_MSE),
    "copy": (tasks.copy_batch, copy_loss, tasks.COPY_GO + 1, tasks.COPY_SYMBOLS + 1, tasks.copy_baseline),
}


def held_out(task: str, T: int, size: int):
    """``(validation, test)`` batches of ``size`` sequences, from ``PRNGKey(VALIDATION_KEY + T)`` and
    ``PRNGKey(TEST_KEY + T)``."""
    make = TASKS[task][0]
    return (make(jax.random.PRNGKey(VALIDATION_KEY + T), T, size), make(jax.random.PRNGKey(TEST_KEY + T), T, size))


class Trainers:
    """One compiled trainer and evaluator per (task, model, T, H); the learning rate rides in the optimiser state
    (``optax.inject_hyperparams``), so the grid and the seeds reuse one compilation."""

    def __init__(self, cfg: Config):
        self.cfg, self.cache = cfg, {}

    def optimizer(self):
        return optax.chain(
            optax.clip_by_global_norm(self.cfg.clip), optax.inject_hyperparams(optax.adam)(learning_rate=1.0)
        )

    def __call__(self, task: str, kind: str, T: int, H: int):
        if (task, kind, T, H) not in self.cache:
            make, loss_fn, _, _, _ = TASKS[task]
            steps = self.cfg.adding_steps if task == "adding" else self.cfg.copy_steps
            chunk = min(self.cfg.eval_every, steps)
            run = common.make_trainer(loss_fn, self.optimizer(), lambda k: make(k, T, self.cfg.batch), chunk)
            validation, test = held_out(task, T, self.cfg.eval_size)
            evaluate = jax.jit(lambda p: (loss_fn(p, validation), loss_fn(p, test)))
            self.cache[(task, kind, T, H)] = run, evaluate, chunk, steps, test
        return self.cache[(task, kind, T, H)]


def run_one(trainers: Trainers, task: str, kind: str, T: int, H: int, lr: float, seed: int) -> dict:
    """Train one model; the returned ``test_loss`` is read at the evaluation with the lowest validation loss."""
    cfg = trainers.cfg
    run, evaluate, chunk, steps, test = trainers(task, kind, T, H)
    _, _, D, V, baseline_of = TASKS[task]
    baseline = baseline_of(T)
    key = jax.random.fold_in(jax.random.PRNGKey(seed), T)
    params = tasks.init_model(kind, key, D, H, V)
    opt = trainers.optimizer()
    opt_state = opt.init(params)
    adam = opt_state[1]  # the same dtype for every rate: no retracing
    opt_state = (opt_state[0], adam._replace(hyperparams={"learning_rate": jnp.asarray(lr, jnp.float32)}))
    key = jax.random.fold_in(key, 1)
    curve = {"eval_step": [], "validation": [], "test": []}
    best = (math.inf, math.nan, 0, params)  # validation, test, step, params
    start = time.perf_counter()
    for i in range(steps // chunk):
        key, k = jax.random.split(key)
        params, opt_state, _, _ = run(params, opt_state, k)
        validation, test_loss = map(float, evaluate(params))
        curve["eval_step"].append((i + 1) * chunk)
        curve["validation"].append(validation)
        curve["test"].append(test_loss)
        if validation < best[0]:
            best = (validation, test_loss, (i + 1) * chunk, params)
        if not math.isfinite(validation) or validation < cfg.stop_fraction * baseline:
            break
    out = {
        "task": task,
        "model": kind,
        "T": T,
        "hidden_size": H,
        "learning_rate": lr,
        "seed": seed,
        "baseline": baseline,
        "validation_loss": best[0],
        "test_loss": best[1],
        "chosen_step": best[2],
        "steps_run": curve["eval_step"][-1],
        **curve,
        "seconds": round(time.perf_counter() - start, 2),
    }
    if task == "copy":
        out["recall_accuracy"] = float(jax.jit(copy_symbol_accuracy)(best[3], test))
    return out


def select(trainers: Trainers, task: str, kind: str, T: int, runs: common.Runs) -> tuple:
    """The grid at length ``T``, seed ``cfg.seeds[0]``: ``(runs, (lr, H) with the lowest validation loss)``.
    The test loss is recorded but never compared."""
    cfg = trainers.cfg
    grid = [
        kept(runs, trainers, task, kind, T, H, lr, cfg.seeds[0]) for H in cfg.hidden_sizes for lr in cfg.learning_rates
    ]
    score = lambda r: r["validation_loss"] if math.isfinite(r["validation_loss"]) else math.inf
    best = min(grid, key=score)
    return grid, (best["learning_rate"], best["hidden_size"])


def kept(runs: common.Runs, trainers: Trainers, task: str, kind: str, T: int, H: int, lr: float, seed: int) -> dict:
    """``run_one``, or its result from an earlier, interrupted sweep."""
    key = {"task": task, "model": kind, "T": T, "hidden_size": H, "learning_rate": lr, "seed": seed}
    return runs(key, lambda: run_one(trainers, task, kind, T, H, lr, seed))


def main(cfg: Config, progress=None, runs: common.Runs | None = None) -> dict:
    """The grid, then every (task, T, model) over ``cfg.seeds``; ``progress(partial_results)`` after each run.
    Runs finished in ``runs`` are not run again."""
    trainers, kept_runs = Trainers(cfg), runs or common.Runs()
    lengths = {"adding": cfg.adding_lengths, "copy": cfg.copy_lengths}
    chosen = {(kind, task): (lr, H) for kind, lr, H in cfg.fixed for task in lengths}
    sweep, runs = [], []

    def report():
        if progress is not None:
            progress(finish(cfg, chosen, sweep, runs))

    for task, T in cfg.select_T:
        for kind in cfg.models:
            if (kind, task) not in chosen:
                grid, chosen[(kind, task)] = select(trainers, task, kind, T, kept_runs)
                sweep += grid
                report()
    for T, task in sorted((T, task) for task in lengths for T in lengths[task]):  # shortest first
        for kind in cfg.models:
            lr, H = chosen[(kind, task)]
            for seed in cfg.seeds:
                again = [
                    r
                    for r in sweep
                    if (r["task"], r["model"], r["T"], r["hidden_size"], r["learning_rate"], r["seed"])
                    == (task, kind, T, H, lr, seed)
                ]
                runs.append(again[0] if again else kept(kept_runs, trainers, task, kind, T, H, lr, seed))
                report()
    return finish(cfg, chosen, sweep, runs)
