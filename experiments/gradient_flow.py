"""Gradient flow during training: ``||dL/d state_t||`` against the lag, recorded while an RNN and an LSTM learn.

``L`` is the loss at the last position ``T`` of a probe batch (the adding problem's squared error; the
character model's cross-entropy of its last prediction); the lag of ``state_t`` is ``T - t``. The state is
``h_t`` for the RNN and ``(h_t, c_t)`` for the LSTM (``jaxrnn.gradflow.state_gradients``, one ``jax.vjp``).
Every ``record_every`` updates the median over the probe sequences is recorded for every lag: the heatmaps
(update x lag) show where the gradient reaches during training, and whether the RNN's vanishes with the lag
while the LSTM's does not. Several seeds (the initial parameters and the training data).

    python -m experiments.gradient_flow --preset cpu --out experiments/results
"""

from __future__ import annotations

import dataclasses
import functools
import sys


import jax
import jax.numpy as jnp
import numpy as np
import optax

import jaxrnn
from experiments import common, stats, tasks
from jaxrnn import gradflow
from jaxrnn.data import DEFAULT_CORPUS, load_splits

TASKS = ("adding", "char_lm")
MODELS = ("rnn", "lstm")


@dataclasses.dataclass(frozen=True)
class Config:
    T: int = 100  # probe and training length: lags 1..T
    hidden_size: int = 64
    batch: int = 32
    probe_batch: int = 64  # sequences whose median gradient norm is recorded
    steps: int = 1000
    record_every: int = 50  # updates between records (the first record is at initialisation)
    learning_rate: float = 3e-3  # Adam after global-norm clipping at ``clip``
    clip: float = 1.0
    lag: int = 50  # the lag quoted in the summary
    corpus: str = DEFAULT_CORPUS
    seeds: tuple = (0, 1, 2, 3, 4)  # 5 against 5: p = 0.008 at best, below 0.05 / 4 comparisons (Holm)


PRESETS = {
    "cpu": Config(),
    "tiny": Config(T=30, hidden_size=16, batch=16, probe_batch=16, steps=60, record_every=30, lag=25, seeds=(0, 1)),
}


def char_windows(ids: np.ndarray, T: int, B: int):
    """``make_batch(key) -> (xs (T, B), targets (T, B))``: ``B`` random windows of ``T + 1`` characters."""
    data = jnp.asarray(ids, jnp.int32)

    def make_batch(key):
        starts = jax.random.randint(key, (B,), 0, len(ids) - T - 1)
        windows = jax.vmap(lambda s: jax.lax.dynamic_slice(data, (s,), (T + 1,)))(starts)  # (B, T + 1)
        return windows[:, :-1].T, windows[:, 1:].T

    return make_batch


@functools.lru_cache(maxsize=2)
def training_ids(corpus: str) -> tuple[int, np.ndarray]:
    """Vocabulary size and the training ids (the first 90%) of a built-in corpus."""
    splits = load_splits(corpus)
    return splits.vocab.size, splits.train


def task_pieces(cfg: Config, task: str):
    """``(input size, output size, make_batch, loss_fn(params, batch), last_loss(params, ys)(hs, carry_T))``.

    ``loss_fn`` trains (adding: MSE of the final readout; char LM: mean cross-entropy over the window);
    ``last_loss`` is summed over the batch and depends only on the last position, so that ``dL/d state_t`` is
    the gradient at lag ``T - t`` of each sequence's own last loss.
    """
    if task == "adding":
        make_batch = lambda k: tasks.adding_batch(k, cfg.T, cfg.batch)
        loss_fn = lambda p, batch: jnp.mean((tasks.final_readout(p, batch[0])[:, 0] - batch[1]) ** 2)
        last_loss = lambda p, ys: (
            lambda hs, carry_T: jnp.sum((jaxrnn.readout(p, tasks.hidden(carry_T))[:, 0] - ys) ** 2)
        )
        return 2, 1, make_batch, loss_fn, last_loss
    V, train = training_ids(cfg.corpus)
    make_batch = char_windows(train, cfg.T, cfg.batch)

    def loss_fn(p, batch):
        xs, ys = batch
        return jaxrnn.sequence_loss(p, jaxrnn.initial_carry(p, xs.shape[1:]), xs, ys, reduction="mean")[0]

    def last_loss(p, ys):
        return lambda hs, carry_T: jaxrnn.softmax_cross_entropy(jaxrnn.readout(p, hs[-1]), ys[-1])

    return V, V, make_batch, loss_fn, last_loss


def probe(batches, B: int):
    """Stack ``n`` batches (leading axis ``n``; the batch axis of ``xs`` is 1, of a ``(n, B)`` target 1, of
    ``(n, T, B)`` targets 2) into one of ``B`` sequences."""
    xs, ys = batches
    xs = jnp.concatenate(list(xs), axis=1)[:, :B]
    ys = jnp.concatenate(list(ys), axis=-1)[..., :B]
    return xs, ys


def run_one(cfg: Config, task: str, kind: str, seed: int) -> dict:
    """Train one model, recording the median ``||dL/d state_t||`` by lag every ``record_every`` updates."""
    D, V, make_batch, loss_fn, last_loss = task_pieces(cfg, task)
    key = jax.random.fold_in(jax.random.PRNGKey(seed), TASKS.index(task))
    params = tasks.init_model(kind, key, D, cfg.hidden_size, V)
    probe_xs, probe_ys = probe(
        jax.vmap(make_batch)(jax.random.split(jax.random.fold_in(key, 1), -(-cfg.probe_batch // cfg.batch))),
        cfg.probe_batch,
    )

    @jax.jit
    def norms_by_lag(p):
        carry = jaxrnn.initial_carry(p, (cfg.probe_batch,))
        g = gradflow.state_gradients(jaxrnn.step_for(p), p, carry, probe_xs, last_loss(p, probe_ys))
        sq = sum(jnp.sum(leaf**2, axis=-1) for leaf in jax.tree.leaves(g))  # (T, B)
        return gradflow.by_lag(jnp.median(jnp.sqrt(sq), axis=1)), loss_fn(p, (probe_xs, probe_ys))

    optimizer = optax.chain(optax.clip_by_global_norm(cfg.clip), optax.adam(cfg.learning_rate))
    opt_state = optimizer.init(params)
    run = common.make_trainer(loss_fn, optimizer, make_batch, cfg.record_every)
    updates, norms, probe_loss, train_loss = [], [], [], []
    for i in range(cfg.steps // cfg.record_every + 1):
        n, loss = norms_by_lag(params)
        updates.append(i * cfg.record_every)
        norms.append(np.asarray(n).tolist())
        probe_loss.append(float(loss))
        if i == cfg.steps // cfg.record_every:
            break
        params, opt_state, losses, _ = run(params, opt_state, jax.random.fold_in(key, 2 + i))
        train_loss.append(float(np.mean(losses)))
    return {
        "task": task,
        "model": kind,
        "seed": seed,
        "updates": updates,
        "median_norm_by_lag": norms,
        "probe_loss": probe_loss,
        "train_loss_per_record": train_loss,
    }


def main(cfg: Config, runs: common.Runs | None = None) -> dict:
    kept = runs or common.Runs()
    runs = [
        kept({"task": task, "model": kind, "seed": seed}, lambda t=task, k=kind, s=seed: run_one(cfg, t, k, s))
        for task in TASKS
        for kind in MODELS
        for seed in cfg.seeds
    ]
    spreads, comparisons = {}, {}
    for task in TASKS:
        at = {}
        for kind in MODELS:
            rs = [r for r in runs if r["task"] == task and r["model"] == kind]
            for when, i in (("init", 0), ("end", -1)):
                at[kind, when] = common.spread([r["median_norm_by_lag"][i][cfg.lag - 1] for r in rs])
                spreads[f"{task} {kind}: median norm at lag {cfg.lag}, {when}"] = at[kind, when]
            spreads[f"{task} {kind}: probe loss, init"] = common.spread([r["probe_loss"][0] for r in rs])
            spreads[f"{task} {kind}: probe loss, end"] = common.spread([r["probe_loss"][-1] for r in rs])
        for when in ("init", "end"):
            comparisons[f"{task}, {when}: norm at lag {cfg.lag}"] = stats.compare(
                at["rnn", when]["values"], at["lstm", when]["values"], ("rnn", "lstm"), lower_is_better=False
            )
    comparisons = stats.decide(comparisons)
    summary = {f"{name} (mean of {v['n']} seeds)": v["mean"] for name, v in spreads.items()}
    return {
        "config": cfg,
        "summary": summary,
        "spreads": spreads,
        "comparisons": comparisons,
        "verdicts": {name: c["verdict"] for name, c in comparisons.items()},
        "runs": runs,
        "adding_baseline_mse": tasks.ADDING_BASELINE_MSE,
    }


def make_figure(results: dict):
    """Per task: the RNN's and the LSTM's heatmap (first seed, update x lag, shared log colour scale), and the
    norm at the quoted lag against updates (mean and min-max over seeds)."""
    from matplotlib.colors import LogNorm

    cfg = results["config"]
    lag = cfg["lag"] if isinstance(cfg, dict) else cfg.lag
    fig, ax = common.new_figure(len(TASKS), 3, size=(4.6, 3.6))
    for row, task in enumerate(TASKS):
        first = {kind: next(r for r in results["runs"] if r["task"] == task and r["model"] == kind) for kind in MODELS}
        values = np.concatenate([np.ravel(first[k]["median_norm_by_lag"]) for k in MODELS])
        values = values[np.isfinite(values) & (values > 0)]
        norm = LogNorm(vmin=max(values.min(), values.max() * 1e-12), vmax=values.max())
        for col, kind in enumerate(MODELS):
            r = first[kind]
            grid = np.asarray(r["median_norm_by_lag"]).T  # (lag, record)
            u, lags = np.asarray(r["updates"]), np.arange(1, grid.shape[0] + 1)
            image = ax[row, col].pcolormesh(
                u, lags, np.clip(grid, norm.vmin, None), norm=norm, shading="nearest", cmap="viridis"
            )
            ax[row, col].set(
                title=f"{task}: {kind.upper()} (seed {r['seed']})", xlabel="update", ylabel="lag T - t (steps)"
            )
            bar = fig.colorbar(image, ax=ax[row, col])
            bar.set_label(
                ("median ||dL/d(h_t, c_t)||" if kind == "lstm" else "median ||dL/dh_t||") + " (log; floor 1e-12 x max)"
            )
        a = ax[row, 2]
        for kind in MODELS:
            rs = [r for r in results["runs"] if r["task"] == task and r["model"] == kind]
            curves = common.pad([[n[lag - 1] for n in r["median_norm_by_lag"]] for r in rs])
            common.band(a, rs[0]["updates"], curves, label=kind.upper(), log=True)
        a.set(
            title=f"{task}: norm at lag {lag} ({len(rs)} seeds)",
            xlabel="update",
            ylabel=f"median gradient norm at lag {lag}",
        )
        a.grid(alpha=0.3, which="both")
        a.legend()
    fig.tight_layout()
    return fig


if __name__ == "__main__":
    sys.exit(common.cli("gradient_flow", PRESETS, main, make_figure))
