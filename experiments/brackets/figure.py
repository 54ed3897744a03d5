"""The figure of the brackets experiment: held-out accuracy against length, each cell over seeds."""

from __future__ import annotations

import dataclasses

import numpy as np

from experiments import common


def make_figure(results: dict):
    cfg = results["config"] if isinstance(results["config"], dict) else dataclasses.asdict(results["config"])
    lengths = list(cfg["lengths"])
    fig, ax = common.new_figure(1, 2, size=(5.4, 4.0))
    left, right = ax[0, 0], ax[0, 1]
    styles = {"rnn": ("C0", "o", "tanh RNN"), "lstm": ("C1", "s", "LSTM"), "gru": ("C2", "^", "GRU")}
    shift = {m: 1.0 + 0.04 * (k - (len(cfg["models"]) - 1) / 2) for k, m in enumerate(cfg["models"])}
    for kind in cfg["models"]:
        color, marker, name = styles.get(kind, (None, "o", kind))
        for a, key in ((left, "test_accuracy"), (right, "steps_run")):
            s = [results["summary"][f"{kind}_L{L}_{key}"] for L in lengths]
            mean = np.array([v["mean"] for v in s])
            x = np.array(lengths) * shift[kind]  # side by side, not on top of each other
            a.errorbar(
                x,
                mean,
                yerr=[mean - [v["min"] for v in s], [v["max"] for v in s] - mean],
                fmt=marker + "-",
                color=color,
                capsize=3,
                ms=4,
                label=f"{name}: mean, min-max over {len(cfg['seeds'])} seeds",
            )
    rule = [results["summary"][f"first_last_rule_L{L}_test_accuracy"] for L in lengths]
    left.plot(lengths, rule, "k--", lw=1, label="rule: first opens and last closes")
    left.axhline(0.5, color="0.5", ls=":", lw=1, label="chance")
    sizes = {s["length"]: s["test_size"] for s in results["sets"]}
    left.set(
        title="balanced brackets: held-out accuracy\n(n: distinct test strings, none of them trained on)",
        xlabel="string length (brackets)",
        ylabel="test accuracy (fraction of strings)",
        ylim=(0.38, 1.03),
    )
    right.axhline(cfg["steps"], color="k", ls="--", lw=0.8, label="step limit")
    right.set(
        title=f"training steps run (stopped at validation\naccuracy {cfg['stop_accuracy']} or "
        f"{cfg['patience']} evaluations without gain)",
        xlabel="string length (brackets)",
        ylabel=f"training steps (batches of {cfg['batch']})",
        ylim=(0, cfg["steps"] * 1.08),
    )
    for a in (left, right):
        a.set_xscale("log", base=2)
        a.set_xticks(lengths)
        a.set_xticklabels([f"{L}\nn={sizes[L]}" if a is left else str(L) for L in lengths], fontsize=8)
        a.minorticks_off()
        a.grid(alpha=0.3)
    left.legend(fontsize=7, loc="lower left", bbox_to_anchor=(0.0, 0.06))
    right.legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    return fig
