"""The adding problem and the copy task at the lengths and in the setup of Arjovsky, Shah & Bengio 2016
("Unitary evolution recurrent neural networks", ICML), with a GRU beside the paper's tanh RNN and LSTM.

The setup as the paper states it: RMSProp at learning rate 1e-3 (decay 0.9), batches of 20, no clipping; adding at
T = 100, 200, 400, 750 with 128 hidden units for the RNN and the LSTM; copy (10 symbols of 8, recalled after T
blanks) at T = 100, 200, 300, 500 with 80 units for the RNN and 40 for the LSTM. The GRU gets the hidden size whose
parameter count is nearest the LSTM's (148 for adding, 46 for copy). The paper's uRNN is not built here. The
initialisation is the library's (orthogonal ``Whh``, LSTM forget bias 1), not the paper's.

Where this cuts: the paper trains for thousands of iterations more than a 2-core CPU allows at these lengths
(``iterations`` says how many run here); every run's held-out loss is recorded every ``eval_every`` iterations on
a fixed set of ``eval_size`` sequences, and the JSON is rewritten after each run (finished runs are kept, so that
an interrupted sweep resumes). Axes as the paper's: loss (MSE, or cross-entropy per step) against iterations, with
the baselines it draws: MSE 1/6 for adding (always answer 1), ``10 ln 8 / (T + 20)`` for copy (memoryless).

    python -m experiments.arjovsky2016 --preset cpu --out experiments/results
"""

from __future__ import annotations

import dataclasses
import math
import time

import jax
import numpy as np
import optax

from experiments import common, stats, tasks
from experiments.long_range import TASKS

# (task, model): hidden units. RNN and LSTM: the paper's; GRU: parameters nearest the LSTM's.
PAPER_HIDDEN = {
    ("adding", "rnn"): 128,
    ("adding", "lstm"): 128,
    ("adding", "gru"): 148,
    ("copy", "rnn"): 80,
    ("copy", "lstm"): 40,
    ("copy", "gru"): 46,
}


@dataclasses.dataclass(frozen=True)
class Config:
    adding_lengths: tuple = (100, 200, 400, 750)
    copy_lengths: tuple = (100, 200, 300, 500)
    models: tuple = ("lstm", "gru", "rnn")
    seeds: tuple = (0, 1, 2)
    iterations: int = 3000
    batch: int = 20
    learning_rate: float = 1e-3
    decay: float = 0.9
    eval_every: int = 100
    eval_size: int = 500
    hidden: tuple = tuple(sorted(PAPER_HIDDEN.items()))  # ((task, model), H) pairs


PRESETS = {
    "cpu": Config(),
    "tiny": Config(
        adding_lengths=(20,),
        copy_lengths=(10,),
        models=("lstm", "rnn"),
        seeds=(0, 1),
        iterations=200,
        eval_every=50,
        eval_size=100,
        hidden=((("adding", "lstm"), 16), (("adding", "rnn"), 16), (("copy", "lstm"), 16), (("copy", "rnn"), 16)),
    ),
}


def baseline(task: str, T: int) -> float:
    return TASKS[task][4](T)


def run_one(cfg: Config, task: str, kind: str, T: int, seed: int) -> dict:
    """One model trained ``cfg.iterations`` RMSProp steps; the held-out loss every ``eval_every`` steps."""
    make, loss_fn, D, V, _ = TASKS[task]
    H = dict(cfg.hidden)[(task, kind)]
    optimizer = optax.rmsprop(cfg.learning_rate, decay=cfg.decay)
    run = common.make_trainer(loss_fn, optimizer, lambda k: make(k, T, cfg.batch), cfg.eval_every)
    held_out = make(jax.random.PRNGKey(30_000 + T), T, cfg.eval_size)
    evaluate = jax.jit(lambda p: loss_fn(p, held_out))
    key = jax.random.fold_in(jax.random.PRNGKey(seed), T)
    params = tasks.init_model(kind, key, D, H, V)
    opt_state = optimizer.init(params)
    key = jax.random.fold_in(key, 1)
    steps, held, train = [], [], []
    start = time.perf_counter()
    for i in range(cfg.iterations // cfg.eval_every):
        key, k = jax.random.split(key)
        params, opt_state, losses, _ = run(params, opt_state, k)
        steps.append((i + 1) * cfg.eval_every)
        held.append(float(evaluate(params)))
        train.append(float(np.mean(np.asarray(losses))))
        if not math.isfinite(held[-1]):  # diverged: the rest of the curve would be NaN
            break
    return {
        "task": task,
        "model": kind,
        "T": T,
        "hidden_size": H,
        "seed": seed,
        "baseline": baseline(task, T),
        "eval_step": steps,
        "held_out_loss": held,
        "train_loss": train,
        "final_held_out_loss": held[-1],
        "best_held_out_loss": float(np.nanmin(held)) if np.isfinite(held).any() else float("nan"),
        "seconds": round(time.perf_counter() - start, 1),
    }


def finish(cfg: Config, runs: list) -> dict:
    summary, comparisons = {}, {}
    groups = {}
    for r in runs:
        groups.setdefault((r["task"], r["T"], r["model"]), []).append(r)
    for (task, T, kind), rs in sorted(groups.items()):
        final = common.spread([r["final_held_out_loss"] for r in rs])
        summary[f"{task}_T{T}_{kind}_final_held_out_loss"] = final
        summary[f"{task}_T{T}_{kind}_below_half_baseline"] = sum(
            r["final_held_out_loss"] < 0.5 * r["baseline"] for r in rs
        )
        summary[f"{task}_T{T}_baseline"] = rs[0]["baseline"]
    for task, T in sorted({(t, T) for t, T, _ in groups}):
        for a, b in (("lstm", "rnn"), ("gru", "rnn"), ("lstm", "gru")):
            if (task, T, a) in groups and (task, T, b) in groups:
                comparisons[f"{task} T{T}: {a} vs {b}"] = stats.compare(
                    [r["final_held_out_loss"] for r in groups[(task, T, a)]],
                    [r["final_held_out_loss"] for r in groups[(task, T, b)]],
                    (a, b),
                )
    summary["comparisons"] = stats.decide(comparisons) if comparisons else {}
    return {"config": cfg, "summary": summary, "runs": runs}


def main(cfg: Config, progress=None, runs: common.Runs | None = None) -> dict:
    """Shortest lengths first, so that a sweep cut short keeps whole lengths; ``progress`` after every run."""
    kept, done = runs or common.Runs(), []
    order = sorted((T, task) for task in ("adding", "copy") for T in getattr(cfg, f"{task}_lengths"))
    for T, task in order:
        for kind in cfg.models:
            for seed in cfg.seeds:
                key = {"task": task, "model": kind, "T": T, "seed": seed}
                done.append(kept(key, lambda t=task, k=kind, T=T, s=seed: run_one(cfg, t, k, T, s)))
                if progress is not None:
                    progress(finish(cfg, done))
    return finish(cfg, done)
