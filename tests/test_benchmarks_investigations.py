"""The one-off investigations of ``benchmarks/investigations/``: each at its quick size (slow), and their pieces."""

import dataclasses
import json
import subprocess
import sys

import numpy as np
import pytest

from benchmark_scripts import BENCH, ROOT, run_investigation
from benchmarks import lstm_peers
from benchmarks.investigations import paths


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
def test_step_parts_times_each_part_of_both_implementations_at_two_lengths(tmp_path):
    run_investigation(tmp_path, "step_parts")
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
def test_smoke_profile_step_names_ops_of_the_compiled_step(tmp_path):
    run_investigation(tmp_path, "profile_step")
    result = json.loads((tmp_path / "profile_step.json").read_text())
    rows = result["rows"]
    assert rows and any(row["calls_per_step"] == 5 for row in rows)  # T = 5: ops inside the time loop
    assert all(row["ms_per_step"] > 0 for row in rows)
    assert any(row["container"] for row in rows)  # the time loops are listed, as wholes
    # the totals count every op of the program except the loops (whose body ops they count), the listed ones among them
    ops = [row for row in rows if not row["container"]]
    assert result["op_calls_per_step"] >= sum(row["calls_per_step"] for row in ops)
    assert result["ops_ms"] >= sum(row["ms_per_step"] for row in ops) * (1 - 1e-9)


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
    recurrence = ROOT / "jaxrnn" / "recurrence.py"
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

    p, carry, xs, ys = lstm_peers.problem(2, 5, 3, 4, 7)
    bare = types.SimpleNamespace(recurrence=recurrence.recurrence, recurrence_ids=recurrence.recurrence_ids)
    for unfolded in (False, True):
        losses = [
            ab_recurrence.version_loss(ab_recurrence.version_unroll(m), unfolded=unfolded)(p, carry, xs, ys)[0]
            for m in (recurrence, bare)
        ]
        fused = paths.losses()[paths.FUSED if unfolded else paths.FOLDED]
        np.testing.assert_allclose(losses, float(fused(p, carry, xs, ys)[0]), rtol=1e-6)


@pytest.mark.slow
def test_ab_recurrence_times_agreeing_versions_and_refuses_disagreeing_ones(tmp_path):
    recurrence = ROOT / "jaxrnn" / "recurrence.py"
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
    run_investigation(tmp_path, "huge_pages")
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
