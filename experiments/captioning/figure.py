"""The captioning figure: held-out images with their captions, exact match against training step, final scores."""

from __future__ import annotations

import dataclasses
import numpy as np
from experiments import common


NAMES = {"init": "image as h_0 (init)", "first_input": "image as first input", "tiles": "tile classifier (no RNN)"}


def make_figure(results: dict):
    """Eight held-out images with the first seed's captions; exact match against training step (mean and
    min-max over seeds); the final greedy scores with their min-max."""
    ex = results["examples"]
    cfg = results["config"] if isinstance(results["config"], dict) else dataclasses.asdict(results["config"])
    images = np.asarray(ex["images"], dtype=float)
    fig, ax = common.new_figure(3, 4, size=(3.3, 1.9))
    for j in range(8):
        a = ax[j // 4, j % 4]
        a.imshow(images[j], cmap="gray_r", vmin=0, vmax=1)
        lines = [f"truth: {ex['truth'][j]}"]
        for r in results["runs"]:
            if r["seed"] == ex["seed"]:
                cap = r["greedy_captions"][j]
                lines.append(f"{r['mode']}: {cap}" + ("" if cap == ex["truth"][j] else "  X"))
        a.set_title("\n".join(lines), fontsize=7)
        a.axis("off")
    grid = ax[2, 0].get_gridspec()
    for a in ax[2]:
        a.remove()
    curves, bars = fig.add_subplot(grid[2, :2]), fig.add_subplot(grid[2, 2:])
    modes = list(dict.fromkeys(r["mode"] for r in results["runs"]))
    for k, mode in enumerate(modes):
        mine = [r for r in results["runs"] if r["mode"] == mode]
        common.band(
            curves,
            mine[0]["eval_step"],
            [r["exact_match_curve"] for r in mine],
            color=f"C{k}",
            label=NAMES.get(mode, mode),
        )
        for m, metric in enumerate(("exact_match", "word_accuracy")):
            s = results["summary"][f"{mode}_greedy_{metric}"]
            x = m + (k - (len(modes) - 1) / 2) * 0.2
            bars.errorbar(
                x,
                s["mean"],
                yerr=[[s["mean"] - s["min"]], [s["max"] - s["mean"]]],
                fmt="os^"[k % 3],
                color=f"C{k}",
                capsize=4,
                label=NAMES.get(mode, mode) if m == 0 else None,
            )
            bars.plot([x] * s["n"], s["values"], "_", color=f"C{k}", ms=8)
    n = sum(r["mode"] == modes[0] for r in results["runs"])
    lowest = min(min(r["exact_match_curve"]) for r in results["runs"])
    curves.set(
        title=f"held-out exact match, greedy (mean, min-max over {n} seeds)",
        xlabel=f"training step (batches of {cfg['batch']} images)",
        ylabel="exact match (fraction of images)",
        ylim=(max(0.0, lowest - 0.05), 1.005),
    )
    curves.legend(fontsize=7, loc="lower right")
    curves.grid(alpha=0.3)
    lows = [results["summary"][f"{m}_greedy_exact_match"]["min"] for m in modes]
    bars.set(
        title=f"final greedy scores, {n} seeds (marker: mean, bar: min-max, dash: a seed)",
        xticks=[0, 1],
        xticklabels=["exact match (whole caption)", "per word"],
        xlim=(-0.5, 1.5),
        ylabel="fraction right",
        ylim=(max(0.0, min(lows) - 0.05), 1.005),
    )
    bars.legend(fontsize=7, loc="lower right")
    bars.grid(alpha=0.3, axis="y")
    fig.suptitle("held-out images (unseen scans), greedy captions of the first seed (X: wrong)", fontsize=9)
    fig.tight_layout()
    return fig
