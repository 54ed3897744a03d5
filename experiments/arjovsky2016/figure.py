"""The figure of the Arjovsky et al. 2016 setups: held-out loss against iterations per task and length (every seed
a thin line, the mean thick), with the paper's baselines."""

from __future__ import annotations

import dataclasses

import numpy as np

from experiments import common

COLORS = {"rnn": "tab:red", "lstm": "tab:blue", "gru": "tab:green"}
NAMES = {"rnn": "tanh RNN", "lstm": "LSTM", "gru": "GRU"}


def make_figure(results: dict):
    cfg = results["config"] if isinstance(results["config"], dict) else dataclasses.asdict(results["config"])
    runs = results["runs"]
    cols = max(len(cfg["adding_lengths"]), len(cfg["copy_lengths"]), 1)
    fig, ax = common.new_figure(2, cols, size=(4.0, 3.2))
    for i, task in enumerate(("adding", "copy")):
        for j, T in enumerate(cfg[f"{task}_lengths"]):
            a = ax[i, j]
            mine = [r for r in runs if (r["task"], r["T"]) == (task, T)]
            if not mine:  # a sweep cut short: the longer lengths come last
                a.text(0.5, 0.5, "not run yet", ha="center", va="center", transform=a.transAxes, color="0.4")
                a.set(title=f"{task}, T = {T}", xticks=[], yticks=[])
                continue
            for kind in cfg["models"]:
                rs = [r for r in mine if r["model"] == kind]
                if not rs:
                    continue
                hidden = rs[0]["hidden_size"]
                for r in rs:
                    a.plot(r["eval_step"], r["held_out_loss"], color=COLORS.get(kind), lw=0.6, alpha=0.5)
                curves = common.pad([r["held_out_loss"] for r in rs])
                steps = max((r["eval_step"] for r in rs), key=len)
                a.plot(
                    steps,
                    np.nanmean(curves, axis=0),
                    color=COLORS.get(kind),
                    lw=2,
                    label=f"{NAMES.get(kind, kind)} (H = {hidden}), {len(rs)} seeds",
                )
            if mine:
                a.axhline(mine[0]["baseline"], color="k", ls="--", lw=0.8, label="baseline")
            a.set(
                title=f"{task}, T = {T}",
                xlabel="iteration",
                ylabel="held-out MSE" if task == "adding" else "held-out cross-entropy per step",
                yscale="log" if task == "adding" else "linear",
            )
            a.grid(alpha=0.3)
            a.legend(fontsize=6)
        for j in range(len(cfg[f"{task}_lengths"]), cols):
            ax[i, j].axis("off")
    fig.suptitle("Arjovsky et al. 2016 setups: RMSProp 1e-3, batch 20", fontsize=10)
    fig.tight_layout()
    return fig


def table(results: dict) -> str:
    """Markdown: the final held-out loss per task, length and model (mean ± std over the seeds finished)."""
    cfg = results["config"] if isinstance(results["config"], dict) else dataclasses.asdict(results["config"])
    s = results["summary"]
    rows = ["| task | T | baseline | " + " | ".join(NAMES.get(m, m) for m in cfg["models"]) + " |"]
    rows.append("|---|---|---|" + "---|" * len(cfg["models"]))
    for task in ("adding", "copy"):
        for T in cfg[f"{task}_lengths"]:
            if f"{task}_T{T}_baseline" not in s:
                continue
            cells = []
            for m in cfg["models"]:
                v = s.get(f"{task}_T{T}_{m}_final_held_out_loss")
                cells.append("—" if v is None else f"{v['mean']:.4f} ± {v['std']:.4f} ({v['n']})")
            rows.append(f"| {task} | {T} | {s[f'{task}_T{T}_baseline']:.4f} | " + " | ".join(cells) + " |")
    return "\n".join(rows)
