"""The experiments' tests of comparisons: exact p values counted by hand, Holm's correction, Fisher's test, the
kept runs that let a sweep resume."""

import itertools
import json
import math

import numpy as np
import pytest

from experiments import common, stats


def by_enumeration(a, b):
    """The two-sided exact permutation p of the difference of means, every split listed: twice the smaller tail."""
    pooled, n = np.r_[a, b], len(a)
    observed = np.mean(a) - np.mean(b)
    splits = list(itertools.combinations(range(len(pooled)), n))
    low = high = 0
    for chosen in splits:
        mask = np.zeros(len(pooled), bool)
        mask[list(chosen)] = True
        d = pooled[mask].mean() - pooled[~mask].mean()
        low, high = low + (d <= observed + 1e-12), high + (d >= observed - 1e-12)
    return min(2 * min(low, high) / len(splits), 1.0)


def test_the_permutation_p_is_the_fraction_of_splits_as_extreme_as_the_one_seen():
    rng = np.random.default_rng(1)
    for n_a, n_b in ((3, 3), (4, 5), (5, 5)):
        a, b = rng.normal(0, 1, n_a), rng.normal(0.8, 1, n_b)
        assert stats.permutation_p(a, b)[0] == pytest.approx(by_enumeration(a, b), abs=1e-12)
    # apart at 5 against 5: 2 of the 252 splits are as extreme, the smallest p there is
    assert stats.permutation_p([1, 2, 3, 4, 5], [6, 7, 8, 9, 10])[0] == pytest.approx(2 / 252)
    assert stats.smallest_p(5, 5) == pytest.approx(2 / 252) and stats.smallest_p(3, 3) == pytest.approx(0.1)


def test_a_diverged_seed_counts_as_the_worst_and_the_test_runs_on_ranks():
    p, test = stats.permutation_p([0.1, 0.2, 0.3], [np.nan, 0.5, np.inf])
    assert p == pytest.approx(0.1)  # ranks apart: 2 of 20 splits
    assert test == "exact permutation test, two-sided, difference of mean ranks"
    sampled = stats.permutation_p([0.1, 0.2, 0.3], [0.4, 0.5, 0.6], exact_up_to=10, resamples=500)[1]
    assert sampled == "permutation test (500 random splits), two-sided, difference of means"  # 20 splits > 10
    c = stats.compare([0.1, 0.2, 0.3], [np.nan, 0.5, np.inf], ("clipped", "none"))
    assert c["better"] == "clipped" and c["centre_is"] == "median" and c["centre"][0] == pytest.approx(0.2)


def test_holm_steps_down_and_decide_claims_only_below_the_level():
    assert stats.holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert stats.holm([0.2, 0.001]) == pytest.approx([0.2, 0.002])
    decided = stats.decide(
        {
            "strong": stats.compare([1, 2, 3, 4, 5], [6, 7, 8, 9, 10], ("a", "b")),  # p = 0.0079
            "weak": stats.compare([1, 2, 3], [4, 5, 6], ("a", "b")),  # p = 0.1
        }
    )
    assert decided["strong"]["p_holm"] == pytest.approx(2 * 2 / 252) and decided["strong"]["verdict"] == "a better"
    assert decided["weak"]["verdict"] == stats.NOT_SHOWN and decided["weak"]["family_size"] == 2


def test_fisher_and_the_sign_flip_test_give_the_textbook_values():
    # 2 of 5 diverge against 0 of 5: the table's exact two-sided p is 0.444 (not a claim)
    assert stats.compare_counts((0, 2), (5, 5), ("clipped", "none"))["p"] == pytest.approx(4 / 9)
    c = stats.compare_counts((0, 10), (20, 20), ("clipped", "none"))
    # 10 of 40 diverged, all unclipped: that table and its mirror image are the two as extreme
    assert c["better"] == "clipped" and c["p"] == pytest.approx(2 * math.comb(20, 10) / math.comb(40, 10))
    c = stats.compare_to([0.9] * 10, 0.5, ("lstm", "rule"), lower_is_better=False)
    assert c["p"] == pytest.approx(2 / 2**10) and c["better"] == "lstm"  # all 10 above: 2 of 1024 sign patterns
    assert stats.compare_to([0.4, 0.6], 0.5, ("lstm", "rule"))["p"] == 1.0


def test_power_grows_with_seeds_and_is_small_where_the_test_cannot_reach_the_level():
    assert stats.power(0.0, 1.0, 3.0, 1.0, 3, trials=50) == 0.0  # 3 against 3: p >= 0.1 always
    assert stats.power(0.0, 1.0, 3.0, 1.0, 6, trials=100) > 0.8


def test_kept_runs_resume_a_sweep_and_skip_a_line_cut_short(tmp_path):
    path = str(tmp_path / "x.runs.jsonl")
    calls = []
    run = lambda seed: calls.append(seed) or {"seed": seed, "loss": np.float32(0.5) * seed}

    class Config:  # stands in for an experiment's frozen dataclass
        pass

    runs = common.Runs(path)
    assert [runs({"seed": s}, lambda s=s: run(s)) for s in (0, 1)] == [
        {"seed": 0, "loss": 0.0},
        {"seed": 1, "loss": 0.5},
    ]
    with open(path, "a") as f:
        f.write('{"key": "cut')  # a kill while writing
    again = common.Runs(path)
    assert again({"seed": 1}, lambda: run(1)) == {"seed": 1, "loss": 0.5} and calls == [0, 1]
    again({"seed": 2}, lambda: run(2))
    assert calls == [0, 1, 2] and all(json.loads(line) for line in open(path).readlines()[-1:])
