"""The bracket strings: random balanced ones, the same with one bracket flipped in the middle third (unbalanced, and
indistinguishable from balanced in their first and last thirds), the hash buckets that keep the training,
validation and test sets apart, and the window rules to beat."""

from __future__ import annotations

import hashlib

import jax.numpy as jnp
import numpy as np

OPEN, CLOSE, PAD = 0, 1, 2  # PAD: left padding of shorter training strings, the depth unchanged
TEST_BUCKETS, VALIDATION_BUCKETS = 25, 10  # of 100: test [0, 25), validation [25, 35), training [35, 100)


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


def flipped(rng: np.random.Generator, strings: np.ndarray) -> np.ndarray:
    """Each of ``strings (n, L)`` with one bracket, at a uniform position in ``[L // 3, 2 L // 3)``, turned the
    other way. The final depth becomes +-2, so the string is unbalanced; before the flip it is the balanced
    string's prefix, so it never goes below depth 0 in its first third."""
    out = strings.copy()
    n, L = strings.shape
    at = rng.integers(L // 3, 2 * L // 3, n)
    out[np.arange(n), at] = np.where(out[np.arange(n), at] == OPEN, CLOSE, OPEN)
    return out


def depth(s: np.ndarray) -> np.ndarray:
    """The running depth along the last axis (``PAD`` counts 0)."""
    return np.cumsum(np.where(s == OPEN, 1, np.where(s == CLOSE, -1, 0)), axis=-1)


def is_balanced(s: np.ndarray) -> np.ndarray:
    """Along the last axis: the depth never goes below 0 and ends at 0."""
    d = depth(s)
    return (d.min(axis=-1) >= 0) & (d[..., -1] == 0)


def window_rule(s: np.ndarray, k: int) -> np.ndarray:
    """The best a reader of the first and last ``k`` brackets alone can check: "balanced" when those two windows
    could belong to a balanced string (the prefix never below 0, the suffix never below 0 read from the end, and
    the depths they leave differ by no more than the unseen middle can make up); the full check when
    ``2 k >= L``. ``s (n, L)`` -> ``(n,)``."""
    L = s.shape[-1]
    if 2 * k >= L:
        return is_balanced(s)
    prefix, suffix = depth(s[..., :k]), depth(np.where(s[..., L - k :][..., ::-1] == OPEN, CLOSE, OPEN))
    gap = np.abs(prefix[..., -1] - suffix[..., -1])
    return (prefix.min(axis=-1) >= 0) & (suffix.min(axis=-1) >= 0) & (gap <= L - 2 * k) & (gap % 2 == (L % 2))


def rule_accuracy(xs, labels, k: int) -> float:
    """The fraction of ``xs (L, n)`` (time-major ids) whose ``labels (n,)`` (1 = balanced) ``window_rule`` gets
    right."""
    return float(np.mean(window_rule(np.asarray(xs).T, k) == (np.asarray(labels) == 1)))


def bucket(strings: np.ndarray) -> np.ndarray:
    """``strings (n, L)`` -> ``(n,)`` in 0..99, a hash of each string's brackets: the same string always lands
    in the same bucket, whatever the seed or the set it was drawn for."""
    return np.array(
        [
            int.from_bytes(hashlib.blake2b(np.asarray(s, np.uint8).tobytes(), digest_size=8).digest(), "little") % 100
            for s in strings
        ],
        dtype=np.int64,
    )


def draw(rng: np.random.Generator, n: int, L: int, lo: int, hi: int):
    """Up to ``n`` distinct balanced and ``n`` distinct flipped strings of length ``L`` whose bucket is in
    ``[lo, hi)``, ``((p, L), (q, L))``; flipped strings come from balanced ones drawn apart from the positives."""
    out = []
    for make in (lambda m: balanced(rng, m, L), lambda m: flipped(rng, balanced(rng, m, L))):
        strings = np.unique(make(3 * n * 100 // max(hi - lo, 1)), axis=0)
        strings = strings[rng.permutation(len(strings))]  # unique() sorts
        b = bucket(strings)
        out.append(strings[(lo <= b) & (b < hi)][:n])
    return tuple(out)


def left_pad(strings: np.ndarray, T: int) -> np.ndarray:
    """``strings (n, L)`` with ``PAD`` in front up to length ``T``."""
    return np.concatenate([np.full((len(strings), T - strings.shape[1]), PAD, np.uint8), strings], axis=1)


def labelled(pos: np.ndarray, neg: np.ndarray, rng: np.random.Generator):
    """Positives and negatives shuffled together: ids ``(L, n)`` time-major, labels ``(n,)`` (1 = balanced)."""
    xs = np.concatenate([pos, neg])
    labels = np.concatenate([np.ones(len(pos), np.int32), np.zeros(len(neg), np.int32)])
    order = rng.permutation(len(xs))
    return jnp.asarray(xs[order].T), jnp.asarray(labels[order])


def make_sets(train_lengths: tuple, test_lengths: tuple, pool: int, eval_size: int, seed: int = 0) -> dict:
    """The training pool and held-out sets, disjoint by their buckets.

    Returns ``{"train": (pos (n, T), neg (m, T)), "validation": (xs (T, k), labels (k,)), "test": {L: (xs (L, k),
    labels)}}`` with ``T = max(train_lengths)``: training and validation strings of every training length, left
    padded to ``T``; a test set per length, unpadded. Each held-out set has equally many of each class, at most
    ``eval_size`` in all (fewer where the buckets hold fewer distinct strings).
    """
    rng = np.random.default_rng(seed)
    T = max(train_lengths)
    per = lambda n: max(n // (2 * len(train_lengths)), 1)
    train_lo = TEST_BUCKETS + VALIDATION_BUCKETS
    parts = [draw(rng, per(pool), L, train_lo, 100) for L in train_lengths]
    train = tuple(np.concatenate([left_pad(p[c], T) for p in parts]) for c in (0, 1))
    validation = [draw(rng, per(eval_size), L, TEST_BUCKETS, train_lo) for L in train_lengths]
    validation = [(p[: min(len(p), len(q))], q[: min(len(p), len(q))]) for p, q in validation]
    sets = {
        "train": train,
        "validation": labelled(*(np.concatenate([left_pad(v[c], T) for v in validation]) for c in (0, 1)), rng),
        "test": {},
    }
    for L in test_lengths:
        p, q = draw(rng, eval_size // 2, L, 0, TEST_BUCKETS)
        half = min(len(p), len(q))
        sets["test"][L] = labelled(p[:half], q[:half], rng)
    return sets
