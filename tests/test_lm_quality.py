"""The quality script: its n-gram baselines against hand-computed values; the tiny preset is `slow`, the full run
`long`."""

import math

import numpy as np
import pytest

from experiments import char_lm_quality


def test_ngram_baselines_match_hand_computation():
    train = np.array([0, 1, 0, 1, 0, 1, 0, 2])  # V = 3
    val = np.array([1, 0])
    res = char_lm_quality.ngram_losses(train, val, 3, 2)
    # add-one unigram: counts (4, 3, 1) of 8 -> p(1) = 4/11, p(0) = 5/11
    assert abs(res["add-one 1-gram"] - -(math.log(4 / 11) + math.log(5 / 11)) / 2) < 1e-12
    # add-one bigram: contexts are train's last char 2 (never a context: 0/0 -> 1/3) and then 1 (C(1)=3, C(1,0)=3)
    assert abs(res["add-one 2-gram"] - -(math.log(1 / 3) + math.log(4 / 6)) / 2) < 1e-12
    # Witten-Bell bigram: unseen context 2 backs off to the unigram 3/8... with add-one base 1/V first
    assert res["Witten-Bell 2-gram"] < res["add-one 2-gram"]


@pytest.mark.slow
def test_tiny_preset_aggregates_seeds_and_samples_at_three_temperatures():
    cfg = char_lm_quality.PRESETS["tiny"]
    res = char_lm_quality.main(cfg)
    uniform = math.log(res["vocab_size"])
    for label, _ in cfg.models:
        m = res["models"][label]
        best = m["best_val_loss_within_budget"]
        assert best["n"] == len(cfg.seeds) == len(m["runs"]) and [r["seed"] for r in m["runs"]] == list(cfg.seeds)
        assert best["min"] <= best["mean"] <= best["max"] < 1.05 * uniform  # finite, none diverged
    assert res["models"][cfg.models[0][0]]["best_val_loss_within_budget"]["max"] < uniform  # the LSTM beats guessing
    assert res["samples"]["model"] == cfg.models[0][0]
    texts = res["samples"]["by_temperature"]
    assert sorted(texts, key=float) == [f"{t:g}" for t in cfg.temperatures]
    assert all(len(t) == cfg.sample_length for t in texts.values())
    assert set(res["verdicts"].values()) <= {"not shown at this budget"} | {
        f"{label} better" for label in [*res["models"], "Witten-Bell 3-gram"]
    }


@pytest.mark.long
def test_default_training_beats_1_40_nats_on_every_seed(tmp_path):
    """The default LSTM on every seed against the n-gram baselines (about 6 minutes on 2 idle cores)."""
    res = char_lm_quality.main(char_lm_quality.PRESETS["cpu"])
    assert abs(res["ngram_val_loss"]["add-one 3-gram"] - 1.89) < 0.01
    assert res["models"]["lstm (default)"]["best_val_loss_within_budget"]["max"] <= 1.40


@pytest.mark.slow
def test_char_benchmark_tiny_preset_matches_parameters_and_scores_the_test_text():
    from experiments import char_benchmark

    cfg = char_benchmark.PRESETS["tiny"]
    res = char_benchmark.main(cfg)
    t = res["texts"]["pydoc_topics"]
    lstm, rnn = t["parameters"]["lstm"], t["parameters"]["rnn"]
    assert abs(rnn - lstm) <= char_benchmark.parameter_count("rnn", t["hidden"]["rnn"] + 8, t["vocab_size"]) - rnn
    assert t["hidden"]["rnn"] > t["hidden"]["lstm"]  # the RNN needs more units for the same parameters
    for c in cfg.cells:
        rates = [r["learning_rate"] for r in t["search"][c]]  # the grid, then past its edge while the best is there
        n = len(cfg.learning_rates)
        assert rates[:n] == list(cfg.learning_rates) and len(rates) <= n + 3
        assert t["chosen_learning_rate"][c] == min(t["search"][c], key=lambda r: r["validation_loss"])["learning_rate"]
        assert t["test_bpc"][c]["n"] == len(cfg.seeds) and t["test_bpc"][c]["max"] < 7.0  # below log2 V + noise
    assert 1 <= t["kneser_ney"]["order"] <= cfg.max_order and t["test_bpc"]["kneser_ney"] < 3.0
    assert set(res["summary"]["comparisons"]) == {
        "pydoc_topics: lstm vs rnn",
        "pydoc_topics: lstm vs Kneser-Ney",
        "pydoc_topics: rnn vs Kneser-Ney",
    }
