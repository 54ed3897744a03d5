"""The experiments' tiny presets: theory asserted exactly where it gives a number, better-than-baseline elsewhere."""
import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jaxrnn
from experiments import common, gradient_clipping, long_range, vanishing_gradients


def test_vanishing_gradients_tiny_preset_matches_theory():
    cfg = vanishing_gradients.PRESETS["tiny"]
    s = vanishing_gradients.main(cfg)["summary"]
    assert s["linear_slope_max_abs_error"] < 1e-6
    assert s["tanh_bound_holds_for_s_below_1"] is True
    assert s["tanh_s0.5_max_norm_any_lag"] <= 0.5 * (1 + 1e-12)  # lag 1 is the largest: s^1
    assert s["cell_path_vs_forget_product_max_rel_error"] <= 1e-14
    assert s["keep_max_abs_change"] == 0.0
    T = cfg.T  # a forget gate near 1 keeps the gradient that the vanilla RNN loses
    assert s[f"lstm_bias5.0_median_dc_norm_lag{T}"] > 10 * s[f"rnn_default_init_median_norm_lag{T}"]


@pytest.mark.slow
def test_gradient_clipping_tiny_preset_bounds_the_norm_and_keeps_the_direction():
    cfg = gradient_clipping.PRESETS["tiny"]
    s = gradient_clipping.main(cfg)["summary"]
    assert s["clipped_steps_total"] > 0  # the bound below is checked on steps where clipping acted
    assert s["clipped_max_norm"] <= cfg.threshold * (1 + 1e-6)
    assert s["clipped_max_direction_error"] < 1e-6
    assert s["global_norm_non_finite_losses_total"] == 0


def test_global_norm_clipping_rescales_to_the_threshold_without_turning(x64):
    grads = {"a": jnp.array([3.0, 4.0]), "b": jnp.array([[0.0, 12.0]])}  # global norm 13
    clip = optax.clip_by_global_norm(2.0)
    out, _ = clip.update(grads, clip.init(grads))
    assert float(common.global_norm(out)) == pytest.approx(2.0, rel=1e-15)
    for k in grads:
        np.testing.assert_allclose(out[k], grads[k] * 2.0 / 13.0, rtol=1e-15)
    small = jax.tree.map(lambda g: g / 13.0, grads)  # norm 1 < 2: untouched
    same, _ = clip.update(small, clip.init(small))
    jax.tree.map(np.testing.assert_array_equal, same, small)


def test_count_spikes():
    losses = np.array([1.0, 1.0, 1.0, 5.0, 1.0, np.nan, 1.0, 3.9])
    assert gradient_clipping.count_spikes(losses, 4.0, 3) == 1


@pytest.mark.slow
def test_long_range_tiny_preset_beats_the_baseline():
    s = long_range.main(long_range.PRESETS["tiny"])["summary"]
    assert s["adding_lstm_T10_test_loss"] < s["adding_T10_baseline"] / 10
    assert s["adding_rnn_T10_test_loss"] < s["adding_T10_baseline"]


def test_adding_baseline_is_one_sixth():
    _, y = common.adding_batch(jax.random.PRNGKey(0), 20, 200_000)
    assert float(jnp.mean((y - 1.0) ** 2)) == pytest.approx(1 / 6, abs=2e-3)


def test_copy_baseline_is_the_memoryless_loss(x64):
    T = 7
    xs, targets = common.copy_batch(jax.random.PRNGKey(0), T, 5)
    assert xs.shape == targets.shape == (T + 20, 5)
    np.testing.assert_array_equal(xs[:10], targets[-10:])
    V = common.COPY_SYMBOLS + 1
    blank = jnp.where(jnp.arange(V) == common.COPY_BLANK, 0.0, -jnp.inf)   # certain of the blank
    uniform = jnp.where(jnp.arange(V) < common.COPY_SYMBOLS, 0.0, -jnp.inf)  # uniform over the symbols
    ys = jnp.concatenate([jnp.broadcast_to(blank, (T + 10, 5, V)), jnp.broadcast_to(uniform, (10, 5, V))])
    loss = jaxrnn.softmax_cross_entropy(ys, targets, reduction="mean")
    assert float(loss) == pytest.approx(common.copy_baseline(T), rel=1e-12)
    assert common.copy_baseline(T) == pytest.approx(10 * math.log(8) / (T + 20))


def test_command_line_rejects_a_bad_preset_and_a_bad_folder(tmp_path, capsys):
    assert common.cli("x", {"tiny": None}, lambda c: {}, lambda r: None, ["--preset", "huge"]) == 2
    assert "unknown preset 'huge'" in capsys.readouterr().err
    not_a_folder = tmp_path / "file"
    not_a_folder.write_text("keep me")
    assert common.cli("x", {"tiny": None}, lambda c: {}, lambda r: None, ["--preset", "tiny", "--out",
                                                                         str(not_a_folder)]) == 2
    assert not_a_folder.read_text() == "keep me"


def test_save_writes_json_atomically(tmp_path):
    paths = common.save(str(tmp_path), "demo", {"a": np.float32(1.5), "b": float("nan"), "c": jnp.arange(3)})
    assert open(paths["json"]).read().split() == ['{', '"a":', '1.5,', '"b":', '"nan",', '"c":', '[', '0,', '1,',
                                                  '2', ']', '}']
    assert sorted(p.name for p in tmp_path.iterdir()) == ["demo.json"]


def test_bracket_sets_are_what_they_claim():
    from experiments import brackets

    rng = np.random.default_rng(0)
    assert brackets.is_balanced(brackets.balanced(rng, 500, 12)).all()
    xs, labels = brackets.make_set(rng, 400, 12)
    xs, labels = np.asarray(xs).T, np.asarray(labels)
    np.testing.assert_array_equal(brackets.is_balanced(xs), labels == 1)
    assert labels.mean() == 0.5
    assert (xs == brackets.OPEN).sum(axis=1).tolist() == [6] * 400  # counting alone cannot tell them apart
    assert brackets.is_balanced(np.array([0, 0, 1, 0, 1, 1])) and not brackets.is_balanced(np.array([0, 1, 1, 0]))


@pytest.mark.slow
def test_brackets_tiny_preset_beats_chance():
    from experiments import brackets

    s = brackets.main(brackets.PRESETS["tiny"])["summary"]
    assert s["lstm_L6_test_accuracy"] > 0.8 and s["rnn_L6_test_accuracy"] > 0.8


def test_hello_tiny_writes_hello_to_its_json(tmp_path, capsys):
    import json

    from experiments import hello

    assert hello.cli(["--preset", "tiny", "--out", str(tmp_path)]) == 0
    result = json.loads((tmp_path / "hello.json").read_text())
    assert result["text"] == "hello" and "feeding 'h' gives 'hello'" in capsys.readouterr().out
    assert result["losses"][0] == pytest.approx(4 * math.log(4), rel=0.5)  # 4 characters, about uniform at init
    assert result["losses"][-1] < 0.1
    probs = np.array(result["probabilities"])  # rows: after h, e, l, l; columns: h, e, l, o
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=3e-3)
    assert probs[2, 2] > 0.8 and probs[3, 3] > 0.8  # first "l" -> "l", second "l" -> "o"


def test_min_char_rnn_tiny_falls_below_the_uniform_guess_and_writes_its_curve(tmp_path, capsys):
    import json

    from experiments import min_char_rnn

    assert min_char_rnn.cli(["--preset", "tiny", "--out", str(tmp_path)]) == 0
    assert "iter 200, loss" in capsys.readouterr().out
    result = json.loads((tmp_path / "min_char_rnn.json").read_text())
    s, T = result["summary"], result["config"]["seq_length"]
    assert s["uniform_loss_per_char"] == pytest.approx(math.log(result["vocab_size"]), rel=1e-12)
    assert result["smooth_loss"][0][1] == pytest.approx(T * s["uniform_loss_per_char"], rel=1e-3)  # iteration 0
    assert s["loss_per_char_last_100"] < 0.75 * s["uniform_loss_per_char"]  # after 300 of 25 characters each
    assert s["final_smooth_loss_per_char"] < s["uniform_loss_per_char"]
    assert np.all(np.diff(result["smooth_loss_curve"]["loss"][10:]) < 0.05)  # smoothed: no jumps
    assert (tmp_path / "min_char_rnn.png").stat().st_size > 10_000


def test_min_char_rnn_chaos_tiny_difference_grows_and_a_larger_epsilon_damps_it(tmp_path):
    import json

    from experiments import min_char_rnn_chaos

    assert min_char_rnn_chaos.cli(["--preset", "tiny", "--out", str(tmp_path)]) == 0
    result = json.loads((tmp_path / "min_char_rnn_chaos.json").read_text())
    small, large = np.array(result["gap"]["eps=1e-08"]), np.array(result["gap"]["eps=0.0001"])
    assert len(small) == len(large) == result["config"]["iterations"]
    assert small[1] < 1e-12 and small[50] > 1e3 * small[10] > 0  # 1e-14 becomes a visible loss difference
    assert small.max() > 100 * large.max()
    assert result["summary"]["eps=1e-08"]["largest"] == small.max()
    assert (tmp_path / "min_char_rnn_chaos.png").stat().st_size > 10_000
