"""The lecture's character-level experiments: min-char-rnn, hello, two runs that part, truncated BPTT, gradient flow
during training, interpretable cells."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxrnn


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
    (l1, c1), g1 = grad(params, carry, xs[:4], ys[:4])  # by hand: three chunks of 4, state carried
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
    results = truncated_bptt.main(cfg)
    s, spreads = results["summary"], results["spreads"]
    for k in cfg.truncations:
        for budget in ("equal_characters", "equal_updates"):
            assert spreads[f"{budget} k{k}"]["n"] == len(cfg.seeds)
            assert spreads[f"{budget} k{k}"]["max"] < 0.8 * s["uniform_loss"]
    k_long = cfg.truncations[-1]
    run = next(r for r in results["sweep"] if r["k"] == k_long)  # at equal updates, the most characters
    assert run["equal_updates"]["characters"] == cfg.updates * cfg.batch * k_long
    assert run["equal_characters"]["characters"] <= cfg.characters
    first = spreads[f"adding first k{cfg.adding_T // 4}"]  # the first marker never in the window
    assert abs(first["mean"] - truncated_bptt.FIRST_BASELINE_MSE) < 0.02
    assert spreads[f"adding first k{cfg.adding_T}"]["max"] < 0.5 * first["min"]  # full BPTT learns it
    T0, T1 = cfg.memory_lengths[0], cfg.memory_lengths[-1]
    growth = T1 / T0
    assert s[f"full_growth_T{T0}_to_T{T1}"] > 0.6 * growth  # O(T)
    assert s[f"remat_growth_T{T0}_to_T{T1}"] > 0.6 * growth
    assert s[f"truncated_growth_T{T0}_to_T{T1}"] < 1.1  # O(k): only the ids grow
    assert s[f"remat_MiB_T{T1}"] < s[f"full_MiB_T{T1}"]


def test_truncated_adding_loss_equals_full_bptt_at_k_T_and_drops_the_gradient_beyond_k(x64):
    from experiments import tasks, truncated_bptt

    T, k = 12, 4
    params = tasks.init_model("lstm", jax.random.PRNGKey(0), 2, 6, 1)
    params = jax.tree.map(lambda a: a.astype(jnp.float64), params)
    xs, ys = tasks.adding_batch(jax.random.PRNGKey(1), T, 5)
    xs, ys = xs.astype(jnp.float64), ys.astype(jnp.float64)
    full = lambda p: jnp.mean((tasks.final_readout(p, xs)[:, 0] - ys) ** 2)
    assert float(truncated_bptt.truncated_adding_loss(params, (xs, ys), T, "sum")) == pytest.approx(
        float(full(params)), rel=1e-14
    )
    assert float(truncated_bptt.truncated_adding_loss(params, (xs, ys), k, "sum")) == pytest.approx(
        float(full(params)), rel=1e-14
    )  # the forward pass is whole
    dx = jax.grad(lambda x: truncated_bptt.truncated_adding_loss(params, (x, ys), k, "sum"))(xs)
    assert float(jnp.abs(dx[: T - k]).max()) == 0.0 and float(jnp.abs(dx[T - k :]).max()) > 1e-6
    first = truncated_bptt.adding_target(xs, ys, "first")  # one marker in each half
    np.testing.assert_allclose(first + jnp.sum(xs[T // 2 :, :, 0] * xs[T // 2 :, :, 1], axis=0), ys, rtol=1e-14)


@pytest.mark.slow
def test_truncated_adding_cannot_learn_a_marker_beyond_k_but_full_bptt_can():
    from experiments import truncated_bptt

    cfg = truncated_bptt.PRESETS["tiny"]
    short = truncated_bptt.run_adding(cfg, "first", cfg.adding_T // 4, seed=0)["test_mse"]
    full = truncated_bptt.run_adding(cfg, "first", cfg.adding_T, seed=0)["test_mse"]
    assert abs(short - truncated_bptt.FIRST_BASELINE_MSE) < 0.015  # guessing the mean: 1/12
    assert full < 0.3 * truncated_bptt.FIRST_BASELINE_MSE


# ---------------------------------------------------------------------------------------- gradient flow


def test_gradient_flow_heatmap_shape_and_the_rnn_loses_the_long_lag_that_the_lstm_keeps():
    from experiments import gradient_flow

    cfg = gradient_flow.PRESETS["tiny"]
    runs = {kind: gradient_flow.run_one(cfg, "adding", kind, seed=0) for kind in ("rnn", "lstm")}
    for r in runs.values():
        heat = np.asarray(r["median_norm_by_lag"])
        assert heat.shape == (cfg.steps // cfg.record_every + 1, cfg.T)  # (records, lags 1..T)
        assert r["updates"] == list(range(0, cfg.steps + 1, cfg.record_every))
        assert np.all(np.isfinite(heat)) and np.all(heat > 0)
        assert r["probe_loss"][-1] < r["probe_loss"][0]
    long_lag = lambda kind: runs[kind]["median_norm_by_lag"][-1][cfg.lag - 1]
    assert long_lag("rnn") < 0.2 * long_lag("lstm")
    rnn = np.asarray(runs["rnn"]["median_norm_by_lag"][-1])
    assert rnn[cfg.lag - 1] < 0.1 * rnn[0]  # vanishing with the lag


@pytest.mark.slow
def test_gradient_flow_tiny_preset_writes_a_heatmap_per_model_and_task(tmp_path):
    import json

    from experiments import gradient_flow

    assert (
        gradient_flow.common.cli(
            "gradient_flow",
            gradient_flow.PRESETS,
            gradient_flow.main,
            gradient_flow.make_figure,
            ["--preset", "tiny", "--out", str(tmp_path)],
        )
        == 0
    )
    result = json.loads((tmp_path / "gradient_flow.json").read_text())
    cfg = gradient_flow.PRESETS["tiny"]
    assert len(result["runs"]) == len(gradient_flow.TASKS) * len(gradient_flow.MODELS) * len(cfg.seeds)
    at_end = result["spreads"][f"adding rnn: median norm at lag {cfg.lag}, end"]
    assert at_end["n"] == len(cfg.seeds)
    assert at_end["max"] < result["spreads"][f"adding lstm: median norm at lag {cfg.lag}, end"]["min"]
    c = result["comparisons"][f"adding, end: norm at lag {cfg.lag}"]
    assert c["better"] == "lstm" and c["p"] == pytest.approx(1 / 3)  # apart, and 2 seeds a side: p = 2/6 at best
    for task in gradient_flow.TASKS:  # learning: the probe loss fell for every model and seed
        for kind in gradient_flow.MODELS:
            s = result["spreads"]
            assert s[f"{task} {kind}: probe loss, end"]["max"] < s[f"{task} {kind}: probe loss, init"]["min"]
    assert (tmp_path / "gradient_flow.png").stat().st_size > 30_000


# ------------------------------------------------------------------------------------ interpretable cells


def test_text_features_on_handmade_python():
    from experiments.interpretable_cells import text_features

    f = text_features("f(a[1])")
    assert f["bracket_depth"].tolist() == [0, 1, 1, 2, 2, 1, 0]
    assert f["line_position"].tolist() == [1, 2, 3, 4, 5, 6, 7]
    text = "x = \"a(b\" # c(\n  if y:\n    s = '''q\n)''' + z\\\n"
    f = text_features(text)
    at = lambda name, i: float(f[name][i])
    q = text.index('"')
    assert [at("in_string", i) for i in range(q, q + 5)] == [1, 1, 1, 1, 0]  # opening quote in, closing out
    assert at("bracket_depth", text.index("(")) == 0  # a bracket inside a string does not count
    hash_ = text.index("#")
    assert at("in_comment", hash_ - 1) == 0 and at("in_comment", hash_) == 1 and at("in_comment", hash_ + 3) == 1
    assert at("bracket_depth", hash_ + 3) == 0 and at("in_comment", text.index("\n")) == 0
    assert at("indentation", text.index("if")) == 2 and at("indentation", text.index("s =")) == 4
    assert at("indentation", text.index("s =") - 3) == 2  # the second of the leading spaces
    triple = text.index("'''")
    assert at("in_string", triple) == 1 and at("in_string", triple + 3) == 1  # q
    close = text.index(")")
    assert at("in_string", close) == 1 and at("bracket_depth", close) == 0  # ) inside the triple-quoted string
    assert at("in_string", close + 1) == 0 and at("in_string", close + 3) == 0  # the closing triple is out
    assert at("line_position", text.index("if")) == 3 and at("line_position", text.index("\n")) == 0


def test_best_unit_finds_the_unit_that_tracks_the_feature():
    from experiments.interpretable_cells import best_units

    rng = np.random.default_rng(0)
    feature = (rng.random(2000) > 0.5).astype(float)
    units = rng.normal(size=(2000, 6))
    units[:, 4] = -3.0 * feature + 0.1 * rng.normal(size=2000)
    units[:, 2] = 5.0  # constant: r = 0, not NaN
    best = best_units(units, feature)
    assert best["unit"] == 4 and best["r"] < -0.99 and best["abs_r"] == -best["r"]
    np.testing.assert_allclose(best["r"], np.corrcoef(units[:, 4], feature)[0, 1], rtol=1e-12)


@pytest.mark.slow
def test_interpretable_cells_tiny_trained_units_track_the_text_better_than_untrained(tmp_path):
    import json

    from experiments import interpretable_cells

    assert interpretable_cells.cli(["--preset", "tiny", "--out", str(tmp_path)]) == 0
    result = json.loads((tmp_path / "interpretable_cells.json").read_text())
    table = result["table"]
    trained = np.mean([table[f]["abs_r"]["trained"]["mean"] for f in interpretable_cells.FEATURES])
    untrained = np.mean([table[f]["abs_r"]["untrained"]["mean"] for f in interpretable_cells.FEATURES])
    assert trained > untrained + 0.03
    assert table["indentation"]["abs_r"]["trained"]["min"] > table["indentation"]["abs_r"]["untrained"]["max"]
    shifted = np.mean([table[f]["abs_r"]["trained, shifted feature"]["mean"] for f in interpretable_cells.FEATURES])
    assert trained > shifted + 0.1
    page = (tmp_path / "interpretable_cells.html").read_text()
    assert page.count("<span style='background:#") == len(interpretable_cells.FEATURES) * len(result["render_text"])
    assert "http" not in page and "<script" not in page and "<link" not in page  # self-contained
    assert (tmp_path / "interpretable_cells.png").stat().st_size > 30_000
