"""The figure of the brackets experiment: test accuracy against length (every seed a point), the best window rule,
and each cell's learning-rate search on the validation set."""

from __future__ import annotations

import dataclasses

import numpy as np

from experiments import common

STYLES = {"rnn": ("C0", "o", "tanh RNN"), "lstm": ("C1", "s", "LSTM"), "gru": ("C2", "^", "GRU")}


def make_figure(results: dict):
    cfg = results["config"] if isinstance(results["config"], dict) else dataclasses.asdict(results["config"])
    s = results["summary"]
    lengths = list(cfg["test_lengths"])
    fig, ax = common.new_figure(1, 2, size=(5.4, 4.0))
    left, right = ax[0, 0], ax[0, 1]
    models = list(cfg["models"])
    for j, kind in enumerate(models):
        color, marker, name = STYLES.get(kind, (None, "o", kind))
        x = np.array(lengths) * (1.0 + 0.05 * (j - (len(models) - 1) / 2))  # side by side
        values = np.array([s[f"{kind}_L{L}_test_accuracy"]["values"] for L in lengths])  # (lengths, seeds)
        for i in range(values.shape[1]):
            left.plot(x, values[:, i], marker, color=color, alpha=0.35, ms=3, mew=0)
        left.plot(x, values.mean(axis=1), marker + "-", color=color, ms=5, label=f"{name}: mean and each seed")
        search = results["learning_rate_search"][kind]
        right.plot(
            [r["learning_rate"] for r in search],
            [r["validation_accuracy"] for r in search],
            marker + "-",
            color=color,
            label=f"{name} (chosen {s[f'{kind}_learning_rate']:g})",
        )
    rule = [s[f"window_rule_L{L}_test_accuracy"] for L in lengths]
    left.plot(lengths, rule, "k--", lw=1, label="best window rule (first and last k, 2k < length)")
    left.axhline(0.5, color="0.5", ls=":", lw=1, label="chance")
    left.axvspan(lengths[0] * 0.9, max(cfg["train_lengths"]) * 1.05, color="0.9", zorder=0, label="trained lengths")
    left.set(
        title=f"balanced or one bracket flipped in the middle third\ntest accuracy, {len(cfg['seeds'])} seeds",
        xlabel="string length (brackets)",
        ylabel="test accuracy (fraction of strings)",
        ylim=(0.38, 1.03),
        xscale="log",
    )
    left.set_xticks(lengths)
    left.set_xticklabels([str(L) for L in lengths])
    left.minorticks_off()
    right.set(
        title="learning rate chosen on the validation set (seed 0)",
        xlabel="Adam learning rate",
        ylabel="best validation accuracy",
        xscale="log",
    )
    for a in (left, right):
        a.grid(alpha=0.3)
    left.legend(fontsize=6, loc="upper right")  # the seeds' points at 64 sit low left
    right.legend(fontsize=7, loc="lower left")
    fig.tight_layout()
    return fig
