"""The experiments' tiny presets: theory asserted exactly where it gives a number, better-than-baseline elsewhere."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jaxrnn
from experiments import common, gradient_clipping, long_range, stats, tasks, vanishing_gradients
from experiments.vanishing_gradients import figure as vanishing_figure


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


def test_vanishing_gradients_log_limits_show_every_curve():
    lo, hi = vanishing_figure.log_limits([1e-3, 34.7, 0.0], np.array([2e-29, np.nan]))
    assert (lo, hi) == (1e-30, 1e3)  # a decade beyond 2e-29 and 34.7; zero and NaN have no place on a log axis


@pytest.mark.slow
def test_gradient_clipping_tiny_preset_bounds_the_norm_and_keeps_the_direction():
    cfg = gradient_clipping.PRESETS["tiny"]
    s = gradient_clipping.main(cfg)["summary"]
    assert s["clipped_steps_total"] > 0  # the bound below is checked on steps where clipping acted
    assert s["spiky_none_max_raw_grad_norm"] > s["spiky_threshold"]
    assert s["clipped_max_norm_over_threshold"] <= 1 + 1e-6
    assert s["clipped_max_direction_error"] < 1e-6
    assert s["spiky_global_norm_runs_with_non_finite_loss"] == 0
    assert s["spiky_global_norm_final_loss"]["n"] == len(cfg.seeds)  # one final loss per seed


def test_running_mean_and_steps_to_a_level():
    losses = np.array([4.0, 2.0, 0.0, 2.0, np.nan, 1.0])
    np.testing.assert_array_equal(gradient_clipping.running_mean(losses, 2), [3.0, 1.0, 1.0, np.nan, np.nan])
    assert gradient_clipping.steps_to(gradient_clipping.running_mean(losses, 2), 2.0, 2) == 2  # steps 1-2: 1.0
    assert gradient_clipping.steps_to(np.array([3.0, np.nan]), 2.0, 2) is None


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
def test_long_range_tiny_preset_tunes_on_validation_and_beats_the_baseline():
    cfg = long_range.PRESETS["tiny"]
    results = long_range.main(cfg)
    s = results["summary"]
    assert {r["model"] for r in results["aggregate"]} == {"rnn", "lstm", "gru"}
    for r in results["aggregate"]:  # every seed ran and was aggregated
        assert r["test_loss"]["n"] == len(cfg.seeds) and sorted(r["seeds"]) == sorted(cfg.seeds)
    assert s["adding_lstm_T10_test_loss_mean"] < s["adding_T10_baseline"] / 10
    assert s["adding_gru_T10_test_loss_mean"] < s["adding_T10_baseline"] / 10
    assert s["adding_rnn_T10_test_loss_mean"] < s["adding_T10_baseline"]
    for kind in cfg.models:  # the grid's choice is the lowest validation loss, whatever the test losses say
        grid = [r for r in results["sweep"] if r["model"] == kind]
        assert len(grid) == len(cfg.learning_rates) * len(cfg.hidden_sizes)
        best = min(grid, key=lambda r: r["validation_loss"])
        assert (s[f"adding_{kind}_chosen_learning_rate"], s[f"adding_{kind}_chosen_hidden_size"]) == (
            best["learning_rate"],
            best["hidden_size"],
        )
    for r in results["runs"]:  # the reported test loss is read where the validation loss was lowest
        assert r["test_loss"] == r["test"][int(np.argmin(r["validation"]))]
        assert r["validation_loss"] == min(r["validation"])


def test_long_range_validation_and_test_sets_are_disjoint():
    assert long_range.VALIDATION_KEY != long_range.TEST_KEY
    for task, T in (("adding", 10), ("copy", 5)):
        (xv, yv), (xt, yt) = long_range.held_out(task, T, 64)
        assert xv.shape == xt.shape and not np.array_equal(np.asarray(xv), np.asarray(xt))
        if task == "adding":  # no test sequence also sits in the validation set
            assert not (np.asarray(yt)[:, None] == np.asarray(yv)[None, :]).any()


def test_long_range_aggregate_marks_failure_above_a_tenth_of_the_baseline():
    cfg = long_range.PRESETS["tiny"]
    run = lambda kind, seed, loss: {
        "task": "adding",
        "model": kind,
        "T": 10,
        "hidden_size": 16,
        "learning_rate": 1e-2,
        "seed": seed,
        "baseline": 1 / 6,
        "test_loss": loss,
        "steps_run": 100,
    }
    rows = {
        r["model"]: r
        for r in long_range.scoring.aggregate(
            [run("lstm", 0, 0.001), run("lstm", 1, 0.003), run("rnn", 0, 0.02), run("rnn", 1, 0.1)], cfg
        )
    }
    assert rows["lstm"]["test_loss"]["mean"] == pytest.approx(0.002) and rows["lstm"]["fails"] is False
    assert rows["rnn"]["test_loss"]["mean"] == pytest.approx(0.06) and rows["rnn"]["fails"] is True
    c = stats.compare(rows["lstm"]["test_loss"]["values"], rows["rnn"]["test_loss"]["values"], ("lstm", "rnn"))
    assert c["better"] == "lstm" and c["p"] == pytest.approx(1 / 3)  # 2 against 2: apart, yet p = 2/6


def test_adding_baseline_is_one_sixth():
    _, y = tasks.adding_batch(jax.random.PRNGKey(0), 20, 200_000)
    assert float(jnp.mean((y - 1.0) ** 2)) == pytest.approx(1 / 6, abs=2e-3)


def test_copy_baseline_is_the_memoryless_loss(x64):
    T = 7
    xs, targets = tasks.copy_batch(jax.random.PRNGKey(0), T, 5)
    assert xs.shape == targets.shape == (T + 20, 5)
    np.testing.assert_array_equal(xs[:10], targets[-10:])
    V = tasks.COPY_SYMBOLS + 1
    blank = jnp.where(jnp.arange(V) == tasks.COPY_BLANK, 0.0, -jnp.inf)  # certain of the blank
    uniform = jnp.where(jnp.arange(V) < tasks.COPY_SYMBOLS, 0.0, -jnp.inf)  # uniform over the symbols
    ys = jnp.concatenate([jnp.broadcast_to(blank, (T + 10, 5, V)), jnp.broadcast_to(uniform, (10, 5, V))])
    loss = jaxrnn.softmax_cross_entropy(ys, targets, reduction="mean")
    assert float(loss) == pytest.approx(tasks.copy_baseline(T), rel=1e-12)
    assert tasks.copy_baseline(T) == pytest.approx(10 * math.log(8) / (T + 20))


def test_command_line_rejects_a_bad_preset_and_a_bad_folder(tmp_path, capsys):
    assert common.cli("x", {"tiny": None}, lambda c: {}, lambda r: None, ["--preset", "huge"]) == 2
    assert "unknown preset 'huge'" in capsys.readouterr().err
    not_a_folder = tmp_path / "file"
    not_a_folder.write_text("keep me")
    assert (
        common.cli("x", {"tiny": None}, lambda c: {}, lambda r: None, ["--preset", "tiny", "--out", str(not_a_folder)])
        == 2
    )
    assert not_a_folder.read_text() == "keep me"


def test_save_writes_json_atomically(tmp_path):
    paths = common.save(str(tmp_path), "demo", {"a": np.float32(1.5), "b": float("nan"), "c": jnp.arange(3)})
    assert open(paths["json"]).read().split() == [
        "{",
        '"a":',
        "1.5,",
        '"b":',
        '"nan",',
        '"c":',
        "[",
        "0,",
        "1,",
        "2",
        "]",
        "}",
    ]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["demo.json"]


def test_spread_over_seeds():
    s = common.spread([1.0, 2.0, 3.0])
    assert (s["mean"], s["std"], s["min"], s["max"], s["n"]) == (2.0, 1.0, 1.0, 3.0, 3)
    assert common.pm(s, 2) == "2.00 ± 1.00" and common.spread([5.0])["std"] == 0.0
    assert np.isnan(common.spread([1.0, np.nan])["mean"])  # a diverged seed is not averaged away
    np.testing.assert_array_equal(common.pad([[1, 2], [3]]), [[1, 2], [3, np.nan]])


def test_command_line_sets_the_seeds_and_refuses_bad_ones(tmp_path, capsys):
    import dataclasses

    @dataclasses.dataclass(frozen=True)
    class Seeds:
        seeds: tuple = (0,)

    @dataclasses.dataclass(frozen=True)
    class OneSeed:
        seed: int = 0

    assert common.with_seeds(Seeds(), "3,4") == Seeds(seeds=(3, 4))
    assert common.with_seeds(OneSeed(), "7") == OneSeed(seed=7)
    seen = []
    run = lambda c: seen.append(c) or {"summary": {"n": len(c.seeds)}}
    assert (
        common.cli("x", {"tiny": Seeds()}, run, None, ["--preset", "tiny", "--seeds", "1,2", "--out", str(tmp_path)])
        == 0
    )
    assert seen == [Seeds(seeds=(1, 2))] and (tmp_path / "x.json").exists()
    for bad, message in (("1,a", "expected integers"), ("1,2", "takes one seed")):
        presets = {"tiny": Seeds() if bad == "1,a" else OneSeed()}
        assert common.cli("x", presets, run, None, ["--preset", "tiny", "--seeds", bad, "--out", str(tmp_path)]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and message in err


@pytest.mark.slow
def test_arjovsky2016_tiny_preset_runs_the_papers_setup_and_resumes(tmp_path, monkeypatch):
    from experiments import arjovsky2016

    cfg = arjovsky2016.PRESETS["tiny"]
    runs = common.Runs(str(tmp_path / "a.runs.jsonl"), cfg)
    seen = []
    results = arjovsky2016.main(cfg, progress=seen.append, runs=runs)
    assert len(results["runs"]) == len(seen) == 2 * len(cfg.models) * len(cfg.seeds)
    for r in results["runs"]:
        assert r["eval_step"][-1] == cfg.iterations and r["baseline"] == arjovsky2016.baseline(r["task"], r["T"])
    s = results["summary"]
    assert s["adding_T20_lstm_final_held_out_loss"]["n"] == 2
    assert s["copy_T10_baseline"] == pytest.approx(10 * np.log(8) / 30)
    assert set(s["comparisons"]) == {"adding T20: lstm vs rnn", "copy T10: lstm vs rnn"}
    # a second sweep finds every run kept: nothing trains again
    monkeypatch.setattr(arjovsky2016, "run_one", lambda *args: pytest.fail("a kept run was trained again"))
    again = arjovsky2016.main(cfg, runs=common.Runs(str(tmp_path / "a.runs.jsonl"), cfg))
    assert again["runs"] == results["runs"]
    assert arjovsky2016.PAPER_HIDDEN[("copy", "lstm")] == 40 and arjovsky2016.PAPER_HIDDEN[("adding", "rnn")] == 128


def test_the_rate_search_goes_past_an_edge_until_the_best_rate_is_inside():
    assert [common.neighbour_rate(r, up=True) for r in (1e-3, 2e-3, 5e-3)] == [2e-3, 5e-3, 1e-2]
    assert [common.neighbour_rate(r, up=False) for r in (1e-3, 2e-3, 5e-3)] == [5e-4, 1e-3, 2e-3]
    with pytest.raises(ValueError, match="1, 2 and 5 times a power of ten, got 0.003"):
        common.neighbour_rate(3e-3, up=True)
    tried = []

    def score(rate):  # validation loss lowest at 2e-2, above the grid
        tried.append(rate)
        return {"learning_rate": rate, "validation_loss": (math.log10(rate) - math.log10(2e-2)) ** 2}

    runs, best = common.search_rates((1e-3, 2e-3, 5e-3), score)
    assert best == 2e-2 and tried == [1e-3, 2e-3, 5e-3, 1e-2, 2e-2, 5e-2] and len(runs) == 6
    tried.clear()
    assert common.search_rates((1e-2, 2e-2, 5e-2), score)[1] == 2e-2 and tried == [1e-2, 2e-2, 5e-2]  # inside
    tried.clear()
    assert common.search_rates((1e-3, 2e-3), score, extend=1)[1] == 5e-3 and tried == [1e-3, 2e-3, 5e-3]  # capped
