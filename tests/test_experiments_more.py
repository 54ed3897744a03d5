"""The sequence-to-sequence, captioning and truncated-BPTT experiments: data golden values, then tiny presets
that must beat a question-blind baseline."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxrnn
from experiments import seq2seq

# --------------------------------------------------------------------------------------- seq2seq


def test_seq2seq_encodes_a_problem_as_the_lecture_writes_it():
    q, lengths, inputs, targets, mask = seq2seq.encode(jnp.array([57, 999, 0]), jnp.array([362, 999, 5]), 3)
    assert [seq2seq.to_text(q[:, j]) for j in range(3)] == ["57+362=$", "999+999=", "0+5=$$$$"]
    assert lengths.tolist() == [7, 8, 4]
    assert [seq2seq.to_text(inputs[:, j]) for j in range(3)] == ["^419$", "^1998", "^5$$$"]
    assert [seq2seq.to_text(targets[:, j]) for j in range(3)] == ["419$$", "1998$", "5$$$$"]
    assert np.asarray(mask).sum(axis=0).tolist() == [4, 5, 2]  # the digits and one END
    reversed_q = seq2seq.encode(jnp.array([57]), jnp.array([362]), 3, reverse=True)[0]
    assert seq2seq.to_text(reversed_q[:, 0]) == "=263+75$"  # reversed within its length, padding kept at the end


def test_seq2seq_training_never_sees_a_held_out_problem_and_stays_in_range():
    a, b = jnp.array([0, 7, 7, 3]), jnp.array([0, 999, 998, 4])  # (7, 999) held out: b + 1 has 4 digits
    assert bool(seq2seq.is_held_out(a, b)[:2].all()) and not bool(seq2seq.is_held_out(a, b)[2:].any())
    assert seq2seq.training_operand(a, b, 3).tolist() == [1, 998, 998, 4]
    for digits in (2, 3):
        q, lengths, inputs, targets, mask = seq2seq.training_batch(jax.random.PRNGKey(digits), digits, 1_000,
                                                                   reverse=False)
        assert int(lengths.max()) <= 2 * digits + 2 and int(q.max()) < seq2seq.VOCAB
        q, targets = np.asarray(q).T, np.asarray(targets).T
        problems = [seq2seq.to_text(row).split("=")[0].split("+") for row in q]
        a, b = np.array([[int(x) for x in p] for p in problems]).T
        assert not seq2seq.is_held_out(a, b).any()
        answers = [int(seq2seq.to_text(row).split("$")[0]) for row in targets]
        np.testing.assert_array_equal(answers, a + b)
    (a, b), _ = seq2seq.held_out_set(jax.random.PRNGKey(0), 3, 200)
    assert len(a) == 200 and bool(seq2seq.is_held_out(a, b).all())
    assert len({(int(x), int(y)) for x, y in zip(a, b)}) == 200


def test_seq2seq_baselines_are_what_they_claim():
    targets = np.array([[1, 1, 2], [13, 13, 13]])
    mask = np.array([[True, True, True], [True, True, False]])
    base = seq2seq.constant_answer_scores(targets, mask)
    assert base["accuracy"] == pytest.approx(4 / 5)
    assert base["loss"] == pytest.approx(-(2 * np.log(2 / 3) + np.log(1 / 3)) / 5)


@pytest.mark.slow
def test_seq2seq_tiny_preset_learns_addition_beyond_the_blind_baseline():
    s = seq2seq.main(seq2seq.PRESETS["tiny"])["summary"]
    # a question-blind constant answer is right only when its sum happens to be it
    assert s["reversed_test_exact_match"] > 0.1
    assert s["reversed_test_position_accuracy"] > s["reversed_constant_answer_accuracy"] + 0.1
    assert s["reversed_test_loss"] < 0.7 * s["reversed_constant_answer_loss"]


# ---------------------------------------------------------------------------------- captioning


@pytest.fixture(scope="module")
def captioning():
    pytest.importorskip("sklearn", reason="the captioning experiment needs scikit-learn's 8x8 digits "
                                          "(pip install scikit-learn)")
    from experiments import captioning

    return captioning


def test_captioning_composes_images_and_captions_that_agree(captioning):
    images, labels = captioning.load_digits()
    assert images.shape == (1797, 8, 8) and images.max() == 1.0
    scans = (jnp.asarray(images), jnp.asarray(labels))
    picture, inputs, targets, mask, n = captioning.compose(jax.random.PRNGKey(0), scans, 64)
    assert picture.shape == (64, 8, 24) and set(np.asarray(n).tolist()) == {2, 3}
    for j in range(64):
        words = captioning.caption_text(targets[:, j]).split()
        assert len(words) == int(n[j])
        for k, w in enumerate(words):  # each tile is a scan of the digit its word names
            tile = np.asarray(picture[j, :, 8 * k: 8 * k + 8])
            assert labels[np.all(images == tile, axis=(1, 2))].tolist()[0] == captioning.WORDS.index(w)
        if n[j] == 2:
            assert float(jnp.abs(picture[j, :, 16:]).max()) == 0.0
    assert int(inputs[0, 0]) == captioning.GO and np.asarray(mask).sum(axis=0).tolist() == (np.asarray(n) + 1).tolist()
    train, test = captioning.split_scans(images, labels, 0.3, 0)
    assert len(train[1]) + len(test[1]) == 1797 and len(test[1]) == 539


def test_captioning_modes_put_the_image_where_they_say(captioning):
    cfg = captioning.PRESETS["tiny"]
    images = jax.random.uniform(jax.random.PRNGKey(1), (3, 8, 24))
    p = captioning.init_captioner(jax.random.PRNGKey(0), cfg, "init")
    state = captioning.start(p, images, "init")
    np.testing.assert_allclose(state.h, jnp.tanh(captioning.features(p, images)), rtol=1e-6)
    assert float(jnp.abs(state.c).max()) == 0.0
    p = captioning.init_captioner(jax.random.PRNGKey(0), cfg, "first_input")
    assert p.Wimg.shape == (cfg.embed_size, cfg.feature_size)  # the image lives in the word-embedding space
    state = captioning.start(p, images, "first_input")
    expected, _ = jaxrnn.lstm_step(p.decoder, jaxrnn.initial_carry(p.decoder, (3,)), captioning.features(p, images))
    np.testing.assert_allclose(state.h, expected.h, rtol=1e-6)


def test_captioning_scores_count_words_and_whole_captions(captioning):
    targets = jnp.array([[1, 4], [2, 5], [10, 6], [10, 10]])
    mask = jnp.array([[1, 1], [1, 1], [1, 1], [0, 1]], bool)
    ids = jnp.array([[1, 4], [2, 0], [10, 6], [3, 10]])  # first right (after its END anything goes), second 2/3
    s = captioning.scores(ids, targets, mask, jnp.array([2, 3]))
    assert float(s["exact_match"]) == 0.5 and float(s["word_accuracy"]) == pytest.approx(4 / 5)


@pytest.mark.slow
def test_captioning_tiny_preset_beats_chance_in_both_modes(captioning):
    s = captioning.main(captioning.PRESETS["tiny"])["summary"]
    for mode in captioning.MODES:
        assert s[f"{mode}_greedy_word_accuracy"] > 0.4  # chance: 0.1 per word
        assert s[f"{mode}_greedy_exact_match"] > 0.15   # chance: about 1/1000
        assert s[f"{mode}_sampled_word_accuracy"] > 0.25


# ------------------------------------------------------------------------------ truncated BPTT


def test_truncated_gradient_is_the_sum_of_chunk_gradients_and_full_bptt_when_k_is_T(x64):
    from experiments import truncated_bptt

    params = jaxrnn.init_lstm(jax.random.PRNGKey(0), 7, 5, 7, dtype=jnp.float64)
    carry = jaxrnn.initial_carry(params, (3,))
    xs = jax.random.randint(jax.random.PRNGKey(1), (12, 3), 0, 7)
    ys = jax.random.randint(jax.random.PRNGKey(2), (12, 3), 0, 7)
    grad = jax.jit(jax.value_and_grad(jaxrnn.sequence_loss, has_aux=True))
    (full_loss, _), full = grad(params, carry, xs, ys)
    loss, grads = truncated_bptt.truncated_gradient(params, carry, xs, ys, 12)
    assert float(loss) == pytest.approx(float(full_loss), rel=1e-14)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14), grads, full)
    (l1, c1), g1 = grad(params, carry, xs[:4], ys[:4])   # by hand: three chunks of 4, state carried
    (l2, c2), g2 = grad(params, c1, xs[4:8], ys[4:8])
    (l3, _), g3 = grad(params, c2, xs[8:], ys[8:])
    loss, grads = truncated_bptt.truncated_gradient(params, carry, xs, ys, 4)
    assert float(loss) == pytest.approx(float(l1 + l2 + l3), rel=1e-14)  # the same loss: the forward pass is whole
    jax.tree.map(lambda a, *b: np.testing.assert_allclose(a, sum(b), rtol=1e-12, atol=1e-14), grads, g1, g2, g3)
    assert float(jnp.abs(grads.Whh - full.Whh).max()) > 1e-6  # and a different gradient from full BPTT


@pytest.mark.slow
def test_truncated_bptt_tiny_preset_learns_and_only_truncation_keeps_memory_flat():
    from experiments import truncated_bptt

    cfg = truncated_bptt.PRESETS["tiny"]
    s = truncated_bptt.main(cfg)["summary"]
    for k in cfg.truncations:
        assert s[f"k{k}_validation_loss"] < 0.8 * s["uniform_loss"]
    T0, T1 = cfg.memory_lengths[0], cfg.memory_lengths[-1]
    growth = T1 / T0
    assert s[f"full_growth_T{T0}_to_T{T1}"] > 0.6 * growth         # O(T)
    assert s[f"remat_growth_T{T0}_to_T{T1}"] > 0.6 * growth
    assert s[f"truncated_growth_T{T0}_to_T{T1}"] < 1.1              # O(k): only the ids grow
    assert s[f"remat_MiB_T{T1}"] < s[f"full_MiB_T{T1}"]
