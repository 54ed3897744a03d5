"""Interpolated Kneser-Ney against a loop-by-loop reference written from the equations, on small texts."""

import collections

import numpy as np
import pytest

from experiments import ngrams


def reference_probability(train, context, w, V, order):
    """P(w | context) of interpolated Kneser-Ney, by dictionaries and recursion."""
    train = [int(x) for x in train]
    raw = [collections.Counter(tuple(train[i : i + k]) for i in range(len(train) - k + 1)) for k in range(order + 2)]

    def continuation(k):
        out = collections.Counter()
        for g in raw[k + 1]:
            out[g[1:]] += 1
        return out

    def discount(counts):
        n1 = sum(1 for c in counts.values() if c == 1)
        n2 = sum(1 for c in counts.values() if c == 2)
        return n1 / (n1 + 2 * n2) if n1 + n2 else 0.5

    def p(k, h):
        if k == 0:
            return 1.0 / V
        counts = raw[k] if k == order else continuation(k)
        D = discount(counts)
        following = {g[-1]: c for g, c in counts.items() if g[:-1] == h}
        total = sum(following.values())
        lower = p(k - 1, h[1:])
        if total == 0:
            return lower
        return max(following.get(w, 0) - D, 0) / total + D * len(following) / total * lower

    return p(order, tuple(int(x) for x in context[len(context) - (order - 1) :]) if order > 1 else ())


def test_kneser_ney_equals_the_reference_and_sums_to_one():
    rng = np.random.default_rng(0)
    V = 4
    train = rng.integers(0, V, 400)
    train[::5] = 1  # structure, so that the orders differ
    held = rng.integers(0, V, 30)
    every = dict(ngrams.kneser_ney_orders(train, held, V, 4))  # all orders from one chain
    for order in (1, 2, 3, 4):
        fast = ngrams.kneser_ney_probabilities(train, held, V, order)
        np.testing.assert_array_equal(every[order], fast)
        stream = np.concatenate([train, held])
        for i in range(len(held)):
            at = len(train) + i
            expected = reference_probability(train, stream[at - order + 1 : at], held[i], V, order)
            assert fast[i] == pytest.approx(expected, rel=1e-12)
        for context in ([0, 1, 2], [3, 3, 3]):
            total = sum(ngrams.kneser_ney_probabilities(train, np.array([*context, w]), V, order)[-1] for w in range(V))
            assert total == pytest.approx(1.0, abs=1e-12)


def test_on_text_without_structure_every_order_is_near_the_entropy():
    rng = np.random.default_rng(1)
    V = 8
    train, held = rng.integers(0, V, 50_000), rng.integers(0, V, 5_000)
    losses = ngrams.kneser_ney_losses(train, held, V, 4)
    for n, loss in losses.items():
        assert np.log(V) - 0.005 < loss < np.log(V) + 0.03 * n  # more orders overfit a little, never below


def test_an_order_below_one_is_refused_by_name():
    with pytest.raises(ValueError, match="order of at least 1, got 0"):
        ngrams.kneser_ney_probabilities(np.arange(10) % 3, np.arange(4) % 3, 3, 0)
