"""Quality of the default `jaxrnn train` against character n-gram baselines, on the same 90/5/5 split.

What it shows: validation loss (nats/char and bits/char) of the default LSTM and of a vanilla RNN of the same
hidden size (with the default Adam, and with the lecture's clipped Adagrad) after 1500 updates (the default run
makes 2000; fewer keep three seeds of three models within minutes on 2 cores), over several seeds (mean, std, min,
max), beside add-one n-gram models (n = 1..5) and interpolated Witten-Bell n-grams, all on the built-in corpus's
validation split; and text sampled from the first seed's LSTM at temperatures 0.5, 1.0 and 1.5.

    python -m experiments.char_lm_quality --preset cpu --out experiments/results   # ~6 minutes on 2 idle cores
    python -m experiments.char_lm_quality --preset tiny --out /tmp/q                # seconds (used by a test)

Writes ``OUT/char_lm_quality.json`` and ``char_lm_quality.png``. The training time counts the compiled update
calls, their first compilation included; validation is not counted. Each model is trained in memory by
``jaxrnn.lm.fit``.
"""

from __future__ import annotations

import dataclasses
import math
import sys
import time
from dataclasses import dataclass

import numpy as np

from experiments import common, stats
from jaxrnn.data import DEFAULT_CORPUS, Splits, load_splits
from jaxrnn.lm import RunConfig, fit, generate_text


@dataclass(frozen=True)
class QualityConfig:
    corpus: str = DEFAULT_CORPUS
    seconds: float = 300.0  # training-time budget per model
    models: tuple = (
        ("lstm (default)", ()),
        ("rnn", (("cell", "rnn"),)),  # (label, RunConfig overrides)
        ("rnn, lecture's adagrad", (("cell", "rnn"), ("optimizer", "adagrad"))),
    )
    run: tuple = ()  # overrides applied to every model (the tiny preset shrinks everything)
    seeds: tuple = (0, 1, 2)  # RunConfig.seed: the initial parameters
    max_order: int = 5
    temperatures: tuple = (0.5, 1.0, 1.5)  # samples from the first model (the LSTM) of the first seed
    sample_length: int = 300
    name: str = "char_lm_quality"


PRESETS = {
    "cpu": QualityConfig(seconds=1200.0, run=(("steps", 1500),)),  # the cap does not bind: equal updates
    "tiny": QualityConfig(
        seconds=60.0,
        max_order=3,
        name="char_lm_quality_tiny",
        seeds=(0, 1),
        sample_length=40,
        run=(("hidden_size", 16), ("batch_size", 4), ("seq_length", 8), ("steps", 20), ("eval_every", 10)),
    ),
}


def _codes(ids: np.ndarray, n: int, V: int) -> np.ndarray:
    """Integer code of every window of ``n`` consecutive ids: ``sum_k ids[i+k] V^(n-1-k)``."""
    out = np.zeros(len(ids) - n + 1, np.int64)
    for k in range(n):
        out = out * V + ids[k : len(ids) - n + 1 + k]
    return out


def _lookup(table_keys: np.ndarray, table_counts: np.ndarray, queries: np.ndarray) -> np.ndarray:
    pos = np.clip(np.searchsorted(table_keys, queries), 0, len(table_keys) - 1)
    return np.where(table_keys[pos] == queries, table_counts[pos], 0).astype(np.float64)


def ngram_losses(train: np.ndarray, val: np.ndarray, V: int, max_order: int) -> dict:
    """Mean nats/char on ``val`` of add-one n-grams and interpolated Witten-Bell n-grams, n = 1..max_order.

    The context of the first validation characters is the end of the training text.
    """
    stream = np.concatenate([train[-(max_order - 1) :] if max_order > 1 else train[:0], val]).astype(np.int64)
    offset = len(stream) - len(val)
    results, wb = {}, np.full(len(val), 1.0 / V)
    for n in range(1, max_order + 1):
        keys, counts = np.unique(_codes(train, n, V), return_counts=True)
        q = _codes(stream, n, V)[offset - n + 1 :]  # windows ending at each validation character
        c_hc = _lookup(keys, counts, q)
        if n == 1:
            c_h, types = np.full(len(val), float(len(train))), np.full(len(val), float(len(keys)))
        else:
            ctx_keys, ctx_counts = np.unique(_codes(train[:-1], n - 1, V), return_counts=True)
            c_h = _lookup(ctx_keys, ctx_counts, q // V)
            succ_keys, succ_types = np.unique(keys // V, return_counts=True)  # distinct successors of each context
            types = _lookup(succ_keys, succ_types, q // V)
        add_one = (c_hc + 1) / (c_h + V)
        wb = np.where(c_h > 0, (c_hc + types * wb) / np.maximum(c_h + types, 1), wb)
        results[f"add-one {n}-gram"] = float(-np.log(add_one).mean())
        results[f"Witten-Bell {n}-gram"] = float(-np.log(wb).mean())
    return results


def train_one(config: QualityConfig, splits: Splits, overrides: tuple, seed: int) -> tuple[dict, dict]:
    """One model, one seed: its record for the JSON, and its resolved settings and parameters."""
    import jax

    run = dataclasses.replace(RunConfig(corpus=config.corpus), **dict(config.run), **dict(overrides), seed=seed)
    t = time.perf_counter()
    result = fit(run, splits, max_seconds=config.seconds)
    wall = time.perf_counter() - t
    curve = [(r["train_seconds"], r["step"], r["val_loss"]) for r in result.history if "val_loss" in r]
    within = [c for c in curve if c[0] <= config.seconds + 1e-9] or curve[:1]
    best = min(within, key=lambda c: c[2])
    tests = [r["test_loss"] for r in result.history if "test_loss" in r]
    record = {
        "seed": seed,
        "steps": int(result.state.step),
        "status": result.status,
        "train_seconds": result.train_seconds,
        "wall_seconds": wall,
        "final_val_loss": None if result.status == "nan" else result.val_loss,
        "best_val_loss_within_budget": best[2],
        "at_step": best[1],
        "at_seconds": best[0],
        "test_loss": tests[-1] if tests else None,
        "parameters": int(sum(x.size for x in jax.tree.leaves(result.state.params))),
        "curve": curve,
    }
    return record, {"config": dataclasses.asdict(run.resolved()), "params": result.state.params}


def samples(params, vocab, config: QualityConfig) -> dict:
    """``sample_length`` characters at each temperature, after a newline, sampling seed 0."""
    return {
        f"{t:g}": "".join(generate_text(params, vocab, length=config.sample_length, temperature=t, seed=0))
        for t in config.temperatures
    }


def main(config: QualityConfig) -> dict:
    splits = load_splits(config.corpus)
    vocab, train, val = splits.vocab, splits.train, splits.val
    t0 = time.perf_counter()
    baselines = ngram_losses(train, val, vocab.size, config.max_order)
    results = {
        "corpus": config.corpus,
        "characters": len(train) + len(val) + len(splits.test),
        "vocab_size": vocab.size,
        "split": [len(train), len(val), len(splits.test)],
        "budget_seconds": config.seconds,
        "seeds": list(config.seeds),
        "ngram_val_loss": baselines,
        # the same n-grams on the test text: lower by as much as the models' test loss, so the gap is the text's
        "ngram_test_loss": ngram_losses(train, splits.test, vocab.size, config.max_order),
        "ngram_seconds": time.perf_counter() - t0,
        "models": {},
        "config": dataclasses.asdict(config),
    }
    for i, (label, overrides) in enumerate(config.models):
        runs = []
        for seed in config.seeds:
            record, summary = train_one(config, splits, overrides, seed)
            runs.append(record)
            if i == 0 and seed == config.seeds[0]:
                results["samples"] = {
                    "model": label,
                    "seed": seed,
                    "prime": "\n",
                    "by_temperature": samples(summary["params"], vocab, config),
                }
        results["models"][label] = {
            "config": summary["config"],
            "runs": runs,
            "best_val_loss_within_budget": common.spread([r["best_val_loss_within_budget"] for r in runs]),
            "final_val_bpc": common.spread([r["final_val_loss"] / math.log(2) for r in runs]),
            "test_loss": common.spread([r["test_loss"] for r in runs]),
            "train_seconds": common.spread([r["train_seconds"] for r in runs]),
            "steps": runs[0]["steps"],
            "parameters": runs[0]["parameters"],
        }
    wb = f"Witten-Bell {config.max_order}-gram"
    best = {label: m["best_val_loss_within_budget"] for label, m in results["models"].items()}
    labels = list(best)
    results["comparisons"] = stats.decide(
        {
            **stats.pairwise({label: v["values"] for label, v in best.items()}),
            **{f"{a} vs {wb}": stats.compare_to(best[a]["values"], baselines[wb], (a, wb)) for a in labels},
        }
    )
    results["verdicts"] = {name: c["verdict"] for name, c in results["comparisons"].items()}
    results["summary"] = {
        **{f"{label}: best validation nats/char (mean)": v["mean"] for label, v in best.items()},
        **{f"{label}: std over {v['n']} seeds": v["std"] for label, v in best.items()},
        f"{wb} nats/char": baselines[wb],
    }
    return results


def make_figure(results: dict):
    """Validation loss against updates, mean and min-max band over seeds, with the n-gram lines; the axis shows
    the range where the models and the n-grams meet (each label gives the model's best loss, on the axis or not)."""
    fig, axes = common.new_figure(1, 1, size=(6.8, 4.2))
    ax = axes[0, 0]
    low = min(
        min(results["ngram_val_loss"].values()),
        *(m["best_val_loss_within_budget"]["min"] for m in results["models"].values()),
    )
    top = max(1.3 * low, 1.05 * results["ngram_val_loss"].get("add-one 3-gram", low))
    for label, m in results["models"].items():
        steps = [c[1] for c in max((r["curve"] for r in m["runs"]), key=len)]
        curves = common.pad([[c[2] for c in r["curve"]] for r in m["runs"]])
        best = m["best_val_loss_within_budget"]
        where = ", above the axis" if best["min"] > top else ""
        common.band(
            ax, steps, curves, label=f"{label}: best {best['mean']:.3f} ({m['train_seconds']['mean']:.0f} s{where})"
        )
    for name, color in (("add-one 3-gram", "gray"), ("Witten-Bell 3-gram", "tab:brown"), ("Witten-Bell 5-gram", "k")):
        if name in results["ngram_val_loss"]:
            value = results["ngram_val_loss"][name]
            ax.axhline(value, linestyle="--", linewidth=1, color=color, label=f"{name}: {value:.3f}")
    ax.set_ylim(0.97 * low, top)
    run = next(iter(results["models"].values()))["config"]
    ax.set_xlabel(f"updates ({run['batch_size']} streams x {run['seq_length']} characters each)")
    ax.set_ylabel("validation loss (nats / character)")
    ax.set_title(f"{results['corpus']}: mean and min-max over {len(results['seeds'])} seeds")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


if __name__ == "__main__":
    sys.exit(common.cli("char_lm_quality", PRESETS, main, make_figure))
