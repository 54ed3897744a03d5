"""The figure of the seq2seq experiment: validation exact match against training step, and the steps to 95% and 99%."""

from __future__ import annotations

import dataclasses
from experiments import common


def make_figure(results: dict):
    cfg = results["config"] if isinstance(results["config"], dict) else dataclasses.asdict(results["config"])
    fig, ax = common.new_figure(1, 2, size=(5.2, 3.8))
    left, right = ax[0, 0], ax[0, 1]
    variants = list(dict.fromkeys(r["variant"] for r in results["runs"]))
    for v, color in zip(variants, ("C0", "C1")):
        mine = [r for r in results["runs"] if r["variant"] == v]
        steps = max((r["eval_step"] for r in mine), key=len)
        curves = common.pad([r["accuracy_curve"] for r in mine])  # a seed that stopped at 99% is NaN after
        common.band(
            left,
            steps,
            curves,
            color=color,
            label=f"{v} input: mean, min-max over {len(mine)} seeds\n(a seed stops at 99%: dot)",
        )
        for r in mine:  # where each seed stopped
            left.plot(r["eval_step"][-1], r["accuracy_curve"][-1], "o", color=color, ms=3)
        for k, (level, marker) in enumerate(((95, "o"), (99, "s"))):
            s = results["summary"][f"{v}_steps_to_{level}"]
            y = k + (0.15 if color == "C0" else -0.15)
            right.errorbar(
                [s["mean"]],
                [y],
                xerr=[[s["mean"] - s["min"]], [s["max"] - s["mean"]]],
                fmt=marker,
                color=color,
                capsize=4,
                label=f"{v}" if k == 0 else None,
            )
            right.plot(s["values"], [y] * len(s["values"]), "x", color=color, ms=5)
    left.axhline(0.95, color="k", lw=0.6, ls=":", label="95% and 99%")
    left.axhline(0.99, color="k", lw=0.6, ls=":")
    left.set(
        title=f"addition, up to {cfg['digits']} digits: validation exact match",
        xlabel="training step",
        ylabel="exact match (fraction of problems)",
        ylim=(0, 1.02),
    )
    left.legend(loc="lower right", fontsize=7)
    left.grid(alpha=0.3)
    right.set(
        title="steps to reach a validation exact match\n(bar: min-max, x: each seed)",
        xlabel="training step",
        yticks=[0, 1],
        yticklabels=["95%", "99%"],
        ylim=(-0.6, 1.6),
    )
    right.set_xlim(0, cfg["steps"] * 1.02)
    right.axvline(cfg["steps"], color="k", lw=0.6, ls="--", label="step limit (a seed that never got there)")
    right.legend(loc="upper left", fontsize=7)
    right.grid(alpha=0.3)
    fig.tight_layout()
    return fig
