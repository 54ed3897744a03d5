"""Start-up of the command line, cold against warm compilation cache: seconds from launch to the first sampled
character of ``jaxrnn sample``, and to the end of a resumed ``jaxrnn train`` that makes a few more updates.

Each run is a fresh ``python -m jaxrnn`` process; "cold" runs use an empty cache directory, "warm" ones the
directory the cold run filled (``JAXRNN_CACHE_DIR``). The model is the command line's default (LSTM, H = 256,
built-in corpus), trained for a few updates first.

Command: ``python -m benchmarks.startup [--quick]``
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import tempfile
import time

from benchmarks import common


@dataclasses.dataclass(frozen=True)
class Config:
    hidden: int = 256
    sample_length: int = 500
    more_steps: int = 10
    repeats: int = 3


PRESETS = {"full": Config(), "quick": Config(hidden=16, sample_length=20, more_steps=2, repeats=1)}


def _env(cache: str) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "JAXRNN_NO_COMPILE_CACHE"}
    return {**env, "JAXRNN_CACHE_DIR": cache, "PYTHONUNBUFFERED": "1"}


def first_character_seconds(argv: list[str], env: dict) -> float:
    """Seconds from launching ``python -m jaxrnn *argv`` to its first byte on stdout (it then runs to the end)."""
    start = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "jaxrnn", *argv], env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL
    )
    proc.stdout.read(1)
    first = time.perf_counter() - start
    proc.stdout.read()
    if proc.wait():
        raise RuntimeError(f"jaxrnn {' '.join(argv)} exited with status {proc.returncode}")
    return first


def whole_seconds(argv: list[str], env: dict) -> float:
    start = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "jaxrnn", *argv],
        env=env,
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    return time.perf_counter() - start


def main(config: Config) -> dict:
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        out = os.path.join(folder, "run")
        train = [
            "train",
            "--out",
            out,
            "--hidden",
            str(config.hidden),
            "--eval-every",
            str(config.more_steps),
            "--sample-length",
            "0",
            "--no-progress",
        ]
        subprocess.run(
            [sys.executable, "-m", "jaxrnn", *train, "--steps", str(config.more_steps)],
            env={**os.environ, "JAXRNN_NO_COMPILE_CACHE": "1"},
            check=True,
            stderr=subprocess.DEVNULL,
        )
        steps = config.more_steps
        for repeat in range(config.repeats):
            cache = os.path.join(folder, f"cache{repeat}")
            for state in ("cold", "warm"):
                s = first_character_seconds(
                    ["sample", "--out", out, "--length", str(config.sample_length)], _env(cache)
                )
                rows.append({"command": "sample", "cache": state, "seconds": s})
                steps += config.more_steps
                s = whole_seconds([*train, "--resume", "--steps", str(steps)], _env(cache))
                rows.append({"command": "train --resume", "cache": state, "seconds": s})
                print(
                    f"{state}: sample first character {rows[-2]['seconds']:.2f} s, "
                    f"resumed train of {config.more_steps} updates {s:.2f} s",
                    flush=True,
                )
    summary = {}
    for command in ("sample", "train --resume"):
        for state in ("cold", "warm"):
            v = [r["seconds"] for r in rows if r["command"] == command and r["cache"] == state]
            summary[f"{command} {state}"] = {"min_s": min(v), "max_s": max(v), "n": len(v)}
    return {"rows": rows, "summary": summary}


def run(args) -> dict:
    return common.run_benchmark(args, "startup", PRESETS, main)


if __name__ == "__main__":
    common.script_main(__doc__, run)
