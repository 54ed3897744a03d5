"""The trainer's defaults for a time budget, chosen by measurement: ``jaxrnn train`` with only a text and a
budget, under a few candidate settings, on the built-in corpus and on about 1 MB of English.

For each run: the best validation loss seen, the validation loss at the end, and how far the end is above the
best (the defaults should keep improving until the budget is spent: within 1%).

    python -m experiments.trainer_defaults --corpus pydoc_topics --out experiments/results
    python -m experiments.trainer_defaults --corpus english --out experiments/results

The English text is ``pydoc_topics`` followed by the docstrings of the standard library's modules (in sorted
path order, each docstring once) up to 1,000,000 characters: English prose that every Python installation ships.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import json
import math
import os
import sys
import sysconfig
import time

from experiments import common
from jaxrnn.data import Splits, load_corpus, load_splits
from jaxrnn.lm import RunConfig, fit

CANDIDATES = {
    "constant": {"lr_schedule": "constant", "layers": 1},
    "cosine": {"lr_schedule": "cosine", "layers": 1},
    "cosine, 2 layers, dropout 0.25": {"lr_schedule": "cosine", "layers": 2, "dropout": 0.25},
    "cosine, 2 layers, dropout 0.4": {"lr_schedule": "cosine", "layers": 2, "dropout": 0.4},
    "cosine, 2 layers, dropout 0.5": {"lr_schedule": "cosine", "layers": 2, "dropout": 0.5},
}
"""Settings tried on top of ``RunConfig``'s other defaults (LSTM, H = 256, Adam 2e-3, T = 64, B = 32)."""

ENGLISH_SIZE = 1_000_000
WITHIN = 0.01  # the end may be at most 1% above the best validation loss


def english_text(size: int = ENGLISH_SIZE) -> str:
    """``pydoc_topics`` then standard-library docstrings (each once), cut at ``size`` characters."""
    parts, seen = [load_corpus("pydoc_topics")], set()
    total = len(parts[0])
    stdlib = sysconfig.get_paths()["stdlib"]
    paths = sorted(
        os.path.join(d, f)
        for d, _, files in os.walk(stdlib)
        for f in files
        if f.endswith(".py") and "test" not in d and "site-packages" not in d
    )
    for path in paths:
        try:
            tree = ast.parse(open(path, encoding="utf-8").read())
        except (SyntaxError, UnicodeDecodeError, OSError):
            continue
        for node in ast.walk(tree):
            if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
                doc = ast.get_docstring(node)
                if doc and len(doc) > 200 and doc not in seen:  # paragraphs, each once
                    seen.add(doc)
                    parts.append(doc + "\n\n")
                    total += len(parts[-1])
        if total >= size:
            break
    return "".join(parts)[:size]


def run_one(name: str, settings: dict, splits: Splits, minutes: float, seed: int) -> dict:
    """One candidate: ``jaxrnn train`` with only a text, a budget and ``settings``, trained in memory."""
    config = RunConfig(time_budget=minutes, seed=seed, sample_length=0, **settings)
    result = fit(config, splits)
    curve = [
        (r["elapsed_seconds"], r["step"], r["val_loss"])
        for r in result.history
        if "val_loss" in r and "elapsed_seconds" in r
    ]
    best = min(v for _, _, v in curve)
    end = result.val_loss
    tests = [r["test_loss"] for r in result.history if "test_loss" in r]
    return {
        "name": name,
        "settings": settings,
        "status": result.status,
        "steps": int(result.state.step),
        "elapsed_seconds": result.elapsed_seconds,
        "best_val_loss": best,
        "best_at_seconds": next(t for t, _, v in curve if v == best),
        "end_val_loss": end,
        "end_above_best": end / best - 1,
        "test_loss": tests[-1] if tests else None,
        "curve": curve,
    }


def main(corpus: str, minutes: float, seed: int, only=None, previous=None) -> dict:
    """Run the ``only`` candidates (default: all), keeping the other candidates' runs from ``previous`` (results
    of the same corpus, budget and seed)."""
    text = english_text() if corpus == "english" else load_corpus(corpus)
    splits = load_splits(text=text)
    runs = [
        run_one(name, settings, splits, minutes, seed)
        for name, settings in CANDIDATES.items()
        if only is None or name in only
    ]
    if previous:  # this run's candidates replace theirs; the rest keep their earlier runs
        by_name = {r["name"]: r for r in previous["runs"]} | {r["name"]: r for r in runs}
        runs = [by_name[name] for name in CANDIDATES if name in by_name]
    summary = {f"{r['name']}: end above best": r["end_above_best"] for r in runs}
    summary.update({f"{r['name']}: end validation": r["end_val_loss"] for r in runs})
    return {
        "corpus": corpus,
        "characters": len(text),
        "distinct_characters": len(set(text)),
        "minutes": minutes,
        "seed": seed,
        "within": WITHIN,
        "defaults": dataclasses.asdict(RunConfig()),
        "runs": runs,
        "summary": summary,
    }


def table(results: dict) -> str:
    """Markdown: one row per candidate."""
    rows = [
        f"| {results['corpus']} ({results['characters']:,} chars) | best validation (at s) | end validation "
        "| end above best | updates |",
        "|---|---|---|---|---|",
    ]
    for r in results["runs"]:
        mark = "**" if r["end_above_best"] <= WITHIN else ""
        rows.append(
            f"| {r['name']} | {r['best_val_loss']:.4f} ({r['best_at_seconds']:.0f}) | "
            f"{r['end_val_loss']:.4f} | {mark}{100 * r['end_above_best']:.2f}%{mark} | {r['steps']} |"
        )
    return "\n".join(rows)


def make_figure(results: dict):
    fig, axes = common.new_figure(1, 1, size=(6.5, 4.0))
    ax = axes[0, 0]
    for i, r in enumerate(results["runs"]):
        t, _, v = zip(*r["curve"])
        ax.plot([x / 60 for x in t], v, color=f"C{i}", label=r["name"])
    lows = [min(v for *_, v in r["curve"]) for r in results["runs"]]
    ax.set_ylim(min(lows) - 0.05, min(lows) + 0.6)
    ax.set(
        xlabel="wall-clock time (minutes)",
        ylabel="validation loss (nats/char)",
        title=f"{results['corpus']}: {results['minutes']:g}-minute budget",
    )
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    return fig


def cli(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="trainer_defaults", description=__doc__.split("\n")[0])
    parser.add_argument("--corpus", default="pydoc_topics", choices=("pydoc_topics", "stdlib_source", "english"))
    parser.add_argument("--minutes", type=float, default=10.0, help="time budget of each run (default: 10)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--only",
        nargs="+",
        choices=sorted(CANDIDATES),
        metavar="NAME",
        help="run these candidates and keep the others' runs from the JSON already in --out (default: run all)",
    )
    parser.add_argument("--out", default=os.path.join("experiments", "results"))
    args = parser.parse_args(argv)
    if not (math.isfinite(args.minutes) and args.minutes > 0):
        print("trainer_defaults: --minutes must be a positive number", file=sys.stderr)
        return 2
    os.makedirs(args.out, exist_ok=True)
    start = time.perf_counter()
    path = os.path.join(args.out, f"trainer_defaults_{args.corpus}.json")
    previous = json.load(open(path)) if args.only and os.path.exists(path) else None
    if previous and (previous["minutes"], previous["seed"]) != (args.minutes, args.seed):
        previous = None  # runs of another budget or seed are not comparable: start afresh
    results = main(args.corpus, args.minutes, args.seed, args.only, previous)
    runtime = round(time.perf_counter() - start, 1)
    command = (
        f"python -m experiments.trainer_defaults --corpus {args.corpus} --minutes {args.minutes:g}"
        + (" --only " + " ".join(repr(n) for n in args.only) if args.only else "")
        + f" --out {args.out}"
    )
    results["runtime_s"] = round(runtime + (previous["runtime_s"] if previous else 0.0), 1)
    results["command"] = [
        *(
            previous["command"]
            if previous and isinstance(previous["command"], list)
            else [previous["command"]]
            if previous
            else []
        ),
        command,
    ]
    results["environment"] = common.environment()
    results["table"] = table(results)
    paths = common.save(args.out, f"trainer_defaults_{args.corpus}", results, make_figure(results))
    print(results["table"])
    print(f"wrote {', '.join(paths.values())} in {results['runtime_s']} s")
    return 0


if __name__ == "__main__":
    sys.exit(cli())
