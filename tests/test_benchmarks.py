"""The benchmark suite: each script's core function at tiny sizes, in process (agreement of the implementations,
ratios computed from the right timings); the scripts themselves, end to end in subprocesses, are marked slow."""

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import optax
import pytest

from benchmarks import common, lstm_peers

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "benchmarks"
INVESTIGATIONS = BENCH / "investigations"


def _run_all(tmp_path, *only):
    cmd = [sys.executable, "-m", "benchmarks.run_all", "--quick", "--device", "cpu", "--out", str(tmp_path)]
    proc = subprocess.run(
        cmd + (["--only", *only] if only else []), capture_output=True, text=True, timeout=900, cwd=ROOT
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc


def _run_investigation(tmp_path, name, *flags):
    """``python -m benchmarks.investigations.NAME --quick``, as from the repository root."""
    cmd = [
        sys.executable,
        "-m",
        f"benchmarks.investigations.{name}",
        "--quick",
        "--device",
        "cpu",
        "--out",
        str(tmp_path),
    ]
    proc = subprocess.run(cmd + list(flags), capture_output=True, text=True, timeout=900, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc


def _environment_of_this_run(result):
    assert result["environment"]["backend"] == "cpu"
    assert result["environment"]["jax"] == jax.__version__


@pytest.mark.slow
def test_minchar_quick_agrees_with_numpy_and_its_ratios_are_its_own_timings():
    from benchmarks import minchar

    config = minchar.PRESETS["quick"]
    rows = {row["impl"]: row for row in minchar.main(config)["rows"]}  # raises if jaxrnn and NumPy disagree
    k = config.updates_per_call[0]
    assert list(rows) == [
        "numpy reference",
        "jaxrnn scan, 1 update/call",
        "jaxrnn fused, 1 update/call",
        f"jaxrnn scan, {k} updates/call",
        f"jaxrnn fused, {k} updates/call",
    ]
    numpy_its = rows["numpy reference"]["iterations_per_s"]
    for name, row in rows.items():
        updates = k if name.endswith(f"{k} updates/call") else config.numpy_iterations
        assert row["iterations_per_s"] == pytest.approx(updates / row["median_s"])
        assert row["ratio_vs_numpy"] == pytest.approx(row["iterations_per_s"] / numpy_its)
        assert row["rel_diff_vs_numpy"] <= 5e-3


@pytest.mark.slow
def test_step_layout_quick_variants_agree_and_speedups_are_over_the_first():
    from benchmarks.investigations import step_layout

    config = dataclasses.replace(step_layout.PRESETS["quick"], single_row_hidden=(6,))  # compiles the fewest cases
    rows = step_layout.main(config)["rows"]  # raises if two variants of a case compute different numbers
    cases = list(dict.fromkeys(row["case"] for row in rows))
    assert len(cases) == 4 + 2 * len(config.single_row_hidden)
    for case in cases:
        variants = [row for row in rows if row["case"] == case]
        assert len(variants) == 2 and sum("(jaxrnn)" in row["variant"] for row in variants) == 1, case
        assert variants[0]["speedup_vs_first"] == 1.0
        for row in variants:
            assert row["speedup_vs_first"] == pytest.approx(variants[0]["median_s"] / row["median_s"])
            assert row["us_per_step"] == pytest.approx(row["median_s"] / config.steps * 1e6)


def test_step_layout_marks_the_single_row_variant_the_library_takes_at_each_hidden_size():
    """Batch 1: a copy of Whh^T where H is off XLA:CPU's 8 float32 lanes (H 6), the plain products where on (H 8)."""
    from benchmarks.investigations import step_layout

    variants = {case: list(v) for case, v in step_layout.cases(2, 8, 4, 11, (6, 8)).items()}
    marked = {
        case.split(":")[0]: next(n for n in v if n.endswith("(jaxrnn)"))
        for case, v in variants.items()
        if "two products" in case
    }
    assert marked == {
        "batch 1, LSTM H 6": "copy of Whh^T: h @ Whh^T, Whh^T @ dz^T (jaxrnn)",
        "batch 1, LSTM H 8": "Whh @ h^T, dz @ Whh (as batched) (jaxrnn)",
    }


@pytest.mark.slow
def test_smoke_quick_suite_sampling_minchar_and_step_layout(tmp_path):
    _run_all(tmp_path, "sampling", "minchar")
    _run_investigation(tmp_path, "step_layout")
    for name in ("sampling", "minchar", "step_layout"):
        result = json.loads((tmp_path / f"{name}.json").read_text())
        _environment_of_this_run(result)
        assert all(row["median_s"] > 0 for row in result["rows"][1:])
    assert json.loads((tmp_path / "sampling.json").read_text())["greedy_agreement"] >= 0.99


@pytest.mark.slow
def test_smoke_quick_suite_all(tmp_path):
    _run_all(tmp_path)
    written = {p.name for p in tmp_path.iterdir()}
    assert written >= {
        "scan_vs_loop.json",
        "scan_vs_loop.png",
        "minchar.json",
        "lstm_peers.json",
        "memory.json",
        "memory.png",
        "sampling.json",
        "data_parallel.json",
        "parallel_in_time.json",
        "parallel_in_time.png",
        "startup.json",
    }
    assert not written & {f"{p.stem}.json" for p in INVESTIGATIONS.glob("*.py")}  # investigations run on their own


@pytest.mark.slow
def test_step_parts_times_each_part_of_both_implementations_at_two_lengths(tmp_path):
    _run_investigation(tmp_path, "step_parts")
    result = json.loads((tmp_path / "step_parts.json").read_text())
    assert {(r["impl"], r["T"], r["part"]) for r in result["rows"]} == {
        (impl, T, part)
        for impl in ("jaxrnn fused", "flax linen nn.RNN(OptimizedLSTMCell)")
        for T in (5, 10)
        for part in (
            "forward (loss)",
            "loss and gradient",
            "optimizer update",
            "training step",
            "training step, donated",
            "training step, in a loop (per step)",
        )
    }
    for T, (jaxrnn_loss, flax_loss) in result["first_loss"].items():  # same weights, same data: same loss
        assert abs(jaxrnn_loss - flax_loss) < 1e-4 and jaxrnn_loss > 0, T
    ms = {(r["impl"], r["T"], r["part"]): r["median_ms"] for r in result["rows"]}
    for impl, s in result["summary"].items():  # the summary is read from the right rows
        assert s["step_ms"] == ms[impl, 5, "training step"]
        assert s["per_time_step_us"] == pytest.approx((ms[impl, 10, "training step"] - s["step_ms"]) / 5 * 1e3)
        assert s["optimizer_update_ms"] == ms[impl, 5, "optimizer update"] > 0
        assert s["donated_step_ms"] == ms[impl, 5, "training step, donated"] > 0
        assert s["per_call_ms"] == pytest.approx(s["step_ms"] - ms[impl, 5, "training step, in a loop (per step)"])


@pytest.mark.slow
def test_memory_covers_the_fused_path_and_it_keeps_less_than_scan_full_bptt():
    from benchmarks import memory

    config = memory.PRESETS["quick"]  # compiles only: XLA's accounting, nothing timed
    peak = {method: memory.peak_bytes(config, method, 16) for method in memory.METHODS}
    assert 0 < peak["fused"]["peak_bytes"] < peak["full"]["peak_bytes"]
    assert peak["remat"]["peak_bytes"] < peak["full"]["peak_bytes"]
    assert peak["segmented"]["peak_bytes"] < peak["full"]["peak_bytes"]


def test_memory_finds_the_longest_length_within_the_budget(monkeypatch):
    """The search (doubling, then bisection to within 1/64) on a made-up peak of 1000 bytes per time step."""
    import dataclasses

    from benchmarks import memory

    monkeypatch.setattr(memory, "peak_bytes", lambda config, method, T: {"peak_bytes": 1000 * T})
    config = dataclasses.replace(memory.PRESETS["quick"], budget_bytes=1000 * 3000, search_max_T=2**20)
    longest = memory.longest_fitting(config, "full")
    assert 3000 * (1 - 1 / 64) <= longest <= 3000  # T fits, within the bisection's tolerance of the true limit
    assert memory.longest_fitting(config, "segmented") == 54**2  # the largest square of a T that fits
    assert memory.longest_fitting(dataclasses.replace(config, search_max_T=1000), "full") == -1  # fits throughout


def test_paired_speedups_cancel_a_load_change_between_rounds():
    # B takes twice A's time in every round while the machine slows down 4x during the run: each round's ratio
    # is exactly 2; one round where the load changed between A and B is an outlier the quartiles leave out.
    timings = {"A": {"round_s": [1.0, 1.0, 4.0, 4.0, 4.0, 1.0]}, "B": {"round_s": [2.0, 2.0, 8.0, 8.0, 8.0, 2.0]}}
    assert common.paired_speedups(timings, "A") == {"B": {"median": 2.0, "q25": 2.0, "q75": 2.0}}
    assert common.paired_speedups(timings, "B") == {"A": {"median": 0.5, "q25": 0.5, "q75": 0.5}}
    timings["B"]["round_s"][5] = 8.0
    assert common.paired_speedups(timings, "A")["B"] == {"median": 2.0, "q25": 2.0, "q75": 2.0}
    timings["B"]["round_s"][4] = 32.0
    assert common.paired_speedups(timings, "A")["B"] == {"median": 2.0, "q25": 2.0, "q75": 6.5}


def test_interleaved_times_records_each_round():
    calls = {"a": lambda: np.zeros(3), "b": lambda: np.ones(3)}
    timings = common.interleaved_times(calls, min_rounds=3, min_seconds=0.0, timed_per_round=2)
    for t in timings.values():
        assert len(t["round_s"]) == 3 and t["repeats"] == 6 and min(t["round_s"]) >= t["min_s"] > 0
    assert set(common.paired_speedups(timings, "a")) == {"b"}


def test_interleaved_times_shuffles_the_order_of_each_round():
    """No implementation always runs right after the same one (a heavy neighbour slowed whichever came next), each
    runs the same number of times in every round, and the results keep the order the calls were given in."""
    log = []
    calls = {name: (lambda name=name: log.append(name) or np.zeros(1)) for name in "abcd"}
    timings = common.interleaved_times(calls, min_rounds=40, min_seconds=0.0, warmup=0, timed_per_round=2)
    assert list(timings) == list("abcd")
    rounds = [log[i : i + 12] for i in range(0, len(log), 12)]  # 4 implementations x (1 untimed + 2 timed)
    assert len(rounds) == 40 and all(sorted(r) == sorted("abcd" * 3) for r in rounds)
    orders = [tuple(r[::3]) for r in rounds]
    assert all(r == [o for o in order for _ in range(3)] for r, order in zip(rounds, orders))  # a name's 3 in a row
    assert len(set(orders)) > 10
    after_d = {order[order.index("d") + 1] for order in orders if order[-1] != "d"}
    assert after_d == {"a", "b", "c"}


def test_results_of_an_accelerator_go_beside_the_cpu_results_not_over_them(monkeypatch, tmp_path):
    import argparse

    args = argparse.Namespace(quick=False, out=None)
    assert common.out_dir(args) == common.RESULTS  # this machine's backend is the CPU
    monkeypatch.setattr(jax, "default_backend", lambda: "gpu")
    assert common.out_dir(args) == common.RESULTS / "gpu"
    assert common.out_dir(argparse.Namespace(quick=True, out=None)) == common.RESULTS / "quick" / "gpu"
    assert common.out_dir(argparse.Namespace(quick=False, out=tmp_path)) == tmp_path


def test_bad_device_exits_2_with_one_line(tmp_path):
    cmd = [sys.executable, "-m", "benchmarks.run_all", "--quick", "--device", "gpu", "--out", str(tmp_path)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=ROOT)
    if proc.returncode == 0:
        pytest.skip("this machine has a GPU")
    assert proc.returncode == 2 and proc.stderr.strip().count("\n") == 0 and "--device gpu" in proc.stderr


@pytest.mark.slow
def test_smoke_profile_step_names_ops_of_the_compiled_step(tmp_path):
    _run_investigation(tmp_path, "profile_step")
    result = json.loads((tmp_path / "profile_step.json").read_text())
    rows = result["rows"]
    assert rows and any(row["calls_per_step"] == 5 for row in rows)  # T = 5: ops inside the time loop
    assert all(row["ms_per_step"] > 0 for row in rows)
    assert any(row["container"] for row in rows)  # the time loops are listed, as wholes
    # the totals count every op of the program except the loops (whose body ops they count), the listed ones among them
    ops = [row for row in rows if not row["container"]]
    assert result["op_calls_per_step"] >= sum(row["calls_per_step"] for row in ops)
    assert result["ops_ms"] >= sum(row["ms_per_step"] for row in ops) * (1 - 1e-9)


def test_unknown_preset_exits_2_with_one_line(tmp_path):
    cmd = [
        sys.executable,
        "-m",
        "benchmarks.scan_vs_loop",
        "--preset",
        "nope",
        "--device",
        "cpu",
        "--out",
        str(tmp_path),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert proc.returncode == 2 and proc.stderr.strip().count("\n") == 0
    assert "full, quick, scan" in proc.stderr and not list(tmp_path.iterdir())
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.run_all", "--preset", "scan", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )  # checked before anything runs
    assert proc.returncode == 2 and proc.stderr.strip().count("\n") == 0 and "minchar" in proc.stderr
    assert not list(tmp_path.iterdir())


def _tiny_problem(B=2, T=5, H=3, E=4, V=7):
    return (*lstm_peers.problem(B, T, H, E, V), (V, E, H))


@pytest.fixture(scope="module")
def tiny_peers():
    """``lstm_peers``' implementations on ``_tiny_problem``, built once: each test's calls reuse the compilations."""
    p, carry, xs, ys, (V, E, H) = _tiny_problem()
    optimizer = optax.adam(1e-3)
    return dict(
        problem=(p, carry, xs, ys, (V, E, H)),
        optimizer=optimizer,
        steps=lstm_peers.jaxrnn_impls(None, optimizer),
        flax=lstm_peers.flax_linen_impl(p, V, E, H, optimizer),
    )


@pytest.mark.slow
def test_peers_compute_the_same_loss_as_jaxrnn(tiny_peers):
    """The weight mapping into Flax (gates i, f, g, o in separate kernels) and PyTorch (i, f, g, o, two biases)
    reproduces jaxrnn's loss; this is what lets the benchmark compare their speed at all."""
    p, carry, xs, ys, (V, E, H) = tiny_peers["problem"]
    optimizer = tiny_peers["optimizer"]
    losses = {name: float(step(p, optimizer.init(p), carry, xs, ys)[3]) for name, step in tiny_peers["steps"].items()}
    assert list(losses) == [lstm_peers.SCAN, lstm_peers.FUSED, lstm_peers.FOLDED]
    variables, _, loss_fn = tiny_peers["flax"]
    losses["linen"] = float(loss_fn(variables, xs, ys))
    expected = losses["jaxrnn scan"]
    assert expected > 1.0  # cross-entropy near log(7) at random weights, not a degenerate zero
    try:
        import torch  # noqa: F401
    except ImportError:
        pass
    else:
        _, loss_of, to_ids = lstm_peers.torch_impl(p, V, E, H, 1e-3, "cpu")
        losses["torch"] = loss_of(to_ids(xs), to_ids(ys)).item()
    np.testing.assert_allclose(list(losses.values()), expected, rtol=1e-5)


@pytest.mark.slow
def test_update_loops_run_the_steps_of_each_library_and_refuse_a_loop_that_differs(tiny_peers):
    """``lstm_peers.update_loops``: K updates in one call per library, checked update by update against K calls
    of that library's step (jaxrnn carrying its state on, as the trainer does) before anything is timed."""
    import jax.numpy as jnp

    p, carry, xs, ys, (V, E, H) = tiny_peers["problem"]
    optimizer, k = tiny_peers["optimizer"], 3
    chunks = lstm_peers.update_chunks(xs, ys, k, V, seed=1)
    assert chunks[0].shape == (k, *xs.shape) and (chunks[0][0] == xs).all() and (chunks[1][0] == ys).all()
    assert not (chunks[0][1] == chunks[0][2]).all() and int(chunks[0].max()) < V
    steps = {name: tiny_peers["steps"][name] for name in lstm_peers.jaxrnn_fused_losses()}
    variables, flax_step, _ = tiny_peers["flax"]
    loops = lstm_peers.update_loops(k, p, carry, chunks, steps, flax_step, variables, optimizer)
    assert list(loops) == [
        f"jaxrnn fused, {k} updates/call",
        f"jaxrnn fused, folded, {k} updates/call",
        f"flax linen nn.RNN(OptimizedLSTMCell), {k} updates/call",
    ]
    first = float(steps["jaxrnn fused"](p, optimizer.init(p), carry, xs, ys)[3])
    for name, (call, _, loss) in loops.items():
        assert loss == pytest.approx(first, rel=1e-5), name
        losses = np.asarray(call()[-1])
        assert losses.shape == (k,) and losses[0] == pytest.approx(first, rel=1e-5), name

    step = steps["jaxrnn fused"]

    def reset_step(params, opt_state, carry, xs, ys):  # a step that drops the carry: not what the loop does
        params, opt_state, _, loss = step(params, opt_state, carry, xs, ys)
        return params, opt_state, jax.tree.map(jnp.zeros_like, carry), loss

    with pytest.raises(AssertionError, match="jaxrnn fused, 3 updates/call: its 3 losses against 3 calls"):
        lstm_peers.update_loops(
            k, p, carry, chunks, steps | {"jaxrnn fused": reset_step}, flax_step, variables, optimizer
        )


OLD_NAMES = {
    "jaxrnn scan": "jaxrnn make_train_step (plain)",
    "jaxrnn fused": "jaxrnn fast",
    "jaxrnn fused, 8 updates/call": "jaxrnn fast, 8 updates/call",
}  # labels before the 0.2 API


@pytest.mark.parametrize("labels", ["current", "before the 0.2 API"])
def test_per_update_times_and_the_report_compares_a_loop_with_a_loop(tmp_path, labels):
    from benchmarks import report

    timing = {"median_s": 8.0, "min_s": 4.0, "repeats": 6, "round_s": [8.0, 16.0]}
    assert lstm_peers.per_update(timing, 4) == {"median_s": 2.0, "min_s": 1.0, "repeats": 6, "round_s": [2.0, 4.0]}
    names = [
        "jaxrnn scan",
        "jaxrnn fused",
        "flax linen nn.RNN(OptimizedLSTMCell)",
        "pytorch nn.LSTM (2 threads)",
        "jaxrnn fused, 8 updates/call",
        "flax linen nn.RNN(OptimizedLSTMCell), 8 updates/call",
    ]
    seconds = dict(zip(names, (6.0, 4.0, 5.0, 4.4, 3.0, 4.5)))
    if labels != "current":
        seconds = {OLD_NAMES.get(n, n): s for n, s in seconds.items()}
    rows = [
        dict(
            B=1,
            T=2,
            H=3,
            impl=n,
            tokens_per_s=2 / s,
            gflops=1.0,
            fraction_of_matmul_peak=0.5,
            compile_s=1.0,
            matmul_peak_gflops=2.0,
            speedup_vs={o: t / s for o, t in seconds.items() if o != n},
            paired_speedup_vs={o: {"median": t / s, "q25": t / s, "q75": t / s} for o, t in seconds.items() if o != n},
        )
        for n, s in seconds.items()
    ]
    versions = dict.fromkeys(("jax", "flax", "optax", "numpy", "torch"), "0")
    environment = {"command": "c", "device": "cpu", "nproc": 2, "cpu_model": "m", "date": "d", "versions": versions}
    (tmp_path / "lstm_peers.json").write_text(json.dumps({"rows": rows, "environment": environment}))
    table = report.lstm_peers(report.load(tmp_path, "lstm_peers"))
    cells = {line.split(" | ")[1]: line.split(" | ")[5:10] for line in table.splitlines() if line.startswith("| 1, 2")}
    # columns: over jaxrnn scan, over Flax linen, over PyTorch, by round over Flax linen, by round over PyTorch
    assert list(cells) == names
    assert cells["jaxrnn fused"] == ["1.50", "1.25", "1.10", "1.25 [1.25-1.25]", "1.10 [1.10-1.10]"]
    assert cells["jaxrnn fused, 8 updates/call"] == ["2.00", "1.50", "1.47", "1.50 [1.50-1.50]", "1.47 [1.47-1.47]"]
    assert cells["flax linen nn.RNN(OptimizedLSTMCell)"][1] == "1.00"
    assert cells["flax linen nn.RNN(OptimizedLSTMCell), 8 updates/call"][:3] == ["1.33", "1.00", "0.98"]
    assert "K updates/call" in table


def test_report_reads_the_labels_of_results_from_before_the_0_2_api(tmp_path):
    from benchmarks import report

    assert (
        report.current_label("jaxrnn fast, folded embedding, 8 updates/call") == "jaxrnn fused, folded, 8 updates/call"
    )
    assert report.current_label("jaxrnn plain, 100 updates/call (scan)") == "jaxrnn scan, 100 updates/call"
    assert report.current_label("jaxrnn fast, 1 update/call") == "jaxrnn fused, 1 update/call"
    assert report.current_label("flax linen nn.RNN(OptimizedLSTMCell)") == "flax linen nn.RNN(OptimizedLSTMCell)"
    environment = {
        "command": "c",
        "device": "cpu",
        "nproc": 2,
        "cpu_model": "m",
        "date": "d",
        "versions": dict.fromkeys(("jax", "flax", "optax", "numpy", "torch"), "0"),
    }
    rows = [{"T": 4, "method": m, "peak_bytes": b * 2**20} for m, b in (("full", 2), ("fast", 1))]
    (tmp_path / "memory.json").write_text(
        json.dumps({"rows": rows, "environment": environment, "longest_T_within_budget": {"full": 8, "fast": 16}})
    )
    table = report.memory(report.load(tmp_path, "memory"))
    assert "| T | full BPTT, scan MiB | full BPTT, fused MiB |" in table and "| 4 | 2.0 | 1.0 |" in table
    assert table.endswith("full 8, fused 16")


def test_written_results_carry_the_library_environment_and_the_report_tables_parallel_in_time(tmp_path):
    """``common.write_json`` writes ``jaxrnn.results.environment()`` with the benchmark's fields on top; the report
    reads it (and the older record above) and prints one row per (batch, H, T, method) and the skipped sizes."""
    from benchmarks import report
    from jaxrnn import results as results_io

    where = dict(cell="gru", batch=2, H=8, T=100)
    rows = [
        dict(where, method="scan", median_s=0.002),
        dict(
            where,
            method="newton_full",
            median_s=0.008,
            speedup_vs_scan=0.25,
            iterations=4,
            converged=True,
            iteration_over_scan=1.5,
            setup_over_scan=2.0,
        ),
        dict(
            where,
            method="newton_diagonal",
            median_s=0.02,
            speedup_vs_scan=0.1,
            iterations=50,
            converged=False,
            iteration_over_scan=0.4,
            setup_over_scan=1.0,
        ),
    ]
    skipped = [dict(where, T=10**6, method="scan", reason="scan flops 1e+11 > max_scan_flops")]
    path = common.write_json(
        tmp_path,
        "parallel_in_time",
        dataclasses.make_dataclass("C", [("n", int)])(3),
        {"rows": rows, "skipped": skipped, "nan": float("nan")},
    )
    result = json.loads(path.read_text())
    assert result["config"] == {"n": 3} and result["nan"] == "nan"
    assert result["environment"].items() >= results_io.environment().items()
    assert {"command", "date", "torch", "xla_flags", "device_kind"} <= set(result["environment"])
    _environment_of_this_run(result)
    table = report.parallel_in_time(report.load(tmp_path, "parallel_in_time"))
    assert "| gru | 2 | 8 | 100 | scan | 2.00 | 1.00 | - | - | - |" in table
    assert "| gru | 2 | 8 | 100 | newton_full | 8.00 | 0.25 | 4 | 1.5 | 2 |" in table
    assert "| newton_diagonal | 20.00 | 0.1 | 50 (not converged) | 0.4 | 1 |" in table
    assert table.endswith("- gru B2 H8 T1000000 scan: scan flops 1e+11 > max_scan_flops")
    assert "parallel_in_time" in report.SUITE


WRONG_RECURRENCE = """import jax
from jaxrnn.recurrence import fused_unroll as _unroll


def fused_unroll(params, carry, xs):  # the same values with the gradient negated: a wrong backward pass
    carry_T, hs = _unroll(params, carry, xs)
    return carry_T, 2 * jax.lax.stop_gradient(hs) - hs
"""


@pytest.mark.slow
def test_ab_recurrence_refuses_a_version_whose_gradient_is_wrong(tmp_path, capsys):
    """In process: version 0 (the library's recurrence.py) passes the check against the scan path, version 1 (the
    same loss, gradient negated) is refused before anything is timed."""
    from benchmarks.investigations import ab_recurrence

    wrong = tmp_path / "recurrence_wrong.py"
    wrong.write_text(WRONG_RECURRENCE)
    recurrence = BENCH.parent / "jaxrnn" / "recurrence.py"
    args = ["2", "3", "4", "--device", "cpu", "--min-seconds", "0.01"]
    assert ab_recurrence.main(args + [str(recurrence), str(wrong)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"gradient, 1: {wrong} against jaxrnn scan" in err and "disagree" in err
    assert ab_recurrence.main(args + [str(tmp_path / "nope.py")]) == 2
    assert "no such file" in capsys.readouterr().err
    broken = tmp_path / "recurrence_broken.py"
    broken.write_text("import jaxrnn.no_such_module\n")
    for version in (broken, BENCH / "common.py"):  # fails on import; imports but is not a recurrence.py
        assert ab_recurrence.main(args + [str(version)]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "cannot load" in err, err


@pytest.mark.slow
def test_ab_recurrence_builds_the_same_loss_from_fused_unroll_or_from_recurrence_and_recurrence_ids():
    """A version without ``fused_unroll`` (only ``recurrence``/``recurrence_ids``) runs the same layer."""
    import types

    from benchmarks.investigations import ab_recurrence
    from jaxrnn import recurrence

    p, carry, xs, ys, _ = _tiny_problem()
    bare = types.SimpleNamespace(recurrence=recurrence.recurrence, recurrence_ids=recurrence.recurrence_ids)
    for unfolded in (False, True):
        losses = [
            ab_recurrence.version_loss(ab_recurrence.version_unroll(m), unfolded=unfolded)(p, carry, xs, ys)[0]
            for m in (recurrence, bare)
        ]
        fused = lstm_peers.jaxrnn_fused_losses()[lstm_peers.FUSED if unfolded else lstm_peers.FOLDED]
        np.testing.assert_allclose(losses, float(fused(p, carry, xs, ys)[0]), rtol=1e-6)


@pytest.mark.slow
def test_ab_recurrence_times_agreeing_versions_and_refuses_disagreeing_ones(tmp_path):
    recurrence = BENCH.parent / "jaxrnn" / "recurrence.py"
    wrong = tmp_path / "recurrence_wrong.py"
    wrong.write_text(WRONG_RECURRENCE)
    cmd = [
        sys.executable,
        "-m",
        "benchmarks.investigations.ab_recurrence",
        "2",
        "5",
        "8",
        "--device",
        "cpu",
        "--min-seconds",
        "0.01",
    ]
    ok = subprocess.run(cmd + [str(recurrence), str(recurrence)], capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert ok.returncode == 0, ok.stderr[-2000:]
    assert ok.stdout.count("speed-up over 0") == 2
    assert ok.stdout.count(" MiB)") == 2  # each version's block of temporaries
    bad = subprocess.run(cmd + [str(recurrence), str(wrong)], capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert bad.returncode == 1 and bad.stderr.strip().count("\n") == 0 and "disagree" in bad.stderr


@pytest.mark.slow
def test_huge_pages_times_both_allocator_settings_in_processes_of_their_own(tmp_path):
    from benchmarks.investigations import huge_pages

    if huge_pages.unsupported() is not None:
        pytest.skip(huge_pages.unsupported())
    _run_investigation(tmp_path, "huge_pages")
    result = json.loads((tmp_path / "huge_pages.json").read_text())
    rows = result["rows"]
    assert [row["impl"] for row in rows] == [huge_pages.JAXRNN, huge_pages.FLAX]
    for row in rows:
        assert row["median_s_default"] > 0 and row["median_s_hugetlb"] > 0 and row["temp_bytes"] > 0
        assert row["speedup"] == pytest.approx(row["median_s_default"] / row["median_s_hugetlb"])
        assert row["faults_per_call_default"] >= 0 and len(row["paired_speedups"]) == 1
    assert rows[0]["loss_before"] == pytest.approx(rows[1]["loss_before"], rel=2e-4)
    assert rows[0]["flax_over_jaxrnn_hugetlb"] == rows[1]["flax_over_jaxrnn_hugetlb"] > 0


def test_huge_pages_adds_the_tunable_to_the_callers_and_checks_the_c_library(monkeypatch):
    from benchmarks.investigations import huge_pages

    monkeypatch.delenv("GLIBC_TUNABLES", raising=False)
    assert huge_pages.worker_env("hugetlb")["GLIBC_TUNABLES"] == "glibc.malloc.hugetlb=1"
    assert "GLIBC_TUNABLES" not in huge_pages.worker_env("default")
    monkeypatch.setenv("GLIBC_TUNABLES", "glibc.malloc.trim_threshold=1")
    assert huge_pages.worker_env("hugetlb")["GLIBC_TUNABLES"] == "glibc.malloc.trim_threshold=1:glibc.malloc.hugetlb=1"
    assert huge_pages.worker_env("default")["GLIBC_TUNABLES"] == "glibc.malloc.trim_threshold=1"
    for libc, expected in (
        ("glibc 2.36", None),
        ("glibc 2.35", None),
        ("glibc 2.31", "older than 2.35"),
        ("musl libc 1.2", "not glibc"),
    ):
        monkeypatch.setattr(huge_pages.os, "confstr", lambda name, libc=libc: libc)
        reason = huge_pages.unsupported()
        assert reason is None if expected is None else expected in reason


def test_huge_pages_skips_without_overwriting_an_earlier_result(tmp_path, monkeypatch, capsys):
    import argparse

    from benchmarks.investigations import huge_pages

    good = tmp_path / "huge_pages.json"
    good.write_text('{"rows": ["an earlier run"]}')
    monkeypatch.setattr(huge_pages, "unsupported", lambda: "the C library is not glibc (musl libc 1.2)")
    result = huge_pages.run(argparse.Namespace(quick=True, preset=None, device="cpu", out=tmp_path))
    assert result == {"skipped": "the C library is not glibc (musl libc 1.2)", "rows": []}
    assert good.read_text() == '{"rows": ["an earlier run"]}' and [p.name for p in tmp_path.iterdir()] == [good.name]
    assert "skipped" in capsys.readouterr().out


def test_huge_pages_refuses_settings_that_change_the_arithmetic():
    from benchmarks.investigations import huge_pages

    def run(loss):
        return {
            name: {
                "loss_before": loss,
                "loss_after_one_step": 1.0,
                "median_s": 0.1,
                "faults_per_call": 0,
                "temp_bytes": 8,
            }
            for name in (huge_pages.JAXRNN, huge_pages.FLAX)
        }

    rows = huge_pages.summarise((1, 2, 3), {"default": [run(2.0)], "hugetlb": [run(2.0)]})
    assert [row["speedup"] for row in rows] == [1.0, 1.0]
    with pytest.raises(AssertionError, match="differs between the settings"):
        huge_pages.summarise((1, 2, 3), {"default": [run(2.0)], "hugetlb": [run(2.0000001)]})
