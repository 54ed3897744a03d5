"""Gradient clipping by global norm on an exploding tanh RNN (``Whh = s Q`` with ``s >= 1.5``).

The same runs (seeds, data, learning rate) with plain SGD and with ``optax.clip_by_global_norm`` before SGD:
count the non-finite losses and the loss spikes, and check on every clipped step that the clipped gradient's
global norm is at most the threshold and that its direction is the raw gradient's.

    python experiments/gradient_clipping.py --preset cpu --out experiments/results
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
from jaxrnn import gradflow


@dataclasses.dataclass(frozen=True)
class Config:
    scale: float = 2.0               # Whh = scale * Q
    T: int = 50                      # adding-problem length
    hidden_size: int = 32
    batch: int = 32
    learning_rate: float = 0.1       # plain SGD
    threshold: float = 1.0           # global-norm clipping threshold
    steps: int = 1000
    seeds: tuple = (0, 1, 2, 3, 4)
    spike_factor: float = 4.0        # a spike: loss above spike_factor x the median of the last `window` losses
    window: int = 20


PRESETS = {
    "cpu": Config(),
    "tiny": Config(T=12, hidden_size=8, batch=8, steps=60, seeds=(0, 1), window=5),
}


def _init(cfg: Config, seed: int):
    key = jax.random.PRNGKey(seed)
    p = jaxrnn.init_rnn(key, 2, cfg.hidden_size, 1)
    return p._replace(Whh=gradflow.scaled_orthogonal(jax.random.fold_in(key, 1), cfg.hidden_size, cfg.scale))


def _loss(params, batch):
    xs, y = batch
    return jnp.mean((common.final_readout(params, xs)[:, 0] - y) ** 2)


def make_run(cfg: Config, clip: bool):
    """All ``cfg.steps`` SGD steps as one scan; records loss, raw and clipped global norm, cosine(raw, clipped)."""
    clipper = optax.clip_by_global_norm(cfg.threshold) if clip else optax.identity()
    sgd = optax.sgd(cfg.learning_rate)

    def one(state, key):
        params, sgd_state = state
        loss, grads = jax.value_and_grad(_loss)(params, common.adding_batch(key, cfg.T, cfg.batch))
        clipped, _ = clipper.update(grads, clipper.init(params))
        dot = sum(jnp.vdot(a, b) for a, b in zip(jax.tree.leaves(grads), jax.tree.leaves(clipped)))
        raw_norm, clipped_norm = common.global_norm(grads), common.global_norm(clipped)
        cosine = dot / (raw_norm * clipped_norm)
        updates, sgd_state = sgd.update(clipped, sgd_state, params)
        return (optax.apply_updates(params, updates), sgd_state), (loss, raw_norm, clipped_norm, cosine)

    @jax.jit
    def run(params, key):
        _, records = jax.lax.scan(one, (params, sgd.init(params)), jax.random.split(key, cfg.steps))
        return records

    return run


def count_spikes(losses, factor: float, window: int) -> int:
    """Steps whose (finite) loss exceeds ``factor`` times the median of the preceding ``window`` finite losses."""
    count = 0
    for t in range(window, len(losses)):
        previous = losses[t - window:t]
        previous = previous[np.isfinite(previous)]
        if np.isfinite(losses[t]) and previous.size and losses[t] > factor * np.median(previous):
            count += 1
    return count


def main(cfg: Config) -> dict:
    runs = {"none": make_run(cfg, clip=False), "global_norm": make_run(cfg, clip=True)}
    out = {name: [] for name in runs}
    for seed in cfg.seeds:
        params = _init(cfg, seed)
        for name, run in runs.items():
            loss, raw, clipped, cosine = map(np.asarray, run(params, jax.random.PRNGKey(1000 + seed)))
            finite = np.isfinite(loss)
            engaged = raw > cfg.threshold
            out[name].append({
                "seed": seed, "curve_step": common.thin(np.arange(cfg.steps)), "losses": common.thin(loss),
                "raw_grad_norm": common.thin(raw),
                "non_finite_losses": int((~finite).sum()),
                "first_non_finite_step": int(np.argmin(finite)) if not finite.all() else None,
                "spikes": count_spikes(loss, cfg.spike_factor, cfg.window),
                "final_loss_mean_last_50": float(np.mean(loss[-50:])),
                "max_raw_grad_norm": float(np.nanmax(np.where(np.isfinite(raw), raw, np.nan))) if
                np.isfinite(raw).any() else float("nan"),
                "steps_clipped": int(engaged.sum()) if name == "global_norm" else 0,
                "max_clipped_norm": float(np.max(clipped[np.isfinite(clipped)])) if name == "global_norm" else None,
                "max_direction_error": float(np.max(np.abs(1 - cosine[engaged]))) if name == "global_norm" and
                engaged.any() else 0.0,
            })
    clipped = out["global_norm"]
    summary = {
        "scale": cfg.scale, "threshold": cfg.threshold, "seeds": len(cfg.seeds), "steps": cfg.steps,
        "baseline_mse": common.ADDING_BASELINE_MSE,
        **{f"{n}_runs_with_non_finite_loss": sum(r["non_finite_losses"] > 0 for r in v) for n, v in out.items()},
        **{f"{n}_non_finite_losses_total": sum(r["non_finite_losses"] for r in v) for n, v in out.items()},
        **{f"{n}_spikes_total": sum(r["spikes"] for r in v) for n, v in out.items()},
        **{f"{n}_final_loss_median": float(np.median([r["final_loss_mean_last_50"] for r in v]))
           for n, v in out.items()},
        "none_max_raw_grad_norm": float(np.nanmax([r["max_raw_grad_norm"] for r in out["none"]])),
        "clipped_steps_total": sum(r["steps_clipped"] for r in clipped),
        "clipped_max_norm": max(r["max_clipped_norm"] for r in clipped),
        "clipped_max_direction_error": max(r["max_direction_error"] for r in clipped),
    }
    return {"config": cfg, "summary": summary, "runs": out}


def make_figure(results: dict):
    fig, ax = common.new_figure(1, 2)
    colors = {"none": "tab:red", "global_norm": "tab:blue"}
    for name, runs in results["runs"].items():
        for i, r in enumerate(runs):
            step = np.asarray(r["curve_step"])
            loss = np.asarray([float(v) for v in r["losses"]])
            raw = np.asarray([float(v) for v in r["raw_grad_norm"]])
            label = {"none": "no clipping", "global_norm": "clip global norm"}[name] if i == 0 else None
            ax[0, 0].semilogy(step, loss, color=colors[name], lw=0.6, alpha=0.7, label=label)
            ax[0, 1].semilogy(step, raw, color=colors[name], lw=0.6, alpha=0.7, label=label)
    ax[0, 0].axhline(results["summary"]["baseline_mse"], color="k", ls="--", lw=0.8, label="predict 1: MSE 1/6")
    ax[0, 0].set(title=f"tanh RNN, Whh = {results['summary']['scale']} Q: training loss", xlabel="SGD step")
    ax[0, 1].axhline(results["summary"]["threshold"], color="k", ls="--", lw=0.8, label="threshold")
    ax[0, 1].set(title="global gradient norm before clipping", xlabel="SGD step")
    for a in ax.flat:
        a.legend(fontsize=7)
        a.grid(alpha=0.3)
    fig.tight_layout()
    return fig


if __name__ == "__main__":
    sys.exit(common.cli("gradient_clipping", PRESETS, main, make_figure))
