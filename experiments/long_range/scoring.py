"""The long-range results over seeds: test loss at the validation-chosen step, pass or fail, verdicts between models."""

from __future__ import annotations

from experiments import common, stats


def aggregate(runs: list, cfg) -> list:
    """Per (task, model, T): spreads over seeds of the test loss (and recall) and whether the model fails."""
    groups = {}
    for r in runs:
        groups.setdefault((r["task"], r["model"], r["T"]), []).append(r)
    rows = []
    for (task, kind, T), rs in groups.items():
        test = common.spread([r["test_loss"] for r in rs])
        row = {
            "task": task,
            "model": kind,
            "T": T,
            "hidden_size": rs[0]["hidden_size"],
            "learning_rate": rs[0]["learning_rate"],
            "baseline": rs[0]["baseline"],
            "seeds": [r["seed"] for r in rs],
            "test_loss": test,
            "fails": not test["mean"] <= cfg.fail_fraction * rs[0]["baseline"],
            "steps_run": common.spread([r["steps_run"] for r in rs]),
        }
        if task == "copy":
            row["recall_accuracy"] = common.spread([r["recall_accuracy"] for r in rs])
        rows.append(row)
    return rows


def finish(cfg, chosen: dict, sweep: list, runs: list) -> dict:
    from experiments.long_range import TEST_KEY, VALIDATION_KEY

    rows = aggregate(runs, cfg)
    by = {(r["task"], r["model"], r["T"]): r for r in rows}
    summary = {}
    for (kind, task), (lr, H) in sorted(chosen.items()):
        summary[f"{task}_{kind}_chosen_learning_rate"], summary[f"{task}_{kind}_chosen_hidden_size"] = lr, H
    for r in rows:
        name = f"{r['task']}_{r['model']}_T{r['T']}"
        summary[f"{name}_test_loss_mean"] = r["test_loss"]["mean"]
        summary[f"{name}_test_loss_std"] = r["test_loss"]["std"]
        summary[f"{name}_fails"] = r["fails"]
        if "recall_accuracy" in r:
            summary[f"{name}_recall_accuracy_mean"] = r["recall_accuracy"]["mean"]
        summary[f"{r['task']}_T{r['T']}_baseline"] = r["baseline"]
    for task, kind in sorted({(r["task"], r["model"]) for r in rows}):
        failing = sorted(r["T"] for r in rows if (r["task"], r["model"]) == (task, kind) and r["fails"])
        summary[f"{task}_{kind}_fails_from_T"] = failing[0] if failing else None
    comparisons = {}
    for task, T in sorted({(r["task"], r["T"]) for r in rows}):
        for a, b in (("lstm", "rnn"), ("gru", "rnn"), ("lstm", "gru")):
            if (task, a, T) in by and (task, b, T) in by:
                sa, sb = by[(task, a, T)]["test_loss"], by[(task, b, T)]["test_loss"]
                comparisons[f"{task}_T{T}_{a}_vs_{b}"] = stats.compare(sa["values"], sb["values"], (a, b))
    comparisons = stats.decide(comparisons)
    return {
        "comparisons": comparisons,
        "verdicts": {name: c["verdict"] for name, c in comparisons.items()},
        "config": cfg,
        "summary": summary,
        "aggregate": rows,
        "sweep": sweep,
        "runs": runs,
        "validation_key": VALIDATION_KEY,
        "test_key": TEST_KEY,
    }
