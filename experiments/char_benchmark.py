"""A character benchmark with tuned baselines: tanh RNN, GRU and LSTM at matched parameter counts, each with its own
learning-rate search on the validation text, against interpolated Kneser-Ney n-grams searched over orders 1-20, on
about 1 MB of English and on 4 MB of Python source, all reported as **test** bits per character. (No package on the
index that is made for this field ships a larger English text: ``experiments/NOTES.md``.)

Every text is cut 90/5/5 into training, validation and test text (``jaxrnn.data.load_splits``). The LSTM has the
trainer's default size (one layer, H = 256); the GRU and the RNN get the hidden size whose parameter count is nearest
the LSTM's. Each cell's learning rate (Adam, the trainer's other defaults) is chosen among ``learning_rates`` by the
validation loss after ``updates`` updates with seed 0, the search going on past the grid's edge while the best rate
is there (``common.search_rates``); then every seed trains at that rate and is scored once on the test text. The
n-gram order is chosen on the validation text too. Comparisons: exact permutation tests between the cells, exact
sign-flip tests of each cell against the n-gram, Holm over all of them (``experiments.stats``).
No published number exists for these two texts (they are built from this Python's own files), so none is quoted.

    python -m experiments.char_benchmark --preset cpu --out experiments/results   # hours: finished runs are kept
"""

from __future__ import annotations

import dataclasses
import math
import sys
import time

import jax
import numpy as np

from experiments import common, ngrams, stats
from experiments.interpretable_cells import python_source
from experiments.trainer_defaults import english_text
from jaxrnn.data import DEFAULT_CORPUS, load_corpus, load_splits
from jaxrnn.lm import RunConfig, fit, initial_state

TEXTS = {"english": english_text, "python": python_source, "pydoc_topics": lambda: load_corpus("pydoc_topics")}


@dataclasses.dataclass(frozen=True)
class Config:
    texts: tuple = ("english", "python")
    cells: tuple = ("lstm", "gru", "rnn")
    lstm_hidden: int = 256
    learning_rates: tuple = (1e-3, 2e-3, 5e-3)
    updates: int = 2000
    seeds: tuple = tuple(range(10))  # a sign-flip test of n seeds gives p = 2 / 2^n at best: 10 for 12 comparisons
    max_order: int = 20
    run: tuple = ()  # RunConfig overrides for every model (the tiny preset shrinks everything)


PRESETS = {
    "cpu": Config(),
    "tiny": Config(
        texts=("pydoc_topics",),
        cells=("lstm", "rnn"),
        lstm_hidden=16,
        learning_rates=(2e-3, 1e-2),
        updates=20,
        seeds=(0, 1),
        max_order=4,
        run=(("batch_size", 4), ("seq_length", 16), ("eval_every", 10)),
    ),
}


def parameter_count(cell: str, hidden: int, vocab_size: int) -> int:
    config = RunConfig(corpus=DEFAULT_CORPUS, cell=cell, hidden_size=hidden)
    return int(sum(x.size for x in jax.tree.leaves(initial_state(config, vocab_size).params)))


def matched_hidden(cell: str, target: int, vocab_size: int) -> int:
    """The hidden size (a multiple of 8) whose parameter count is nearest ``target``."""
    h, previous = 8, None
    while True:
        n = parameter_count(cell, h, vocab_size)
        if n >= target:
            return h if previous is None or n - target <= target - previous[1] else previous[0]
        previous, h = (h, n), h + 8


def train(cfg: Config, splits, cell: str, hidden: int, lr: float, seed: int) -> dict:
    settings = {"eval_every": max(cfg.updates // 10, 1), **dict(cfg.run)}
    config = RunConfig(
        corpus=DEFAULT_CORPUS,  # the text comes from splits; the name is not read
        cell=cell,
        hidden_size=hidden,
        learning_rate=lr,
        steps=cfg.updates,
        seed=seed,
        sample_length=0,
        **settings,
    )
    start = time.perf_counter()
    result = fit(config, splits)
    tests = [r["test_loss"] for r in result.history if "test_loss" in r]
    return {
        "cell": cell,
        "hidden_size": hidden,
        "learning_rate": lr,
        "seed": seed,
        "status": result.status,
        "validation_loss": result.val_loss if math.isfinite(result.val_loss or math.nan) else math.inf,
        "test_loss": tests[-1] if tests else math.inf,
        "curve": [(r["step"], r["val_loss"]) for r in result.history if "val_loss" in r],
        "seconds": round(time.perf_counter() - start, 1),
    }


def one_text(cfg: Config, name: str, kept: common.Runs) -> dict:
    splits = load_splits(text=TEXTS[name]())
    V = splits.vocab.size
    target = parameter_count("lstm", cfg.lstm_hidden, V)
    hidden = {c: cfg.lstm_hidden if c == "lstm" else matched_hidden(c, target, V) for c in cfg.cells}
    out = {
        "characters": int(len(splits.train) + len(splits.val) + len(splits.test)),
        "vocab_size": V,
        "hidden": hidden,
        "parameters": {c: parameter_count(c, h, V) for c, h in hidden.items()},
    }
    train_ids = np.asarray(splits.train)
    validation = ngrams.kneser_ney_losses(train_ids, np.asarray(splits.val), V, cfg.max_order)
    order = min(validation, key=validation.get)
    kn_test = float(-np.log(ngrams.kneser_ney_probabilities(train_ids, np.asarray(splits.test), V, order)).mean())
    out["kneser_ney"] = {"validation": {str(k): v for k, v in validation.items()}, "order": order, "test": kn_test}
    one = lambda c, lr, s: kept(
        {"text": name, "cell": c, "hidden": hidden[c], "learning_rate": lr, "seed": s},
        lambda: train(cfg, splits, c, hidden[c], lr, s),
    )
    out["search"], out["runs"], chosen = {}, {}, {}
    for c in cfg.cells:
        out["search"][c], chosen[c] = common.search_rates(cfg.learning_rates, lambda lr, c=c: one(c, lr, cfg.seeds[0]))
        out["runs"][c] = [one(c, chosen[c], s) for s in cfg.seeds]
    out["chosen_learning_rate"] = chosen
    out["test_bpc"] = {c: common.spread([r["test_loss"] / math.log(2) for r in rs]) for c, rs in out["runs"].items()}
    out["test_bpc"]["kneser_ney"] = kn_test / math.log(2)
    return out


def main(cfg: Config, runs: common.Runs | None = None) -> dict:
    kept = runs or common.Runs()
    texts = {name: one_text(cfg, name, kept) for name in cfg.texts}
    comparisons = {}
    for name, t in texts.items():
        bpc = t["test_bpc"]
        comparisons.update(stats.pairwise({c: bpc[c]["values"] for c in cfg.cells}, prefix=f"{name}: "))
        for c in cfg.cells:
            comparisons[f"{name}: {c} vs Kneser-Ney"] = stats.compare_to(
                bpc[c]["values"], bpc["kneser_ney"], (c, "Kneser-Ney")
            )
    summary = {"comparisons": stats.decide(comparisons)}
    for name, t in texts.items():
        for c in cfg.cells:
            summary[f"{name}: {c} test bits/char"] = t["test_bpc"][c]["mean"]
        summary[f"{name}: Kneser-Ney {t['kneser_ney']['order']}-gram test bits/char"] = t["test_bpc"]["kneser_ney"]
    return {"config": cfg, "summary": summary, "texts": texts}


def make_figure(results: dict):
    texts = results["texts"]
    fig, ax = common.new_figure(1, len(texts), size=(4.6, 3.6))
    for a, (name, t) in zip(ax[0], texts.items()):
        cells = list(t["runs"])
        for i, c in enumerate(cells):
            values = t["test_bpc"][c]["values"]
            a.plot([i] * len(values), values, "o", alpha=0.6, label=f"{c} (H = {t['hidden'][c]})")
        a.axhline(t["test_bpc"]["kneser_ney"], color="k", ls="--", label=f"Kneser-Ney {t['kneser_ney']['order']}-gram")
        a.set_xticks(range(len(cells)))
        a.set_xticklabels(cells)
        a.set(title=f"{name}: test bits per character", ylabel="bits/char")
        a.grid(alpha=0.3)
        a.legend(fontsize=7)
    fig.tight_layout()
    return fig


if __name__ == "__main__":
    sys.exit(common.cli("char_benchmark", PRESETS, main, make_figure))
