"""Quality of the default `jaxrnn train` against character n-gram baselines, on the same 90/5/5 split.

What it shows: validation loss (nats/char and bits/char) of the default LSTM and of a vanilla RNN of the same
hidden size (with the default Adam, and with the lecture's clipped Adagrad) after a fixed budget of training
time, beside add-one n-gram models (n = 1..5) and interpolated Witten-Bell n-grams, all on the built-in corpus's
validation split.

    python experiments/char_lm_quality.py --preset cpu --out experiments/results   # ~17 minutes on 2 CPU cores
    python experiments/char_lm_quality.py --preset tiny --out /tmp/q                # seconds (used by a test)

Writes ``OUT/char_lm_quality.json`` and ``char_lm_quality.png``. The training time counts the compiled update
calls, their first compilation included; validation and checkpoint writing are not counted.
"""
from __future__ import annotations

import dataclasses
import math
import os
import sys
import tempfile
import time
from dataclasses import dataclass

import numpy as np

if __package__ in (None, ""):
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from experiments import common  # noqa: E402
from jaxrnn.data import DEFAULT_CORPUS, Vocabulary, load_corpus, split_ids  # noqa: E402
from jaxrnn.lm import RunConfig, run_training  # noqa: E402


@dataclass(frozen=True)
class QualityConfig:
    corpus: str = DEFAULT_CORPUS
    seconds: float = 300.0  # training-time budget per model
    models: tuple = (("lstm (default)", ()), ("rnn", (("cell", "rnn"),)),  # (label, RunConfig overrides)
                     ("rnn, lecture's adagrad", (("cell", "rnn"), ("optimizer", "adagrad"))))
    run: tuple = ()  # overrides applied to every model (the tiny preset shrinks everything)
    max_order: int = 5
    name: str = "char_lm_quality"


PRESETS = {
    "cpu": QualityConfig(),
    "tiny": QualityConfig(seconds=60.0, max_order=3, name="char_lm_quality_tiny",
                          run=(("hidden_size", 16), ("batch_size", 4), ("seq_length", 8), ("steps", 20),
                               ("eval_every", 10))),
}


def _codes(ids: np.ndarray, n: int, V: int) -> np.ndarray:
    """Integer code of every window of ``n`` consecutive ids: ``sum_k ids[i+k] V^(n-1-k)``."""
    out = np.zeros(len(ids) - n + 1, np.int64)
    for k in range(n):
        out = out * V + ids[k: len(ids) - n + 1 + k]
    return out


def _lookup(table_keys: np.ndarray, table_counts: np.ndarray, queries: np.ndarray) -> np.ndarray:
    pos = np.clip(np.searchsorted(table_keys, queries), 0, len(table_keys) - 1)
    return np.where(table_keys[pos] == queries, table_counts[pos], 0).astype(np.float64)


def ngram_losses(train: np.ndarray, val: np.ndarray, V: int, max_order: int) -> dict:
    """Mean nats/char on ``val`` of add-one n-grams and interpolated Witten-Bell n-grams, n = 1..max_order.

    The context of the first validation characters is the end of the training text.
    """
    stream = np.concatenate([train[-(max_order - 1):] if max_order > 1 else train[:0], val]).astype(np.int64)
    offset = len(stream) - len(val)
    results, wb = {}, np.full(len(val), 1.0 / V)
    for n in range(1, max_order + 1):
        keys, counts = np.unique(_codes(train, n, V), return_counts=True)
        q = _codes(stream, n, V)[offset - n + 1:]  # windows ending at each validation character
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


def main(config: QualityConfig) -> dict:
    import jax

    text = load_corpus(config.corpus)
    vocab = Vocabulary.from_text(text)
    train, val, _ = split_ids(vocab.encode(text))
    t0 = time.perf_counter()
    baselines = ngram_losses(train, val, vocab.size, config.max_order)
    results = {"corpus": config.corpus, "characters": len(text), "vocab_size": vocab.size,
               "split": [len(train), len(val), len(text) - len(train) - len(val)],
               "budget_seconds": config.seconds, "ngram_val_loss": baselines,
               "ngram_seconds": time.perf_counter() - t0, "models": {}, "config": dataclasses.asdict(config)}
    for label, overrides in config.models:
        run = dataclasses.replace(RunConfig(corpus=config.corpus), **dict(config.run), **dict(overrides))
        with tempfile.TemporaryDirectory() as out:
            t = time.perf_counter()
            summary = run_training(run, out, progress=False, max_seconds=config.seconds, log=lambda s: None)
            wall = time.perf_counter() - t
        curve = [(r["train_seconds"], r["step"], r["val_loss"]) for r in summary["records"] if "val_loss" in r]
        within = [c for c in curve if c[0] <= config.seconds + 1e-9] or curve[:1]
        best = min(within, key=lambda c: c[2])
        results["models"][label] = {
            "config": dataclasses.asdict(run.resolved()), "steps": summary["step"],
            "train_seconds": summary["train_seconds"], "wall_seconds": wall,
            "final_val_loss": summary["val_loss"], "final_val_bpc": summary["val_loss"] / math.log(2),
            "best_val_loss_within_budget": best[2], "at_step": best[1], "at_seconds": best[0],
            "test_loss": summary.get("test_loss"),
            "parameters": int(sum(x.size for x in jax.tree.leaves(summary["params"]))),
            "curve": curve}
    best = {label: m["best_val_loss_within_budget"] for label, m in results["models"].items()}
    results["summary"] = {**{f"{label}: best validation nats/char": v for label, v in best.items()},
                          f"Witten-Bell {config.max_order}-gram nats/char":
                              baselines[f"Witten-Bell {config.max_order}-gram"]}
    return results


def make_figure(results: dict):
    fig, axes = common.new_figure(1, 1, size=(6.4, 4.0))
    ax = axes[0, 0]
    for label, m in results["models"].items():
        ax.plot([c[0] for c in m["curve"]], [c[2] for c in m["curve"]], marker="o", markersize=3, label=label)
    for name in ("add-one 3-gram", "Witten-Bell 5-gram", "Witten-Bell 3-gram"):
        if name in results["ngram_val_loss"]:
            ax.axhline(results["ngram_val_loss"][name], linestyle="--", linewidth=1, color="gray")
            ax.annotate(name, (0, results["ngram_val_loss"][name]), fontsize=7, va="bottom")
    ax.set_xlabel("training seconds")
    ax.set_ylabel("validation loss (nats / character)")
    ax.set_title(f"{results['corpus']}: validation loss vs training time")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    return fig


if __name__ == "__main__":
    sys.exit(common.cli("char_lm_quality", PRESETS, main, make_figure))
