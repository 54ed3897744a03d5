"""The long-range tables (markdown) and figure: test loss against T per task and model, over seeds."""

from __future__ import annotations

import numpy as np
from experiments import common


def table(results: dict) -> str:
    """Markdown table of the test loss (mean ± std over seeds) per (task, T) and model beside the baseline."""
    models = [m for m in ("rnn", "lstm", "gru") if any(r["model"] == m for r in results["aggregate"])]
    names = {"rnn": "tanh RNN", "lstm": "LSTM", "gru": "GRU"}
    rows = [
        "| task | T | baseline | " + " | ".join(names[m] for m in models) + " |",
        "|---|---|---|" + "---|" * len(models),
    ]
    by = {(r["task"], r["T"], r["model"]): r for r in results["aggregate"]}
    for task, T in sorted({(r["task"], r["T"]) for r in results["aggregate"]}):
        cells = []
        for m in models:
            r = by.get((task, T, m))
            cell = (
                "-"
                if r is None
                else common.pm(r["test_loss"], 4)
                if r["test_loss"]["n"] > 1
                else f"{r['test_loss']['mean']:.4f} (1 seed)"
            )
            if r is not None and "recall_accuracy" in r:
                cell += f" ({100 * r['recall_accuracy']['mean']:.0f}% recalled)"
            if r is not None and not r["fails"]:
                cell = f"**{cell}**"
            cells.append(cell)
        baseline = next(r["baseline"] for r in results["aggregate"] if (r["task"], r["T"]) == (task, T))
        rows.append(f"| {task} | {T} | {baseline:.4f} | " + " | ".join(cells) + " |")
    return "\n".join(rows)


def sweep_table(results: dict) -> str:
    """Markdown table of the grid: validation loss (seed 0) per model, H and learning rate; chosen in bold."""
    cfg = results["config"]
    lrs = cfg["learning_rates"] if isinstance(cfg, dict) else cfg.learning_rates  # read back from the JSON or not
    rows = [
        "| task (T) | model | H | " + " | ".join(f"lr {lr:g}" for lr in lrs) + " |",
        "|---|---|---|" + "---|" * len(lrs),
    ]
    groups = {}
    for r in results["sweep"]:
        groups.setdefault((r["task"], r["T"], r["model"], r["hidden_size"]), {})[r["learning_rate"]] = r
    for (task, T, kind, H), rs in groups.items():
        chosen = tuple(results["summary"][f"{task}_{kind}_chosen_{name}"] for name in ("learning_rate", "hidden_size"))
        value = lambda lr: f"{rs[lr]['validation_loss']:.4f}"
        cells = [("-" if lr not in rs else f"**{value(lr)}**" if (lr, H) == chosen else value(lr)) for lr in lrs]
        rows.append(f"| {task} ({T}) | {kind} | {H} | " + " | ".join(cells) + " |")
    return "\n".join(rows)


COLORS = {"rnn": "tab:red", "lstm": "tab:blue", "gru": "tab:green"}


def make_figure(results: dict):
    """Per task (row): held-out loss against the training step at each T (mean line, min-max band over seeds)
    and the final test loss against T (mean, error bars min to max)."""
    rows = [r for r in results["aggregate"]]
    tasks = [t for t in ("adding", "copy") if any(r["task"] == t for r in rows)]
    lengths = {t: sorted({r["T"] for r in rows if r["task"] == t}) for t in tasks}
    cols = max(len(v) for v in lengths.values()) + 1
    fig, ax = common.new_figure(len(tasks), cols, size=(3.6, 3.0))
    unit = {"adding": "held-out MSE", "copy": "held-out loss (nats per step)"}
    for i, task in enumerate(tasks):
        for j, T in enumerate(lengths[task]):
            a = ax[i, j]
            for kind in results["config"].models:
                rs = [r for r in results["runs"] if (r["task"], r["model"], r["T"]) == (task, kind, T)]
                if not rs:
                    continue
                longest = max(rs, key=lambda r: len(r["eval_step"]))["eval_step"]
                common.band(
                    a,
                    longest,
                    common.pad([r["test"] for r in rs]),
                    label=kind.upper(),
                    color=COLORS[kind],
                    log=task == "adding",
                )  # copy losses span less than a decade
            baseline = next(r["baseline"] for r in rows if (r["task"], r["T"]) == (task, T))
            a.axhline(baseline, color="k", ls="--", lw=0.8, label="baseline")
            a.set(title=f"{task}, T = {T}", xlabel="training step", ylabel=unit[task])
        for j in range(len(lengths[task]), cols - 1):
            ax[i, j].set_visible(False)
        a = ax[i, cols - 1]
        for k, kind in enumerate(results["config"].models):
            rs = sorted((r for r in rows if (r["task"], r["model"]) == (task, kind)), key=lambda r: r["T"])
            if not rs:
                continue
            Ts = np.array([r["T"] for r in rs], float) * (1 + 0.04 * (k - 1))  # side by side, not on top
            mean = np.array([r["test_loss"]["mean"] for r in rs])
            err = [mean - [r["test_loss"]["min"] for r in rs], [r["test_loss"]["max"] for r in rs] - mean]
            a.errorbar(Ts, mean, yerr=err, color=COLORS[kind], marker="o", ms=3, capsize=3, label=kind.upper())
        Ts = lengths[task]
        baselines = np.array([next(r["baseline"] for r in rows if (r["task"], r["T"]) == (task, T)) for T in Ts])
        a.plot(Ts, baselines, "k--", marker="_", ms=16, lw=0.8, label="baseline")  # the marker: one T shows too
        a.plot(
            Ts,
            results["config"].fail_fraction * baselines,
            "k:",
            marker="_",
            ms=16,
            lw=0.8,
            label=f"fails above {results['config'].fail_fraction:g} x baseline",
        )
        a.set_xscale("log")
        a.set_yscale("log")
        a.set_xticks(Ts)
        a.set_xticklabels([str(T) for T in Ts])
        a.minorticks_off()
        a.set(
            title=f"{task}: test loss at the chosen step",
            xlabel="length T",
            ylabel=unit[task].replace("held-out", "test"),
        )
    for a in ax.flat:
        if a.get_visible():
            a.legend(fontsize=6)
            a.grid(alpha=0.3)
    fig.tight_layout()
    return fig
