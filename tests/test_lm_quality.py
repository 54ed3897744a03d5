"""The quality script: its n-gram baselines against hand-computed values; the full run is `slow`."""
import math
import os
import sys

import numpy as np
import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "experiments"))
import char_lm_quality  # noqa: E402


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


@pytest.mark.long
def test_default_training_beats_1_40_nats_within_5_minutes(tmp_path):
    """The default LSTM within its 5-minute budget against the n-gram baselines (about 17 minutes on 2 cores)."""
    res = char_lm_quality.main(char_lm_quality.PRESETS["cpu"])
    assert abs(res["ngram_val_loss"]["add-one 3-gram"] - 1.89) < 0.01
    assert res["models"]["lstm (default)"]["best_val_loss_within_budget"] <= 1.40
