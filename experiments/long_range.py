"""Long-range dependencies, tanh RNN against LSTM: the adding problem and the copy task across lengths T.

Adding problem: predict the sum of the two marked values among ``T`` (MSE; always answering 1 scores 1/6).
Copy task: reproduce 10 symbols (of 8) after ``T`` blanks (mean cross-entropy per step; the memoryless answer
scores ``10 ln 8 / (T + 20)`` nats). Both models: hidden size ``H``, Adam with global-norm clipping, the
library's default initialisation (orthogonal ``Whh``; LSTM forget bias 1).

    python experiments/long_range.py --preset cpu --out experiments/results
"""
from __future__ import annotations

import dataclasses
import os
import sys
import time

if __package__ in (None, ""):
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax
import jax.numpy as jnp
import optax

import jaxrnn
from experiments import common


@dataclasses.dataclass(frozen=True)
class Config:
    adding_lengths: tuple = (10, 25, 50, 100, 200)
    copy_lengths: tuple = (10, 25, 50, 100)
    models: tuple = ("rnn", "lstm")
    hidden_size: int = 64
    batch: int = 64
    learning_rate: float = 1e-2
    clip: float = 1.0
    adding_steps: int = 2000
    copy_steps: int = 1500
    eval_every: int = 100
    eval_size: int = 512
    adding_stop_mse: float = 0.002   # stop a run early once the held-out MSE is this low
    seed: int = 0


PRESETS = {
    "cpu": Config(),
    "tiny": Config(adding_lengths=(10,), copy_lengths=(), hidden_size=16, batch=32, adding_steps=200,
                   eval_every=100, eval_size=256),
}


def adding_loss(params, batch):
    xs, y = batch
    return jnp.mean((common.final_readout(params, xs)[:, 0] - y) ** 2)


def copy_loss(params, batch):
    xs, targets = batch
    carry = jaxrnn.initial_carry(params, xs.shape[1:])
    return jaxrnn.sequence_loss(params, carry, xs, targets, reduction="mean")[0]


def copy_symbol_accuracy(params, batch):
    """Fraction of the 10 recalled symbols that the argmax gets right."""
    xs, targets = batch
    carry = jaxrnn.initial_carry(params, xs.shape[1:])
    _, hs = jaxrnn.unroll(jaxrnn.step_for(params), params, carry, xs)
    guess = jnp.argmax(jaxrnn.readout(params, hs[-common.COPY_LENGTH:]), axis=-1)
    return jnp.mean(guess == targets[-common.COPY_LENGTH:])


def run_one(cfg: Config, task: str, kind: str, T: int) -> dict:
    key = jax.random.fold_in(jax.random.PRNGKey(cfg.seed), T)
    if task == "adding":
        make_batch = lambda k: common.adding_batch(k, T, cfg.batch)
        params = common.init_model(kind, key, 2, cfg.hidden_size, 1)
        loss_fn, steps, baseline, stop = adding_loss, cfg.adding_steps, common.ADDING_BASELINE_MSE, cfg.adding_stop_mse
        test = common.adding_batch(jax.random.PRNGKey(10_000 + T), T, cfg.eval_size)
    else:
        make_batch = lambda k: common.copy_batch(k, T, cfg.batch)
        params = common.init_model(kind, key, common.COPY_GO + 1, cfg.hidden_size, common.COPY_SYMBOLS + 1)
        loss_fn, steps, baseline, stop = copy_loss, cfg.copy_steps, common.copy_baseline(T), None
        test = common.copy_batch(jax.random.PRNGKey(10_000 + T), T, cfg.eval_size)
    evaluate = jax.jit(lambda p: loss_fn(p, test))
    opt = optax.chain(optax.clip_by_global_norm(cfg.clip), optax.adam(cfg.learning_rate))
    start = time.perf_counter()
    params, hist = common.train(loss_fn, params, opt, make_batch, jax.random.fold_in(key, 1), steps,
                                chunk=cfg.eval_every, evaluate=evaluate, stop_below=stop)
    out = {"task": task, "model": kind, "T": T, "baseline": baseline, "test_loss": hist["eval"][-1],
           "best_test_loss": min(hist["eval"]), "steps_run": hist["eval_step"][-1],
           "eval_step": hist["eval_step"], "eval": hist["eval"], "seconds": time.perf_counter() - start}
    if task == "copy":
        out["recall_accuracy"] = float(jax.jit(copy_symbol_accuracy)(params, test))
    return out


def main(cfg: Config) -> dict:
    runs = [run_one(cfg, task, kind, T)
            for task, lengths in (("adding", cfg.adding_lengths), ("copy", cfg.copy_lengths))
            for T in lengths for kind in cfg.models]
    summary = {f"{r['task']}_{r['model']}_T{r['T']}_test_loss": r["test_loss"] for r in runs}
    summary.update({f"copy_{r['model']}_T{r['T']}_recall_accuracy": r["recall_accuracy"]
                    for r in runs if r["task"] == "copy"})
    summary.update({f"{r['task']}_T{r['T']}_baseline": r["baseline"] for r in runs})
    return {"config": cfg, "summary": summary, "runs": runs}


def table(results: dict) -> str:
    """Markdown table of final held-out losses per (task, T), RNN and LSTM beside the baseline."""
    rows = ["| task | T | baseline | tanh RNN | LSTM |", "|---|---|---|---|---|"]
    by = {(r["task"], r["T"], r["model"]): r for r in results["runs"]}
    for task, T in sorted({(r["task"], r["T"]) for r in results["runs"]}):
        cell = lambda m: (f"{by[(task, T, m)]['test_loss']:.4f}" + (
            f" ({100 * by[(task, T, m)]['recall_accuracy']:.0f}% recalled)" if task == "copy" else "")
                          ) if (task, T, m) in by else "-"
        rows.append(f"| {task} | {T} | {by[next(k for k in by if k[:2] == (task, T))]['baseline']:.4f} | "
                    f"{cell('rnn')} | {cell('lstm')} |")
    return "\n".join(rows)


def make_figure(results: dict):
    fig, ax = common.new_figure(1, 2)
    for j, task in enumerate(("adding", "copy")):
        runs = [r for r in results["runs"] if r["task"] == task]
        colors = {T: f"C{i}" for i, T in enumerate(sorted({r["T"] for r in runs}))}
        for r in runs:
            ax[0, j].semilogy(r["eval_step"], [float(v) for v in r["eval"]], color=colors[r["T"]],
                              ls="-" if r["model"] == "lstm" else ":", label=f"{r['model']} T={r['T']}")
            if r["model"] == runs[0]["model"]:
                ax[0, j].axhline(r["baseline"], color=colors[r["T"]], lw=0.6, ls="--")
        ax[0, j].set(title=f"{task}: held-out loss (solid LSTM, dotted RNN, dashed baseline)", xlabel="step")
        ax[0, j].legend(fontsize=6, ncol=2)
        ax[0, j].grid(alpha=0.3)
    fig.tight_layout()
    return fig


if __name__ == "__main__":
    code = common.cli("long_range", PRESETS, main, make_figure)
    sys.exit(code)
