"""The LSTM training step with XLA:CPU's per-call scratch memory in 4 KiB pages, and in huge pages (hugetlb=1).

``benchmarks.lstm_peers``'s step (jaxrnn's fused path with the folded embedding, and Flax linen) with glibc's default
allocator and with ``GLIBC_TUNABLES=glibc.malloc.hugetlb=1``.

Command: ``python -m benchmarks.investigations.huge_pages [--quick] [--device cpu|auto]``
XLA:CPU allocates all the temporaries of one call as one block (``compiled.memory_analysis()
.temp_size_in_bytes``: 202 MB for jaxrnn's step at (64, 128, 512)) and frees it when the call ends. glibc maps a
block that large afresh every time (``mmap``, above any mmap threshold it can be given), so each call page-faults
all of it again, 4 KiB at a time. With the tunable (glibc 2.35 or later) glibc asks the kernel for transparent
huge pages on the blocks it maps (``madvise``), 2 MiB each, which works where
``/sys/kernel/mm/transparent_hugepage/enabled`` is ``always`` or ``madvise``. Tunables are read when a process
starts, so each setting runs in processes of its own: for each shape, ``rounds`` pairs of processes, one per
setting, in alternating order; each process checks that the two implementations agree on the loss before and
after one step, times them in turn (``common.interleaved_times``) and counts the minor page faults per call
(``getrusage``). Reported per shape and implementation: the median time with each setting, the speed-up (ratio
of medians, and the median [range] of each pair's ratio), page faults per call, the scratch block's size.
"""

from __future__ import annotations

import dataclasses
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path


from benchmarks import common
from benchmarks import lstm_peers, peers  # import no JAX until called
from benchmarks.investigations import paths

HUGETLB = "glibc.malloc.hugetlb=1"
SETTINGS = ("default", "hugetlb")
JAXRNN, FLAX = paths.FOLDED, "flax linen nn.RNN(OptimizedLSTMCell)"
THP = Path("/sys/kernel/mm/transparent_hugepage/enabled")


@dataclasses.dataclass(frozen=True)
class Config:
    shapes: tuple = ((1, 25, 100), (32, 64, 256), (64, 128, 512))  # (batch, T, hidden), as lstm_peers
    embedding: int = 64
    vocab: int = 100
    learning_rate: float = 1e-3
    rounds: int = 3  # pairs of processes per shape
    min_seconds: float = 4.0  # timing budget per implementation in each process
    fault_calls: int = 5  # calls of each implementation whose page faults are counted


PRESETS = {
    "full": Config(),
    "quick": Config(shapes=((2, 5, 8),), embedding=4, vocab=11, rounds=1, min_seconds=0.01, fault_calls=2),
}


def unsupported() -> str | None:
    """Why the tunable cannot work here (not glibc, or older than 2.35), or ``None``."""
    libc = os.confstr("CS_GNU_LIBC_VERSION") if "CS_GNU_LIBC_VERSION" in os.confstr_names else None
    if not libc or not libc.startswith("glibc "):
        return f"the C library is not glibc ({libc or 'unknown'})"
    if tuple(int(v) for v in libc.split()[1].split(".")[:2]) < (2, 35):
        return f"{libc} is older than 2.35, which added glibc.malloc.hugetlb"
    return None


def measure(config: Config, shape: tuple) -> dict:
    """One process's measurement of one shape: ``{impl: {median_s, ..., faults_per_call, temp_bytes, losses}}``."""
    import resource

    import optax

    B, T, H = shape
    V, E = config.vocab, config.embedding
    optimizer = optax.adam(config.learning_rate)
    p, carry, xs, ys = lstm_peers.problem(B, T, H, E, V, seed=B * T + H)
    opt0 = optimizer.init(p)
    fused_step = paths.steps(optimizer)[JAXRNN]
    variables, flax_step, _ = peers.flax_linen_impl(p, optimizer)
    vopt = optimizer.init(variables)
    compiled = {
        JAXRNN: (common.compile_timed(fused_step, p, opt0, carry, xs, ys)[0], (p, opt0, carry, xs, ys), 3),
        FLAX: (common.compile_timed(flax_step, variables, vopt, xs, ys)[0], (variables, vopt, xs, ys), 2),
    }
    out = {}
    for name, (step, args, loss_at) in compiled.items():
        state1 = step(*args)
        loss0 = float(state1[loss_at])
        loss1 = float(step(*state1[:2], *args[2:])[loss_at])
        out[name] = {
            "loss_before": loss0,
            "loss_after_one_step": loss1,
            "temp_bytes": int(step.memory_analysis().temp_size_in_bytes),
        }
    for key in ("loss_before", "loss_after_one_step"):
        common.check_close(f"B{B} T{T} H{H} {key}, Flax against jaxrnn", out[JAXRNN][key], out[FLAX][key], 2e-4)
    calls = {name: (lambda step=step, args=args: step(*args)) for name, (step, args, _) in compiled.items()}
    timings = common.interleaved_times(calls, min_seconds=config.min_seconds)
    for name, call in calls.items():
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        for _ in range(config.fault_calls):
            common.block(call())
        faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
        out[name] |= {k: v for k, v in timings[name].items() if k != "round_s"}
        out[name]["faults_per_call"] = faults / config.fault_calls
    return out


def worker_env(setting: str) -> dict:
    """The environment of a process for ``setting``: the caller's, with the tunable added for ``hugetlb``."""
    env = dict(os.environ)
    if setting == "hugetlb":
        env["GLIBC_TUNABLES"] = ":".join(filter(None, [env.get("GLIBC_TUNABLES", ""), HUGETLB]))
    return env


def run_worker(config: Config, shape: tuple, setting: str, device: str) -> dict:
    preset = "quick" if config is PRESETS["quick"] else "full"
    cmd = [
        sys.executable,
        "-m",
        "benchmarks.investigations.huge_pages",
        "--device",
        device,
        "--preset",
        preset,
        "--worker",
        ",".join(map(str, shape)),
    ]
    proc = subprocess.run(cmd, env=worker_env(setting), capture_output=True, text=True, cwd=common.ROOT)
    if proc.returncode:
        last = (proc.stderr.strip().splitlines() or ["(no output)"])[-1]
        raise SystemExit(f"huge_pages: the {setting} process at {shape} failed: {last}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def summarise(shape: tuple, runs: dict) -> list:
    """Rows per implementation from ``runs[setting] = [measure() of each round]``."""
    B, T, H = shape
    rows = []
    for name in (JAXRNN, FLAX):
        per = {s: [run[name] for run in runs[s]] for s in SETTINGS}
        for s in SETTINGS[1:]:  # the allocator must not change a single bit of the arithmetic
            for key in ("loss_before", "loss_after_one_step"):
                if {r[key] for r in per[s]} != {r[key] for r in per["default"]}:
                    raise AssertionError(f"B{B} T{T} H{H} {name}: {key} differs between the settings")
        median = {s: statistics.median(r["median_s"] for r in per[s]) for s in SETTINGS}
        paired = [d["median_s"] / h["median_s"] for d, h in zip(per["default"], per["hugetlb"])]
        rows.append(
            dict(
                B=B,
                T=T,
                H=H,
                impl=name,
                temp_bytes=per["default"][0]["temp_bytes"],
                **{f"median_s_{s}": median[s] for s in SETTINGS},
                **{f"tokens_per_s_{s}": B * T / median[s] for s in SETTINGS},
                **{f"faults_per_call_{s}": statistics.median(r["faults_per_call"] for r in per[s]) for s in SETTINGS},
                speedup=median["default"] / median["hugetlb"],
                paired_speedups=paired,
                loss_before=per["default"][0]["loss_before"],
            )
        )
    for s in SETTINGS:  # Flax's time over jaxrnn's under each setting, from the same processes
        ratio = rows[1][f"median_s_{s}"] / rows[0][f"median_s_{s}"]
        rows[0][f"flax_over_jaxrnn_{s}"] = rows[1][f"flax_over_jaxrnn_{s}"] = ratio
    return rows


def skip_reason() -> str | None:
    """Why this benchmark cannot run here (a backend other than the CPU, or ``unsupported()``), or ``None``."""
    import jax

    if jax.default_backend() != "cpu":
        return f"the backend is {jax.default_backend()}: XLA's scratch memory is on the device, not in malloc"
    return unsupported()


def main(config: Config, device: str = "auto") -> dict:
    """Both settings at every shape; ``run`` has checked ``skip_reason`` first."""
    thp = THP.read_text().strip() if THP.exists() else "unknown"
    rows = []
    for shape in config.shapes:
        runs = {s: [] for s in SETTINGS}
        for r in range(config.rounds):
            for setting in SETTINGS if r % 2 == 0 else SETTINGS[::-1]:  # alternate which setting runs first
                runs[setting].append(run_worker(config, shape, setting, device))
        for row in summarise(shape, runs):
            rows.append(row)
            print(
                f"B{row['B']:<3d} T{row['T']:<4d} H{row['H']:<4d} {row['impl']:38s} "
                f"{row['median_s_default'] * 1e3:9.2f} ms -> {row['median_s_hugetlb'] * 1e3:9.2f} ms "
                f"({row['speedup']:.2f}x; pairs {min(row['paired_speedups']):.2f}-"
                f"{max(row['paired_speedups']):.2f}x), page faults per call "
                f"{row['faults_per_call_default']:.0f} -> {row['faults_per_call_hugetlb']:.0f}, scratch "
                f"{row['temp_bytes'] / 2**20:.1f} MiB",
                flush=True,
            )
    return {"transparent_hugepage": thp, "tunable": HUGETLB, "rows": rows}


def run(args) -> dict:
    reason = skip_reason()
    if reason is not None:  # write nothing: an earlier run's results stay as they are
        print(f"huge_pages: skipped, {reason}; nothing written", flush=True)
        return {"skipped": reason, "rows": []}
    return common.run_benchmark(args, "huge_pages", PRESETS, main, pass_device=True)


def worker(args) -> None:
    """``--worker B,T,H``: measure one shape under this process's allocator setting and print the row as JSON."""
    shape = tuple(int(v) for v in args.worker.split(","))
    print(json.dumps(measure(PRESETS[args.preset or "full"], shape)))


if __name__ == "__main__":
    common.script_main(__doc__, run, worker)
