"""The benchmark suite as a whole: ``run_all`` end to end (slow), the shared command line and timing of
``benchmarks.common``, and the scripts with no test file of their own (minchar, memory)."""

import dataclasses
import json
import subprocess
import sys

import jax
import numpy as np
import pytest

from benchmark_scripts import INVESTIGATIONS, ROOT, environment_of_this_run, run_all, run_investigation
from benchmarks import common


@pytest.mark.slow
def test_smoke_quick_suite_sampling_minchar_and_step_layout(tmp_path):
    run_all(tmp_path, "sampling", "minchar")
    run_investigation(tmp_path, "step_layout")
    for name in ("sampling", "minchar", "step_layout"):
        result = json.loads((tmp_path / f"{name}.json").read_text())
        environment_of_this_run(result)
        assert all(row["median_s"] > 0 for row in result["rows"][1:])
    assert json.loads((tmp_path / "sampling.json").read_text())["greedy_agreement"] >= 0.99


@pytest.mark.slow
def test_smoke_quick_suite_all(tmp_path):
    run_all(tmp_path)
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
def test_memory_covers_the_fused_path_and_it_keeps_less_than_scan_full_bptt():
    from benchmarks import memory

    config = memory.PRESETS["quick"]  # compiles only: XLA's accounting, nothing timed
    peak = {method: memory.peak_bytes(config, method, 16) for method in memory.METHODS}
    assert 0 < peak["fused"]["peak_bytes"] < peak["full"]["peak_bytes"]
    assert peak["remat"]["peak_bytes"] < peak["full"]["peak_bytes"]
    assert peak["segmented"]["peak_bytes"] < peak["full"]["peak_bytes"]


def test_memory_finds_the_longest_length_within_the_budget(monkeypatch):
    """The search (doubling, then bisection to within 1/64) on a made-up peak of 1000 bytes per time step."""

    from benchmarks import memory

    monkeypatch.setattr(memory, "peak_bytes", lambda config, method, T: {"peak_bytes": 1000 * T})
    config = dataclasses.replace(memory.PRESETS["quick"], budget_bytes=1000 * 3000, search_max_T=2**20)
    longest = memory.longest_fitting(config, "full")
    assert 3000 * (1 - 1 / 64) <= longest <= 3000  # T fits, within the bisection's tolerance of the true limit
    assert memory.longest_fitting(config, "segmented") == 54**2  # the largest square of a T that fits
    assert memory.longest_fitting(dataclasses.replace(config, search_max_T=1000), "full") == -1  # fits throughout
