"""Gradient clipping by global norm on a tanh RNN (``Whh = s Q``) trained by plain SGD on the adding problem.

Each regime trains the same seeds on the same data three ways: SGD at a learning rate ``lr`` without clipping,
the same with ``optax.clip_by_global_norm`` before SGD, and without clipping at a small learning rate (the
control: what one does instead of clipping). It counts non-finite losses and loss spikes, measures how fast
and how far each arm learns against the constant baseline (MSE 1/6), and checks on every clipped step that the
clipped gradient's global norm is at most the threshold and that its direction is the raw gradient's.

    python -m experiments.gradient_clipping --preset cpu --out experiments/results
"""

from __future__ import annotations

import dataclasses
import sys


import jax
import jax.numpy as jnp
import numpy as np
import optax

import jaxrnn
from experiments import common, stats, tasks
from jaxrnn import gradflow


@dataclasses.dataclass(frozen=True)
class Regime:
    name: str
    scale: float  # Whh = scale * Q
    T: int  # adding-problem length
    learning_rate: float  # SGD, with and without clipping
    threshold: float  # global-norm clipping threshold
    control_learning_rate: float  # SGD without clipping, small enough not to diverge


@dataclasses.dataclass(frozen=True)
class Config:
    # spiky: the median gradient norm is below 1 and unclipped SGD diverges now and then; the threshold 3 cuts
    # only the spikes. exploding: the gradient is large on most steps and threshold 1 clips nearly all of them.
    regimes: tuple = (Regime("spiky", 1.3, 20, 0.1, 3.0, 0.03), Regime("exploding", 2.0, 50, 0.1, 1.0, 0.01))
    hidden_size: int = 32
    batch: int = 32
    steps: int = 2000
    seeds: tuple = tuple(range(20))  # 20: a divergence rate of 2/5 against 0 reaches Fisher p < 0.05 (README)
    spike_factor: float = 4.0  # a spike: loss above spike_factor x the median of the last `window` losses
    window: int = 20
    smooth: int = 50  # running mean over this many steps for the curves and the learning speed


PRESETS = {
    "cpu": Config(),
    "tiny": Config(
        regimes=(Regime("spiky", 1.3, 10, 0.1, 1.0, 0.03),),
        hidden_size=8,
        batch=8,
        steps=100,
        seeds=(0, 1),
        window=5,
        smooth=10,
    ),
}
ARMS = ("none", "global_norm", "control")  # unclipped at lr, clipped at lr, unclipped at the control lr
LABELS = {"none": "no clipping", "global_norm": "clip global norm", "control": "no clipping, small lr"}


def _init(cfg: Config, regime: Regime, seed: int):
    key = jax.random.PRNGKey(seed)
    p = jaxrnn.init_rnn(key, 2, cfg.hidden_size, 1)
    return p._replace(Whh=gradflow.scaled_orthogonal(jax.random.fold_in(key, 1), cfg.hidden_size, regime.scale))


def _loss(params, batch):
    xs, y = batch
    return jnp.mean((tasks.final_readout(params, xs)[:, 0] - y) ** 2)


def make_run(cfg: Config, regime: Regime, arm: str):
    """All ``cfg.steps`` SGD steps as one scan; records loss, raw and clipped global norm, cosine(raw, clipped)."""
    clipper = optax.clip_by_global_norm(regime.threshold) if arm == "global_norm" else optax.identity()
    sgd = optax.sgd(regime.control_learning_rate if arm == "control" else regime.learning_rate)

    def one(state, key):
        params, sgd_state = state
        loss, grads = jax.value_and_grad(_loss)(params, tasks.adding_batch(key, regime.T, cfg.batch))
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
        previous = losses[t - window : t]
        previous = previous[np.isfinite(previous)]
        if np.isfinite(losses[t]) and previous.size and losses[t] > factor * np.median(previous):
            count += 1
    return count


def running_mean(losses, n: int):
    """Mean of the last ``n`` losses at every step from ``n - 1`` on; non-finite once any of them is."""
    c = np.cumsum(np.concatenate([[0.0], np.asarray(losses, float)]))
    with np.errstate(invalid="ignore"):
        return (c[n:] - c[:-n]) / n


def steps_to(smoothed, level: float, n: int):
    """The first step at which the running mean is below ``level`` (``None`` if never)."""
    below = np.flatnonzero(smoothed < level)
    return int(below[0]) + n - 1 if below.size else None


def run_arm(cfg: Config, regime: Regime, arm: str, seed: int, run) -> dict:
    loss, raw, clipped, cosine = map(np.asarray, run(_init(cfg, regime, seed), jax.random.PRNGKey(1000 + seed)))
    finite = np.isfinite(loss)
    engaged = raw > regime.threshold
    smoothed = running_mean(loss, cfg.smooth)
    level = tasks.ADDING_BASELINE_MSE / 2
    stop = int(np.argmin(finite)) if not finite.all() else cfg.steps
    return {
        "seed": seed,
        "curve_step": common.thin(np.arange(cfg.smooth - 1, cfg.steps)),
        "smoothed_loss": common.thin(smoothed),
        "raw_grad_norm": common.thin(raw),
        "grad_norm_step": common.thin(np.arange(cfg.steps)),
        "non_finite_losses": int((~finite).sum()),
        "first_non_finite_step": stop if stop < cfg.steps else None,
        "spikes": count_spikes(loss, cfg.spike_factor, cfg.window),
        "final_loss": float(np.mean(loss[-cfg.smooth :])),
        "steps_to_half_baseline": steps_to(smoothed, level, cfg.smooth),
        "median_raw_grad_norm": float(np.median(raw)),
        "max_raw_grad_norm": float(np.max(raw[np.isfinite(raw)])) if np.isfinite(raw).any() else float("nan"),
        "steps_clipped": int(engaged.sum()) if arm == "global_norm" else 0,
        "max_clipped_norm": float(np.max(clipped[np.isfinite(clipped)])) if arm == "global_norm" else None,
        "max_direction_error": float(np.max(np.abs(1 - cosine[engaged])))
        if arm == "global_norm" and engaged.any()
        else 0.0,
    }


def main(cfg: Config, runs: common.Runs | None = None) -> dict:
    runs = runs or common.Runs()
    out, summary = {}, {"seeds": len(cfg.seeds), "steps": cfg.steps, "baseline_mse": tasks.ADDING_BASELINE_MSE}
    comparisons = {}
    for regime in cfg.regimes:
        compiled = {}

        def one(arm, seed, regime=regime):
            if arm not in compiled:
                compiled[arm] = make_run(cfg, regime, arm)
            return run_arm(cfg, regime, arm, seed, compiled[arm])

        out[regime.name] = {
            arm: [runs({"regime": regime.name, "arm": arm, "seed": s}, lambda a=arm, s=s: one(a, s)) for s in cfg.seeds]
            for arm in ARMS
        }
        rs, name = out[regime.name], regime.name
        final = {arm: [r["final_loss"] for r in rs[arm]] for arm in ARMS}
        diverged = {arm: sum(r["non_finite_losses"] > 0 for r in rs[arm]) for arm in ARMS}
        for arm in ARMS:
            summary[f"{name}_{arm}_runs_with_non_finite_loss"] = diverged[arm]
            summary[f"{name}_{arm}_spikes_total"] = sum(r["spikes"] for r in rs[arm])
            summary[f"{name}_{arm}_final_loss"] = common.spread(final[arm])
            reached = [r["steps_to_half_baseline"] for r in rs[arm] if r["steps_to_half_baseline"] is not None]
            summary[f"{name}_{arm}_runs_below_half_baseline"] = len(reached)
            summary[f"{name}_{arm}_steps_to_half_baseline"] = common.spread(reached) if reached else None
        clipped = rs["global_norm"]
        summary.update(
            {
                f"{name}_threshold": regime.threshold,
                f"{name}_median_raw_grad_norm_clipped_arm": float(
                    np.median([r["median_raw_grad_norm"] for r in clipped])
                ),
                f"{name}_clipped_max_norm_over_threshold": max(r["max_clipped_norm"] for r in clipped)
                / regime.threshold,
                f"{name}_none_max_raw_grad_norm": max(r["max_raw_grad_norm"] for r in rs["none"]),
                f"{name}_clipped_steps_total": sum(r["steps_clipped"] for r in clipped),
                f"{name}_clipped_max_norm": max(r["max_clipped_norm"] for r in clipped),
                f"{name}_clipped_max_direction_error": max(r["max_direction_error"] for r in clipped),
            }
        )
        n = len(cfg.seeds)
        comparisons[f"{name}: runs diverged, clipped vs none"] = stats.compare_counts(
            (diverged["global_norm"], diverged["none"]), (n, n), ("clipped", "unclipped")
        )
        comparisons[f"{name}: final loss, clipped vs none"] = stats.compare(
            final["global_norm"], final["none"], ("clipped", "unclipped")
        )
        comparisons[f"{name}: final loss, clipped vs small lr"] = stats.compare(
            final["global_norm"], final["control"], ("clipped", "small lr")
        )
        speed = {  # a run that never got below half the baseline counts as the slowest
            arm: [np.inf if r["steps_to_half_baseline"] is None else r["steps_to_half_baseline"] for r in rs[arm]]
            for arm in ("global_norm", "control")
        }
        comparisons[f"{name}: steps to half the baseline, clipped vs small lr"] = stats.compare(
            speed["global_norm"], speed["control"], ("clipped", "small lr")
        )
    summary["comparisons"] = stats.decide(comparisons)
    summary["clipped_max_norm_over_threshold"] = max(
        summary[f"{r.name}_clipped_max_norm_over_threshold"] for r in cfg.regimes
    )
    summary["clipped_max_direction_error"] = max(summary[f"{r.name}_clipped_max_direction_error"] for r in cfg.regimes)
    summary["clipped_steps_total"] = sum(summary[f"{r.name}_clipped_steps_total"] for r in cfg.regimes)
    return {"config": cfg, "summary": summary, "runs": out}


COLORS = {"none": "tab:red", "global_norm": "tab:blue", "control": "tab:gray"}
LOSS_RANGE, NORM_RANGE = (1e-3, 10.0), (1e-2, 1e4)


def make_figure(results: dict):
    """Per regime (row): running-mean training loss (mean line, min-max band over seeds; an x where a run's loss
    stopped being finite) and the raw gradient norm, both on y-ranges clipped so that the finite runs stay
    readable (points beyond the range drawn at its edge)."""
    cfg = results["config"]
    regimes = cfg.regimes
    fig, ax = common.new_figure(len(regimes), 2, size=(5.4, 3.6))
    for i, regime in enumerate(regimes):
        rs = results["runs"][regime.name]
        for arm in ARMS:
            lr = regime.control_learning_rate if arm == "control" else regime.learning_rate
            label = f"{LABELS[arm]} (lr {lr:g})"
            step = np.asarray(rs[arm][0]["curve_step"], float)
            curves = np.array([[float(v) for v in r["smoothed_loss"]] for r in rs[arm]])
            shown = np.clip(np.where(np.isfinite(curves), curves, np.nan), *LOSS_RANGE)
            common.band(ax[i, 0], step, shown, label=label, color=COLORS[arm], log=True)
            stops = [r["first_non_finite_step"] for r in rs[arm] if r["first_non_finite_step"] is not None]
            if stops:
                ax[i, 0].plot(
                    stops,
                    [LOSS_RANGE[1]] * len(stops),
                    "x",
                    color=COLORS[arm],
                    ms=8,
                    mew=2,
                    clip_on=False,
                    label=f"{LABELS[arm]}: loss non-finite from here ({len(stops)} runs)",
                )
            norm_step = np.asarray(rs[arm][0]["grad_norm_step"], float)
            norms = np.array([[float(v) for v in r["raw_grad_norm"]] for r in rs[arm]])
            norms = np.clip(np.where(np.isfinite(norms), norms, np.nan), *NORM_RANGE)
            common.band(ax[i, 1], norm_step, norms, label=label, color=COLORS[arm], log=True, alpha=0.15)
        ax[i, 0].axhline(results["summary"]["baseline_mse"], color="k", ls="--", lw=0.8, label="predict 1: MSE 1/6")
        ax[i, 0].set(
            title=f"{regime.name}: tanh RNN, Whh = {regime.scale:g} Q, adding T = {regime.T}",
            xlabel="SGD step",
            ylabel=f"training MSE (running mean of {cfg.smooth})",
            ylim=LOSS_RANGE,
        )
        ax[i, 1].axhline(regime.threshold, color="k", ls="--", lw=0.8, label="clipping threshold")
        ax[i, 1].set(
            title=f"{regime.name}: global gradient norm before clipping",
            xlabel="SGD step",
            ylabel=f"||dL/dθ|| (clipped to {NORM_RANGE[1]:g} for display)",
            ylim=NORM_RANGE,
        )
    for a in ax.flat:
        a.legend(fontsize=7)
        a.grid(alpha=0.3)
    fig.tight_layout()
    return fig


if __name__ == "__main__":
    sys.exit(common.cli("gradient_clipping", PRESETS, main, make_figure))
