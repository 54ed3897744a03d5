"""The tests behind every comparison the experiments make: an exact permutation test on per-seed values, Fisher's
exact test on counts, Holm's correction over the comparisons of one experiment, and the power of a design.

A comparison is a dict (JSON-ready) holding the two samples' means, the test, its p value and, once ``decide`` has
seen all of an experiment's comparisons, the Holm-adjusted p and the verdict: ``"<name> better"`` where the adjusted
p is below ``ALPHA``, else ``"not shown at this budget"``. Tests are two-sided.

The permutation test enumerates every split of the pooled seeds when there are at most ``EXACT_UP_TO`` of them
(5 against 5 has 252; the smallest two-sided p is 2/252 = 0.0079), else it samples ``RESAMPLES`` splits with a
fixed seed. Two-sided p values are twice the smaller one-sided one (scipy's definition). A seed whose value is not
finite (a diverged run) counts as the worst value of all: the test then runs on ranks (the Mann-Whitney statistic,
by permutation), so that one diverged run cannot make a mean infinite.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import stats as scipy_stats

ALPHA = 0.05
EXACT_UP_TO = 200_000
RESAMPLES = 20_000
NOT_SHOWN = "not shown at this budget"


def _statistic(x, y, axis=-1):
    return np.mean(x, axis=axis) - np.mean(y, axis=axis)


def permutation_p(a, b, *, exact_up_to: int = EXACT_UP_TO, resamples: int = RESAMPLES) -> tuple[float, str]:
    """Two-sided p value of "``a`` and ``b`` come from one distribution" (``a``, ``b``: values per seed) and the
    test as run: exact or sampled, on the difference of means or of mean ranks where a value is not finite
    (worst = ``+inf``). Every split is counted up to ``exact_up_to`` of them, else ``resamples`` random ones."""
    a, b = np.asarray(a, float).ravel(), np.asarray(b, float).ravel()
    if min(a.size, b.size) < 1:
        raise ValueError(f"a permutation test needs values on both sides, got {a.size} and {b.size}")
    statistic = "difference of means"
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        pooled = scipy_stats.rankdata(np.where(np.isfinite(np.r_[a, b]), np.r_[a, b], np.inf))
        a, b, statistic = pooled[: a.size], pooled[a.size :], "difference of mean ranks"
    splits = math.comb(a.size + b.size, a.size)
    exact = splits <= exact_up_to
    test = ("exact permutation test" if exact else f"permutation test ({resamples} random splits)") + (
        f", two-sided, {statistic}"
    )
    if np.ptp(np.r_[a, b]) == 0 or min(a.size, b.size) < 2:  # one seed a side: every split is as extreme
        return 1.0, test
    result = scipy_stats.permutation_test(
        (a, b),
        _statistic,
        permutation_type="independent",
        alternative="two-sided",
        vectorized=True,
        n_resamples=np.inf if exact else resamples,
        rng=np.random.default_rng(0),
    )
    return float(min(result.pvalue, 1.0)), test


def compare(a, b, names: tuple[str, str], *, lower_is_better: bool = True) -> dict:
    """One comparison of per-seed values ``a`` against ``b`` by ``permutation_p``; ``better`` names the side with
    the better mean (``None`` on a tie)."""
    a, b = np.asarray(a, float).ravel(), np.asarray(b, float).ravel()
    p, test = permutation_p(a, b)
    worst = np.inf if lower_is_better else -np.inf
    centre_a, centre_b = (float(np.median(np.where(np.isfinite(v), v, worst))) for v in (a, b))
    centre = "median"  # where a run diverged: the mean would be infinite
    if np.isfinite(a).all() and np.isfinite(b).all():
        centre_a, centre_b, centre = float(a.mean()), float(b.mean()), "mean"
    better = None
    if centre_a != centre_b:
        better = names[0] if (centre_a < centre_b) == lower_is_better else names[1]
    return {
        "names": list(names),
        "n": [int(a.size), int(b.size)],
        "centre": [centre_a, centre_b],
        "centre_is": centre,
        "better": better,
        "test": test,
        "p": p,
    }


def pairwise(samples: dict, *, prefix: str = "", lower_is_better: bool = True) -> dict:
    """``compare`` for every pair of ``samples`` (name -> values per seed), in their order: the comparison of
    ``a`` against a later ``b`` is keyed ``f"{prefix}{a} vs {b}"``."""
    names = list(samples)
    return {
        f"{prefix}{a} vs {b}": compare(samples[a], samples[b], (a, b), lower_is_better=lower_is_better)
        for i, a in enumerate(names)
        for b in names[i + 1 :]
    }


def compare_to(values, reference: float, names: tuple[str, str], *, lower_is_better: bool = True) -> dict:
    """Per-seed ``values`` against one fixed number (a rule scored on the same test set): an exact sign-flip
    permutation test of ``values - reference`` around 0, two-sided."""
    d = np.asarray(values, float).ravel() - reference
    if d.size < 2 or np.all(d == 0):
        p = 1.0
    else:
        result = scipy_stats.permutation_test(
            (d,),
            lambda x, axis=-1: np.mean(x, axis=axis),
            permutation_type="samples",
            alternative="two-sided",
            vectorized=True,
            n_resamples=np.inf if 2**d.size <= EXACT_UP_TO else RESAMPLES,
            rng=np.random.default_rng(0),
        )
        p = float(min(result.pvalue, 1.0))
    centre = float(np.mean(d) + reference)
    better = None if centre == reference else names[int((centre < reference) != lower_is_better)]
    return {
        "names": list(names),
        "n": [int(d.size), 1],
        "centre": [centre, float(reference)],
        "centre_is": "mean",
        "better": better,
        "test": ("exact" if 2**d.size <= EXACT_UP_TO else f"{RESAMPLES} random signs,")
        + " sign-flip permutation test against a fixed number, two-sided, mean difference",
        "p": p,
    }


def compare_counts(events: tuple[int, int], totals: tuple[int, int], names: tuple[str, str]) -> dict:
    """Fisher's exact test (two-sided) on ``events[i]`` of ``totals[i]`` runs; the side with fewer events is
    ``better`` (events are failures: divergences, runs that never learn)."""
    table = [[events[0], totals[0] - events[0]], [events[1], totals[1] - events[1]]]
    p = float(scipy_stats.fisher_exact(table).pvalue)
    rates = [events[0] / totals[0], events[1] / totals[1]]
    better = None if rates[0] == rates[1] else names[int(rates[1] < rates[0])]
    return {
        "names": list(names),
        "n": list(totals),
        "events": list(events),
        "better": better,
        "test": "Fisher's exact test, two-sided",
        "p": min(p, 1.0),
    }


def holm(ps) -> list[float]:
    """Holm's step-down adjustment of ``ps``: controls the chance of any false claim among them at the level
    used. ``holm([0.01, 0.04, 0.03]) == [0.03, 0.06, 0.06]``."""
    ps = np.asarray(ps, float)
    m = ps.size
    order = np.argsort(ps, kind="stable")
    adjusted = np.maximum.accumulate(np.minimum((m - np.arange(m)) * ps[order], 1.0))
    out = np.empty(m)
    out[order] = adjusted
    return out.tolist()


def decide(comparisons: dict) -> dict:
    """Adds ``p_holm`` (over all of ``comparisons``, one experiment's family) and ``verdict`` to each comparison and
    returns them. A comparison is a claim only where ``p_holm < ALPHA``."""
    names = list(comparisons)
    for name, adjusted in zip(names, holm([comparisons[n]["p"] for n in names])):
        c = comparisons[name]
        c["p_holm"] = adjusted
        c["family_size"] = len(names)
        c["verdict"] = f"{c['better']} better" if adjusted < ALPHA and c["better"] is not None else NOT_SHOWN
    return comparisons


def smallest_p(n_a: int, n_b: int) -> float:
    """The smallest two-sided p an exact permutation test of ``n_a`` against ``n_b`` values can give."""
    return min(2 / math.comb(n_a + n_b, n_a), 1.0)


def power(
    mean_a: float,
    std_a: float,
    mean_b: float,
    std_b: float,
    n: int,
    *,
    family: int = 1,
    trials: int = 400,
    seed: int = 0,
) -> float:
    """The chance that ``n`` seeds a side reach ``p_holm < ALPHA`` in a family of ``family`` comparisons (taking this
    one as the family's smallest p, the most favourable case), if each side's values are normal with the given
    mean and standard deviation: the fraction of ``trials`` simulated experiments that do (each test exact up to
    1000 splits, else on 2000 random ones: p is then resolved to about 1/2000, enough for a family of 20)."""
    rng = np.random.default_rng(seed)
    hits = 0
    for _ in range(trials):
        a = rng.normal(mean_a, std_a, n)
        b = rng.normal(mean_b, std_b, n)
        hits += permutation_p(a, b, exact_up_to=1000, resamples=2000)[0] * family < ALPHA
    return hits / trials
