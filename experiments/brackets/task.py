"""The bracket strings: random balanced ones, rearrangements of the same brackets that are not, the hash buckets that
keep the training, validation and test sets apart, and the first-and-last rule to beat."""

from __future__ import annotations

import hashlib
import itertools
import math

import jax.numpy as jnp

import numpy as np

OPEN, CLOSE = 0, 1
TEST_BUCKETS, VALIDATION_BUCKETS = 25, 10  # of 100: test [0, 25), validation [25, 35), training [35, 100)
ENUMERATE_UP_TO = 200_000  # list every string when there are at most this many


def balanced(rng: np.random.Generator, n: int, L: int) -> np.ndarray:
    """``n`` random balanced strings of even length ``L`` (0 = open, 1 = close): a random walk on the depth
    that opens when it must, closes when it must, and otherwise flips a coin."""
    out = np.empty((n, L), np.uint8)
    depth = np.zeros(n, np.int64)
    for t in range(L):
        left = L - t
        must_close = depth >= left
        must_open = depth == 0
        choice = np.where(must_close, CLOSE, np.where(must_open, OPEN, rng.integers(0, 2, n)))
        out[:, t] = choice
        depth += np.where(choice == OPEN, 1, -1)
    return out


def is_balanced(s: np.ndarray) -> np.ndarray:
    """Along the last axis: the depth never goes below 0 and ends at 0."""
    depth = np.cumsum(np.where(s == OPEN, 1, -1), axis=-1)
    return (depth.min(axis=-1) >= 0) & (depth[..., -1] == 0)


def first_last_rule(s: np.ndarray) -> np.ndarray:
    """The trivial classifier: balanced when the first bracket opens and the last closes (along the last axis)."""
    return (s[..., 0] == OPEN) & (s[..., -1] == CLOSE)


def rule_accuracy(xs, labels) -> float:
    """The fraction of ``xs (L, n)`` (time-major ids) whose ``labels (n,)`` (1 = balanced) the rule gets right."""
    return float(np.mean(first_last_rule(np.asarray(xs).T) == (np.asarray(labels) == 1)))


def bucket(strings: np.ndarray) -> np.ndarray:
    """``strings (n, L)`` -> ``(n,)`` in 0..99, a hash of each string's brackets: the same string always lands
    in the same bucket, whatever the seed or the set it was drawn for."""
    return np.array(
        [
            int.from_bytes(hashlib.blake2b(np.packbits(s.astype(bool)).tobytes(), digest_size=8).digest(), "little")
            % 100
            for s in strings
        ],
        dtype=np.int64,
    )


def candidates(rng: np.random.Generator, n: int, L: int):
    """Distinct balanced and unbalanced strings with ``L / 2`` of each bracket, ``((n_pos, L), (n_neg, L))``:
    every one of them where there are at most ``ENUMERATE_UP_TO``, else about ``n`` of each drawn at random."""
    if math.comb(L, L // 2) <= ENUMERATE_UP_TO:
        every = np.ones((math.comb(L, L // 2), L), np.uint8)
        for row, opens in zip(every, itertools.combinations(range(L), L // 2)):
            row[list(opens)] = OPEN
    else:
        pos = balanced(rng, n, L)
        every = np.concatenate([pos, rng.permuted(balanced(rng, 2 * n, L), axis=1)])
    every = np.unique(every, axis=0)
    every = every[rng.permutation(len(every))]  # unique() sorts; the first rows of a sorted list are no sample
    keep = is_balanced(every)
    return every[keep], every[~keep]


def labelled(pos: np.ndarray, neg: np.ndarray, rng: np.random.Generator):
    """Positives and negatives shuffled together: ids ``(L, n)`` time-major, labels ``(n,)`` (1 = balanced)."""
    xs = np.concatenate([pos, neg])
    labels = np.concatenate([np.ones(len(pos), np.int32), np.zeros(len(neg), np.int32)])
    order = rng.permutation(len(xs))
    return jnp.asarray(xs[order].T), jnp.asarray(labels[order])


def make_sets(L: int, pool: int, eval_size: int, seed: int = 0) -> dict:
    """The training pools and the two held-out sets for length ``L``, disjoint by their buckets.

    Returns ``{"train": (pos (n, L), neg (m, L)), "validation": (xs (L, k), labels (k,)), "test": (xs, labels)}``;
    each held-out set has equally many of each class, at most ``eval_size`` in all.
    """
    rng = np.random.default_rng(seed + L)
    pos, neg = candidates(rng, pool + 2 * eval_size, L)
    b_pos, b_neg = bucket(pos), bucket(neg)
    sets = {}
    for name, lo, hi in (("test", 0, TEST_BUCKETS), ("validation", TEST_BUCKETS, TEST_BUCKETS + VALIDATION_BUCKETS)):
        p, q = pos[(lo <= b_pos) & (b_pos < hi)], neg[(lo <= b_neg) & (b_neg < hi)]
        half = min(eval_size // 2, len(p), len(q))
        sets[name] = labelled(p[:half], q[:half], rng)
    train = TEST_BUCKETS + VALIDATION_BUCKETS
    sets["train"] = (pos[b_pos >= train][: pool // 2], neg[b_neg >= train][: pool - pool // 2])
    return sets
