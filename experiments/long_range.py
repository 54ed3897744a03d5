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
    python -m experiments.long_range --preset paper --out experiments/results   # long_range_paper.json, ~1 h
"""

from __future__ import annotations

import dataclasses
import math
import sys
import time


import jax
import jax.numpy as jnp
import numpy as np
import optax

import jaxrnn
from experiments import common, tasks

VALIDATION_KEY, TEST_KEY = 20_000, 10_000  # held-out sets: PRNGKey(KEY + T); training keys come from the seed


@dataclasses.dataclass(frozen=True)
class Config:
    adding_lengths: tuple = (10, 25, 50, 100)
    copy_lengths: tuple = (10, 25)
    models: tuple = ("rnn", "lstm", "gru")
    seeds: tuple = (0, 1, 2)
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
    # Arjovsky et al. 2016's lengths, one seed, no grid (it does not fit at T = 750): LSTM and GRU at (1e-2, 64),
    # the RNN at (1e-3, 64), where it learns adding at T = 50 (at 1e-2 it does not); ordered so that a late stop
    # keeps the shorter lengths, and the JSON is written after every run.
    "paper": Config(
        adding_lengths=(400, 750),
        copy_lengths=(200,),
        models=("lstm", "gru", "rnn"),
        seeds=(0,),
        select_T=(),
        fixed=(("rnn", 1e-3, 64), ("lstm", 1e-2, 64), ("gru", 1e-2, 64)),
        adding_steps=3000,
        copy_steps=2000,
        eval_size=256,
        stop_fraction=0.03,
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


def select(trainers: Trainers, task: str, kind: str, T: int) -> tuple:
    """The grid at length ``T``, seed ``cfg.seeds[0]``: ``(runs, (lr, H) with the lowest validation loss)``.
    The test loss is recorded but never compared."""
    cfg = trainers.cfg
    runs = [
        run_one(trainers, task, kind, T, H, lr, cfg.seeds[0]) for H in cfg.hidden_sizes for lr in cfg.learning_rates
    ]
    score = lambda r: r["validation_loss"] if math.isfinite(r["validation_loss"]) else math.inf
    best = min(runs, key=score)
    return runs, (best["learning_rate"], best["hidden_size"])


def aggregate(runs: list, cfg: Config) -> list:
    """Per (task, model, T): spreads over seeds of the test loss (and recall) and whether the model fails."""
    groups = {}
    for r in runs:
        groups.setdefault((r["task"], r["model"], r["T"]), []).append(r)
    rows = []
    for (task, kind, T), rs in groups.items():
        test = common.spread([r["test_loss"] for r in rs])
        row = {
            "task": task,
            "model": kind,
            "T": T,
            "hidden_size": rs[0]["hidden_size"],
            "learning_rate": rs[0]["learning_rate"],
            "baseline": rs[0]["baseline"],
            "seeds": [r["seed"] for r in rs],
            "test_loss": test,
            "fails": not test["mean"] <= cfg.fail_fraction * rs[0]["baseline"],
            "steps_run": common.spread([r["steps_run"] for r in rs]),
        }
        if task == "copy":
            row["recall_accuracy"] = common.spread([r["recall_accuracy"] for r in rs])
        rows.append(row)
    return rows


def main(cfg: Config, progress=None) -> dict:
    """The grid, then every (task, T, model) over ``cfg.seeds``; ``progress(partial_results)`` after each run."""
    trainers = Trainers(cfg)
    lengths = {"adding": cfg.adding_lengths, "copy": cfg.copy_lengths}
    chosen = {(kind, task): (lr, H) for kind, lr, H in cfg.fixed for task in lengths}
    sweep, runs = [], []

    def report():
        if progress is not None:
            progress(finish(cfg, chosen, sweep, runs))

    for task, T in cfg.select_T:
        for kind in cfg.models:
            if (kind, task) not in chosen:
                grid, chosen[(kind, task)] = select(trainers, task, kind, T)
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
                runs.append(again[0] if again else run_one(trainers, task, kind, T, H, lr, seed))
                report()
    return finish(cfg, chosen, sweep, runs)


def finish(cfg: Config, chosen: dict, sweep: list, runs: list) -> dict:
    rows = aggregate(runs, cfg)
    by = {(r["task"], r["model"], r["T"]): r for r in rows}
    summary = {}
    for (kind, task), (lr, H) in sorted(chosen.items()):
        summary[f"{task}_{kind}_chosen_learning_rate"], summary[f"{task}_{kind}_chosen_hidden_size"] = lr, H
    for r in rows:
        name = f"{r['task']}_{r['model']}_T{r['T']}"
        summary[f"{name}_test_loss_mean"] = r["test_loss"]["mean"]
        summary[f"{name}_test_loss_std"] = r["test_loss"]["std"]
        summary[f"{name}_fails"] = r["fails"]
        if "recall_accuracy" in r:
            summary[f"{name}_recall_accuracy_mean"] = r["recall_accuracy"]["mean"]
        summary[f"{r['task']}_T{r['T']}_baseline"] = r["baseline"]
    for task, kind in sorted({(r["task"], r["model"]) for r in rows}):
        failing = sorted(r["T"] for r in rows if (r["task"], r["model"]) == (task, kind) and r["fails"])
        summary[f"{task}_{kind}_fails_from_T"] = failing[0] if failing else None
    verdicts = {}
    for task, T in sorted({(r["task"], r["T"]) for r in rows}):
        for a, b in (("lstm", "rnn"), ("gru", "rnn"), ("lstm", "gru")):
            if (task, a, T) in by and (task, b, T) in by:
                sa, sb = by[(task, a, T)]["test_loss"], by[(task, b, T)]["test_loss"]
                verdicts[f"{task}_T{T}_{a}_vs_{b}"] = (
                    common.verdict(sa, sb, (a, b)) if min(sa["n"], sb["n"]) > 1 else "one seed: no verdict"
                )
    return {
        "config": cfg,
        "summary": summary,
        "verdicts": verdicts,
        "aggregate": rows,
        "sweep": sweep,
        "runs": runs,
        "validation_key": VALIDATION_KEY,
        "test_key": TEST_KEY,
    }


def table(results: dict) -> str:
    """Markdown table of the test loss (mean ± std over seeds) per (task, T) and model beside the baseline."""
    models = [m for m in ("rnn", "lstm", "gru") if any(r["model"] == m for r in results["aggregate"])]
    names = {"rnn": "tanh RNN", "lstm": "LSTM", "gru": "GRU"}
    rows = [
        "| task | T | baseline | " + " | ".join(names[m] for m in models) + " |",
        "|---|---|---|" + "---|" * len(models),
    ]
    by = {(r["task"], r["T"], r["model"]): r for r in results["aggregate"]}
    for task, T in sorted({(r["task"], r["T"]) for r in results["aggregate"]}):
        cells = []
        for m in models:
            r = by.get((task, T, m))
            cell = (
                "-"
                if r is None
                else common.pm(r["test_loss"], 4)
                if r["test_loss"]["n"] > 1
                else f"{r['test_loss']['mean']:.4f} (1 seed)"
            )
            if r is not None and "recall_accuracy" in r:
                cell += f" ({100 * r['recall_accuracy']['mean']:.0f}% recalled)"
            if r is not None and not r["fails"]:
                cell = f"**{cell}**"
            cells.append(cell)
        baseline = next(r["baseline"] for r in results["aggregate"] if (r["task"], r["T"]) == (task, T))
        rows.append(f"| {task} | {T} | {baseline:.4f} | " + " | ".join(cells) + " |")
    return "\n".join(rows)


def sweep_table(results: dict) -> str:
    """Markdown table of the grid: validation loss (seed 0) per model, H and learning rate; chosen in bold."""
    cfg = results["config"]
    lrs = cfg["learning_rates"] if isinstance(cfg, dict) else cfg.learning_rates  # read back from the JSON or not
    rows = [
        "| task (T) | model | H | " + " | ".join(f"lr {lr:g}" for lr in lrs) + " |",
        "|---|---|---|" + "---|" * len(lrs),
    ]
    groups = {}
    for r in results["sweep"]:
        groups.setdefault((r["task"], r["T"], r["model"], r["hidden_size"]), {})[r["learning_rate"]] = r
    for (task, T, kind, H), rs in groups.items():
        chosen = tuple(results["summary"][f"{task}_{kind}_chosen_{name}"] for name in ("learning_rate", "hidden_size"))
        value = lambda lr: f"{rs[lr]['validation_loss']:.4f}"
        cells = [("-" if lr not in rs else f"**{value(lr)}**" if (lr, H) == chosen else value(lr)) for lr in lrs]
        rows.append(f"| {task} ({T}) | {kind} | {H} | " + " | ".join(cells) + " |")
    return "\n".join(rows)


COLORS = {"rnn": "tab:red", "lstm": "tab:blue", "gru": "tab:green"}


def make_figure(results: dict):
    """Per task (row): held-out loss against the training step at each T (mean line, min-max band over seeds)
    and the final test loss against T (mean, error bars min to max)."""
    rows = [r for r in results["aggregate"]]
    tasks = [t for t in ("adding", "copy") if any(r["task"] == t for r in rows)]
    lengths = {t: sorted({r["T"] for r in rows if r["task"] == t}) for t in tasks}
    cols = max(len(v) for v in lengths.values()) + 1
    fig, ax = common.new_figure(len(tasks), cols, size=(3.6, 3.0))
    unit = {"adding": "held-out MSE", "copy": "held-out loss (nats per step)"}
    for i, task in enumerate(tasks):
        for j, T in enumerate(lengths[task]):
            a = ax[i, j]
            for kind in results["config"].models:
                rs = [r for r in results["runs"] if (r["task"], r["model"], r["T"]) == (task, kind, T)]
                if not rs:
                    continue
                longest = max(rs, key=lambda r: len(r["eval_step"]))["eval_step"]
                common.band(
                    a,
                    longest,
                    common.pad([r["test"] for r in rs]),
                    label=kind.upper(),
                    color=COLORS[kind],
                    log=task == "adding",
                )  # copy losses span less than a decade
            baseline = next(r["baseline"] for r in rows if (r["task"], r["T"]) == (task, T))
            a.axhline(baseline, color="k", ls="--", lw=0.8, label="baseline")
            a.set(title=f"{task}, T = {T}", xlabel="training step", ylabel=unit[task])
        for j in range(len(lengths[task]), cols - 1):
            ax[i, j].set_visible(False)
        a = ax[i, cols - 1]
        for k, kind in enumerate(results["config"].models):
            rs = sorted((r for r in rows if (r["task"], r["model"]) == (task, kind)), key=lambda r: r["T"])
            if not rs:
                continue
            Ts = np.array([r["T"] for r in rs], float) * (1 + 0.04 * (k - 1))  # side by side, not on top
            mean = np.array([r["test_loss"]["mean"] for r in rs])
            err = [mean - [r["test_loss"]["min"] for r in rs], [r["test_loss"]["max"] for r in rs] - mean]
            a.errorbar(Ts, mean, yerr=err, color=COLORS[kind], marker="o", ms=3, capsize=3, label=kind.upper())
        Ts = lengths[task]
        baselines = np.array([next(r["baseline"] for r in rows if (r["task"], r["T"]) == (task, T)) for T in Ts])
        a.plot(Ts, baselines, "k--", marker="_", ms=16, lw=0.8, label="baseline")  # the marker: one T shows too
        a.plot(
            Ts,
            results["config"].fail_fraction * baselines,
            "k:",
            marker="_",
            ms=16,
            lw=0.8,
            label=f"fails above {results['config'].fail_fraction:g} x baseline",
        )
        a.set_xscale("log")
        a.set_yscale("log")
        a.set_xticks(Ts)
        a.set_xticklabels([str(T) for T in Ts])
        a.minorticks_off()
        a.set(
            title=f"{task}: test loss at the chosen step",
            xlabel="length T",
            ylabel=unit[task].replace("held-out", "test"),
        )
    for a in ax.flat:
        if a.get_visible():
            a.legend(fontsize=6)
            a.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def cli(argv=None) -> int:
    """``--preset paper`` writes ``long_range_paper.json``/``.png`` and its JSON after every run as well (a late stop
    keeps the finished runs)."""
    return common.cli("long_range", PRESETS, main, make_figure, argv, own_file=("paper",))


if __name__ == "__main__":
    sys.exit(cli())
