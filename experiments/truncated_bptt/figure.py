"""The figure of the truncated-BPTT experiment: the truncation sweep, the adding problem and the memory."""

from __future__ import annotations

import numpy as np
from experiments import common, tasks


def make_figure(results: dict):
    from experiments.truncated_bptt import FIRST_BASELINE_MSE

    """Validation loss at equal characters and at equal updates (mean, min-max band over seeds); the adding
    problem's MSE against ``k``; compiled memory against ``T``."""
    cfg = results["config"]
    get = (lambda name: cfg[name]) if isinstance(cfg, dict) else (lambda name: getattr(cfg, name))
    fig, ax = common.new_figure(2, 2, size=(5.6, 4.0))
    for col, (budget, axis, label) in enumerate(
        (("equal_characters", "characters", "training characters"), ("equal_updates", "updates", "updates"))
    ):
        a = ax[0, col]
        for k in get("truncations"):
            runs = [r for r in results["sweep"] if r["k"] == k]
            limit = runs[0][budget][axis]
            x = [p[axis] for p in runs[0]["curve"] if p[axis] <= limit]
            curves = [[p["validation_loss"] for p in r["curve"] if p[axis] <= limit] for r in runs]
            common.band(a, x, common.pad(curves), label=f"k = {k}")
        a.set(
            title=f"{label.split()[-1]} equal for every k: validation loss ({len(get('seeds'))} seeds)",
            xlabel=label,
            ylabel="validation loss (nats per character)",
        )
        a.set_xscale("log")
        a.legend(fontsize=8)
        a.grid(alpha=0.3, which="both")
    a = ax[1, 0]
    T = get("adding_T")
    for target, ks in dict(get("adding_truncations")).items():
        s = [results["spreads"][f"adding {target} k{k}"] for k in ks]
        mean = np.array([v["mean"] for v in s])
        err = np.array([[v["mean"] - v["min"] for v in s], [v["max"] - v["mean"] for v in s]])
        a.errorbar(
            ks,
            mean,
            yerr=err,
            marker="o",
            capsize=3,
            label=f"target: {target} marked value" + ("s" if target == "sum" else ""),
        )
    a.axhline(tasks.ADDING_BASELINE_MSE, color="k", ls=":", lw=1, label="predict 1 (sum): 1/6")
    a.axhline(FIRST_BASELINE_MSE, color="gray", ls="--", lw=1, label="predict 0.5 (first): 1/12")
    a.axvline(T / 2, color="tab:red", lw=0.8, alpha=0.6, label=f"k = T/2 = {T // 2}")
    a.set_yscale("log")
    a.set(
        title=f"adding problem, T = {T}: truncation k (k = T: full BPTT)",
        xlabel="truncation length k (steps)",
        ylabel="held-out MSE (mean, min-max)",
    )
    a.legend(fontsize=7)
    a.grid(alpha=0.3, which="both")
    for method, style in (("full", "o-"), ("remat", "s--"), ("truncated", "^:")):
        rows = [r for r in results["memory"] if r["method"] == method]
        ax[1, 1].loglog([r["T"] for r in rows], [r["total_bytes"] / 2**20 for r in rows], style, label=method)
    ax[1, 1].set(
        title="one gradient's compiled memory (XLA)", xlabel="sequence length T (characters)", ylabel="memory (MiB)"
    )
    ax[1, 1].legend()
    ax[1, 1].grid(alpha=0.3, which="both")
    fig.tight_layout()
    return fig
