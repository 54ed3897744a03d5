"""Running the benchmark scripts as a user does, for the tests of benchmarks/: ``python -m benchmarks.NAME`` from
the repository root, in a subprocess."""

import subprocess
import sys
from pathlib import Path

import jax

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "benchmarks"
INVESTIGATIONS = BENCH / "investigations"


def run_all(tmp_path, *only):
    """``python -m benchmarks.run_all --quick`` (of the benchmarks ``only``), writing to ``tmp_path``."""
    cmd = [sys.executable, "-m", "benchmarks.run_all", "--quick", "--device", "cpu", "--out", str(tmp_path)]
    proc = subprocess.run(
        cmd + (["--only", *only] if only else []), capture_output=True, text=True, timeout=900, cwd=ROOT
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc


def run_investigation(tmp_path, name, *flags):
    """``python -m benchmarks.investigations.NAME --quick``, writing to ``tmp_path``."""
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


def environment_of_this_run(result):
    assert result["environment"]["backend"] == "cpu"
    assert result["environment"]["jax"] == jax.__version__
