"""Character n-gram baselines: interpolated Kneser-Ney (Chen & Goodman 1999, one absolute discount per order),
any order, evaluated on every character of a held-out text.

Shapes: ids are ``(N,)`` integer arrays over a vocabulary of ``V`` symbols. An n-gram is known by a 64-bit
polynomial hash of its ids (wrapping arithmetic), so that orders beyond ``V^n < 2^63`` fit in one integer; two
distinct n-grams of a megabyte of text share a hash with a chance near ``N^2 / 2^64``, below 1e-7.

For the highest order ``n`` with context ``h`` (the ``n - 1`` ids before ``w``):

    P_n(w | h) = max(c(hw) - D, 0) / c(h) + D N(h.) / c(h) P_{n-1}(w | h')        (P_{n-1} when c(h) = 0)

where ``c`` counts the training text, ``N(h.)`` the distinct symbols seen after ``h`` and ``h'`` drops the oldest
id. Lower orders use the same form with continuation counts ``c'(hw) = N(.hw)``, the distinct symbols seen before
``hw``; order 0 is uniform. Each order's discount is ``D = n1 / (n1 + 2 n2)`` from the counts of its counts.

    python -m experiments.ngrams --corpus pydoc_topics --out experiments/results   # ngrams_pydoc_topics.json, 1 min

The command line scores every order on the validation text, picks the order there, and reports it on the test text.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

BASE = np.uint64(0x9E3779B97F4A7C15)  # odd, so that multiplication mod 2^64 is a bijection


def _symbols(ids: np.ndarray) -> np.ndarray:
    return np.asarray(ids).astype(np.uint64) + np.uint64(1)  # 0 stays the empty prefix


def _longer(hashes: np.ndarray, symbols: np.ndarray, n: int) -> np.ndarray:
    """Every window of ``n`` ids from the hashes of every window of ``n - 1`` (``symbols``: ``_symbols(ids)``)."""
    with np.errstate(over="ignore"):
        return hashes[: len(symbols) - n + 1] * BASE + symbols[n - 1 :]


def window_hashes(ids: np.ndarray, n: int) -> np.ndarray:
    """Hash of every window of ``n`` ids, ``(N - n + 1,)`` uint64; ``n = 0`` hashes the empty window (0)."""
    symbols = _symbols(ids)
    out = np.zeros(len(symbols) + 1, np.uint64)
    for k in range(1, n + 1):
        out = _longer(out, symbols, k)
    return out


def _count(keys: np.ndarray, queries: np.ndarray) -> np.ndarray:
    """How often each of ``queries`` occurs in ``keys`` (float64)."""
    unique, counts = np.unique(keys, return_counts=True)
    pos = np.clip(np.searchsorted(unique, queries), 0, len(unique) - 1)
    return np.where(unique[pos] == queries, counts[pos], 0).astype(np.float64)


def _discount(counts: np.ndarray) -> float:
    n1, n2 = np.sum(counts == 1), np.sum(counts == 2)
    return float(n1 / (n1 + 2 * n2)) if n1 + n2 > 0 else 0.5


def kneser_ney_orders(train: np.ndarray, held_out: np.ndarray, V: int, max_order: int):
    """Yields ``(n, P_n(held_out[i] | the n - 1 ids before it))`` for ``n = 1..max_order``, each ``(N,)``. Every
    order shares the chain of continuation-count orders below it, so the chain is built once: each step adds one
    order's raw counts on top of the chain (the answer at that order) and one order's continuation counts to it.
    The window hashes grow one id per order. The context of the first held-out characters is the end of the
    training text."""
    if max_order < 1:
        raise ValueError(f"an n-gram model needs an order of at least 1, got {max_order}")
    train = np.asarray(train, np.int64)
    tail = train[len(train) - (max_order - 1) :] if max_order > 1 else train[:0]
    stream = np.concatenate([tail, np.asarray(held_out)])
    ends = np.arange(len(stream) - len(held_out), len(stream))  # the index of each held-out character
    train_symbols, stream_symbols = _symbols(train), _symbols(stream)

    def interpolate(counted, contexts, successors, one_each, context, target, lower):
        discount = _discount(_count(counted, counted[one_each]))
        c_hw, c_h, n_h = _count(counted, target), _count(contexts, context), _count(successors, context)
        safe = np.where(c_h > 0, c_h, 1.0)
        return np.where(c_h > 0, np.maximum(c_hw - discount, 0.0) / safe + discount * n_h / safe * lower, lower)

    chain = np.full(len(held_out), 1.0 / V)  # order 0: uniform
    before = np.zeros(len(train) + 1, np.uint64)  # every (k - 1)-gram of the training text, by start position
    grams = _longer(before, train_symbols, 1)  # every k-gram
    held = np.zeros(len(stream) + 1, np.uint64)  # the same for the stream of held-out text
    for k in range(1, max_order + 1):
        held_grams = _longer(held, stream_symbols, k)
        context, target = held[ends - k + 1], held_grams[ends - k + 1]  # the k - 1 ids before each, the k ending it
        _, one_each = np.unique(grams, return_index=True)  # raw counts: the top order
        prefix = before[: len(grams)]
        yield k, interpolate(grams, prefix, prefix[one_each], one_each, context, target, chain)
        if k == max_order:
            break
        after = _longer(grams, train_symbols, k + 1)
        _, first = np.unique(after, return_index=True)  # continuation counts: one window per (k+1)-gram
        suffix, middle = grams[1:][first], before[1:][first]  # its last k ids, and their first k - 1
        _, one_each = np.unique(suffix, return_index=True)
        chain = interpolate(suffix, middle, middle[one_each], one_each, context, target, chain)
        before, grams, held = grams, after, held_grams


def kneser_ney_probabilities(train: np.ndarray, held_out: np.ndarray, V: int, order: int) -> np.ndarray:
    """``P(held_out[i] | the order - 1 ids before it)`` under interpolated Kneser-Ney of ``order``, ``(N,)``; the
    context of the first held-out characters is the end of the training text."""
    *_, (_, p) = kneser_ney_orders(train, held_out, V, order)
    return p


def kneser_ney_losses(train: np.ndarray, held_out: np.ndarray, V: int, max_order: int) -> dict[int, float]:
    """Mean nats per character on ``held_out`` of interpolated Kneser-Ney of every order ``1..max_order``."""
    return {n: float(-np.log(p).mean()) for n, p in kneser_ney_orders(train, held_out, V, max_order)}


def main(corpus: str, max_order: int = 20) -> dict:
    """Every order on the validation text; the order chosen there, on the test text (nats per character)."""
    from jaxrnn.data import load_splits

    splits = load_splits(corpus)
    train, V = np.asarray(splits.train), splits.vocab.size
    start = time.perf_counter()
    validation = kneser_ney_losses(train, np.asarray(splits.val), V, max_order)
    chosen = min(validation, key=validation.get)
    test = float(-np.log(kneser_ney_probabilities(train, np.asarray(splits.test), V, chosen)).mean())
    return {
        "corpus": corpus,
        "split": [len(splits.train), len(splits.val), len(splits.test)],
        "vocab_size": V,
        "model": "interpolated Kneser-Ney, one discount per order",
        "validation_nats_per_char": {str(n): v for n, v in validation.items()},
        "chosen_order": chosen,
        "test_nats_per_char": test,
        "test_bits_per_char": test / np.log(2),
        "seconds": round(time.perf_counter() - start, 1),
    }


def cli(argv=None) -> int:
    from experiments import common

    parser = argparse.ArgumentParser(prog="python -m experiments.ngrams", description=__doc__.split("\n")[0])
    parser.add_argument("--corpus", default="pydoc_topics", choices=("pydoc_topics", "stdlib_source"))
    parser.add_argument("--max-order", type=int, default=20, help="search orders 1..this (default: 20)")
    parser.add_argument("--out", default=os.path.join("experiments", "results"))
    args = parser.parse_args(argv)
    if not 1 <= args.max_order <= 20:
        print("ngrams: --max-order must be between 1 and 20", file=sys.stderr)
        return 2
    os.makedirs(args.out, exist_ok=True)
    results = main(args.corpus, args.max_order)
    results["command"] = f"python -m experiments.ngrams --corpus {args.corpus} --max-order {args.max_order}"
    results["environment"] = common.environment()
    path = common.save(args.out, f"ngrams_{args.corpus}", results)["json"]
    print(f"order {results['chosen_order']}: test {results['test_nats_per_char']:.4f} nats/char; wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(cli())
