"""Shared by the benchmarks: device choice, compile and run timing, the environment record, results files.

Timing rules: a function is compiled ahead of time (``jit(...).lower(...).compile()``, reported apart), called
once more to warm up, then timed over repeats with ``block_until_ready``; the median is reported.
"""

from __future__ import annotations

import argparse
import datetime
import os
import random
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]  # the repository: the scripts run as python -m benchmarks.NAME from here
RESULTS = ROOT / "benchmarks" / "results"
DEVICES = {"cpu": "cpu", "gpu": "cuda", "auto": None}  # as experiments.common, without importing JAX here


def select_device(device: str) -> None:
    """``experiments.common.select_device`` (one definition for both folders), its error as one line, exit 2."""
    from experiments.common import UsageError
    from experiments.common import select_device as select

    try:
        select(device)
    except UsageError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)


def parser(description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--quick", action="store_true", help="tiny sizes: a smoke run in seconds")
    p.add_argument(
        "--preset",
        default=None,
        help="a named preset of the script (default: full, or quick with --quick); results go to NAME_PRESET.json",
    )
    p.add_argument("--device", choices=sorted(DEVICES), default="auto", help="JAX platform (default: auto)")
    p.add_argument(
        "--out",
        type=Path,
        default=None,
        help="results folder (default: benchmarks/results, or benchmarks/results/quick with --quick)",
    )
    return p


def out_dir(args) -> Path:
    """``--out``, else ``benchmarks/results`` (``results/quick`` with ``--quick``), with a folder per backend other
    than the CPU (``results/gpu``), so that a run on an accelerator never replaces the CPU results."""
    import jax

    if args.out is not None:
        return args.out
    folder = RESULTS / "quick" if args.quick else RESULTS
    return folder if jax.default_backend() == "cpu" else folder / jax.default_backend()


def environment() -> dict:
    """``jaxrnn.results.environment()`` (device, versions, machine) and what a benchmark adds: the device's
    kind, PyTorch's version (a peer), ``XLA_FLAGS``, the command and the date."""
    import jax

    from jaxrnn import results as results_io

    try:
        torch = __import__("torch").__version__
    except ImportError:
        torch = None
    device = jax.devices()[0]
    return {
        **results_io.environment(),
        "device_kind": f"{device.platform}: {device.device_kind}",
        "torch": torch,
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
        "command": " ".join(["python -m", _module_name()] + sys.argv[1:]),
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
    }


def _module_name() -> str:
    """The running script as ``python -m`` names it (``benchmarks.lstm_peers``)."""
    main = sys.modules.get("__main__")
    spec = getattr(main, "__spec__", None)
    return spec.name if spec is not None else Path(sys.argv[0]).stem


def compile_timed(fn, *args):
    """``(compiled, trace_and_lower_s, compile_s)`` for ``jax.jit(fn)`` (or ``fn`` itself, if jitted) at ``args``."""
    import jax

    t0 = time.perf_counter()
    lowered = (fn if hasattr(fn, "lower") else jax.jit(fn)).lower(*args)  # a jitted fn keeps its donate_argnums
    t1 = time.perf_counter()
    compiled = lowered.compile()
    return compiled, t1 - t0, time.perf_counter() - t1


def threaded_call(step, state: tuple, *rest):
    """A ``call()`` for ``interleaved_times`` that trains: each call runs ``step(*state, *rest)`` and keeps the
    first ``len(state)`` outputs as the next state, as a training loop does (a step that donates its state
    deletes the arrays it is given, so it cannot be called twice with the same ones)."""
    box = [tuple(state)]

    def call():
        out = step(*box[0], *rest)
        box[0] = tuple(out[: len(box[0])])
        return out

    return call


def block(out):
    """Wait for JAX arrays (and torch CUDA work) in ``out``."""
    import jax

    jax.block_until_ready(out)
    if "torch" in sys.modules and sys.modules["torch"].cuda.is_available():
        sys.modules["torch"].cuda.synchronize()
    return out


def median_time(
    call, *, min_repeats: int = 5, min_seconds: float = 1.0, max_repeats: int = 200, warmup: int = 1
) -> dict:
    """Median seconds per ``call()`` after ``warmup`` calls: at least ``min_repeats`` calls and ``min_seconds``."""
    for _ in range(warmup):
        block(call())
    times, start = [], time.perf_counter()
    while len(times) < min_repeats or (time.perf_counter() - start < min_seconds and len(times) < max_repeats):
        t0 = time.perf_counter()
        block(call())
        times.append(time.perf_counter() - t0)
    return {"median_s": statistics.median(times), "min_s": min(times), "repeats": len(times)}


def write_json(folder: Path, name: str, config, results: dict) -> Path:
    """``NAME.json`` in ``folder``, atomically (``jaxrnn.results.write_json``): the results with the benchmark's
    name, environment and config."""
    from jaxrnn import results as results_io

    payload = {"benchmark": name, "environment": environment(), "config": config, **results}
    return Path(results_io.write_json(folder / f"{name}.json", payload))


def max_abs_diff(a, b) -> float:
    import jax
    import numpy as np

    return max(
        float(np.max(np.abs(np.asarray(x, np.float64) - np.asarray(y, np.float64))))
        for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b))
    )


def check_close(name: str, a, b, tol: float) -> float:
    """Relative max difference of two pytrees; raise if above ``tol`` (implementations must agree before timing)."""
    import jax
    import numpy as np

    scale = max(float(np.max(np.abs(np.asarray(x, np.float64)))) for x in jax.tree.leaves(a))
    err = max_abs_diff(a, b) / max(scale, 1e-30)
    if not err <= tol:
        raise AssertionError(f"{name}: implementations disagree, relative difference {err:.2e} > {tol:.0e}")
    return err


def interleaved_times(
    calls: dict,
    *,
    min_rounds: int = 5,
    min_seconds: float = 1.0,
    max_rounds: int = 100,
    warmup: int = 1,
    timed_per_round: int = 2,
) -> dict:
    """``median_time`` for several callables timed in turn, round after round, so that a change in the
    machine's load (it is shared) touches all of them alike and their ratios stay fair.

    In each round every callable runs once untimed, then ``timed_per_round`` times timed: PyTorch's OpenMP
    threads spin-wait for a while after a step and slowed whichever implementation ran next by 5-15%; the
    untimed call absorbs that, and each implementation is timed as in a training loop, after a step of its own.
    The order is shuffled every round (seeded): after a large two-core matmul the next implementation was still
    slower at (1, 25, 100) despite its untimed call, so a fixed order charged that to whoever came next;
    shuffled, each follows each other one about equally often, and the medians leave the slowed rounds out.
    Returns ``{name: {"median_s", "min_s", "repeats", "round_s"}}``, ``round_s`` the median of each round's timed
    calls (for ``paired_speedups``).
    """
    for call in calls.values():
        for _ in range(warmup):
            block(call())
    times = {name: [] for name in calls}
    order, rng = list(calls), random.Random(0)
    start, rounds = time.perf_counter(), 0
    while rounds < min_rounds or (time.perf_counter() - start < min_seconds * len(calls) and rounds < max_rounds):
        rng.shuffle(order)
        for name in order:
            call = calls[name]
            block(call())
            for _ in range(timed_per_round):
                t0 = time.perf_counter()
                block(call())
                times[name].append(time.perf_counter() - t0)
        rounds += 1
    return {
        name: {
            "median_s": statistics.median(t),
            "min_s": min(t),
            "repeats": len(t),
            "round_s": [statistics.median(t[i : i + timed_per_round]) for i in range(0, len(t), timed_per_round)],
        }
        for name, t in times.items()
    }


def paired_speedups(timings: dict, name: str) -> dict:
    """Speed-up of ``name`` over each other implementation of one ``interleaved_times`` run, round by round:
    ``{other: {"median", "q25", "q75"}}`` of ``other's time / name's time`` within each round.

    A round times all implementations within seconds of each other, so a change in the machine's load that lasts
    longer than a round cancels in each round's ratio; the spread over rounds says how far one run can be trusted.
    """
    own = timings[name]["round_s"]
    out = {}
    for other, t in timings.items():
        if other != name:
            q25, q50, q75 = statistics.quantiles([o / s for o, s in zip(t["round_s"], own)], n=4, method="inclusive")
            out[other] = {"median": q50, "q25": q25, "q75": q75}
    return out


def run_benchmark(args, name: str, presets: dict, main, *, plot=None, pass_device: bool = False) -> dict:
    """What every script's ``run(args)`` does: run the ``quick`` or ``full`` preset, write ``NAME.json`` (and
    ``NAME.png`` when there is a ``plot(results, path)``) to the results folder, return the results."""
    preset = getattr(args, "preset", None) or ("quick" if args.quick else "full")
    if preset not in presets:
        print(f"error: --preset {preset}: {name} has presets {', '.join(presets)}", file=sys.stderr)
        sys.exit(2)
    config = presets[preset]
    results = main(config, args.device) if pass_device else main(config)
    folder = out_dir(args)
    stem = name if preset in ("full", "quick") else f"{name}_{preset}"
    write_json(folder, stem, config, results)
    if plot is not None:  # plot(results, path) saves the figure itself: to a temporary file renamed into place
        from jaxrnn import results as results_io

        results_io.write_atomic(folder / f"{stem}.png", lambda tmp: plot(results, tmp))
    return results


def script_main(doc: str, run, worker=None) -> None:
    """A benchmark script's command line: parse the shared flags, pick the device, ``run(args)``.

    ``worker(args)``: the script measures in processes of its own (one per setting), started with ``--worker SPEC``;
    such a process calls ``worker`` in place of ``run``."""
    p = parser(doc.splitlines()[0])
    if worker is not None:
        p.add_argument("--worker", default=None, help="internal: measure one setting and print JSON")
    args = p.parse_args()
    select_device(args.device)
    if getattr(args, "worker", None) is not None:
        worker(args)
    else:
        run(args)
