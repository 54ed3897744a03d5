"""Where the time of one LSTM training step goes: the XLA ops of a compiled step, from a ``jax.profiler`` trace.

Command: ``python -m benchmarks.investigations.profile_step [--quick | --preset large|small] [--device cpu|gpu|auto]``
Profiles one of ``benchmarks.lstm_peers``'s jaxrnn implementations (default: the fused path, folded embedding) at
(B, T, H) = (32, 64, 256), or (64, 128, 512) with ``--preset large``, or the unfolded fused path (the faster one at
batch 1) at (1, 25, 100) with ``--preset small``, over ``repeats`` calls after warm-up.
Prints and writes the ops that take the most time, milliseconds per training step, and how many times each
runs per step (``T`` or ``2T`` for the ops inside the time loops).
"""

from __future__ import annotations

import collections
import dataclasses
import gzip
import json
import re
import tempfile
from pathlib import Path


from benchmarks import common
from benchmarks import lstm_peers
from benchmarks.investigations import paths


@dataclasses.dataclass(frozen=True)
class Config:
    shape: tuple = (32, 64, 256)  # (batch, T, hidden)
    impl: str = paths.FOLDED
    embedding: int = 64
    vocab: int = 100
    repeats: int = 10
    top: int = 25


PRESETS = {
    "full": Config(),
    "large": Config(shape=(64, 128, 512)),
    "small": Config(shape=(1, 25, 100), impl=paths.FUSED, repeats=200),  # the fastest path at batch 1
    "quick": Config(shape=(2, 5, 8), embedding=4, vocab=11, repeats=2, top=5),
}


def main(config: Config) -> dict:
    import jax
    import optax

    B, T, H = config.shape
    V, E = config.vocab, config.embedding
    optimizer = optax.adam(1e-3)
    p, carry, xs, ys = lstm_peers.problem(B, T, H, E, V)
    opt0 = optimizer.init(p)
    compiled, _, _ = common.compile_timed(paths.steps(optimizer)[config.impl], p, opt0, carry, xs, ys)
    hlo = compiled.as_text()
    for _ in range(3):
        common.block(compiled(p, opt0, carry, xs, ys))
    with tempfile.TemporaryDirectory() as trace_dir:
        with jax.profiler.trace(trace_dir):
            for _ in range(config.repeats):
                common.block(compiled(p, opt0, carry, xs, ys))
        events = json.loads(gzip.open(next(Path(trace_dir).rglob("*.trace.json.gz"))).read())["traceEvents"]
    total, count = collections.Counter(), collections.Counter()
    for e in events:
        if e.get("ph") == "X":
            total[e["name"]] += e["dur"]
            count[e["name"]] += 1
    step_ms = total["ThunkExecutor::Execute (wait for completion)"] / config.repeats / 1e3
    rows, ops_ms, op_calls = [], 0.0, 0
    for name, us in total.most_common():
        match = re.search(r"  %" + re.escape(name) + r" = (\(.*?\)|\S+) ([\w-]+)\(.*?op_name=\"([^\"]*)\"", hlo)
        if match is None:  # runtime bookkeeping (executor, thread pool, Python frames), not an op of the program
            continue
        container = match.group(2) in ("while", "conditional", "call")  # its time is its body's ops, listed apart
        if not container:
            ops_ms += us / config.repeats / 1e3
            op_calls += count[name] // config.repeats
        if len(rows) < config.top:
            rows.append(
                dict(
                    op=name,
                    ms_per_step=us / config.repeats / 1e3,
                    calls_per_step=count[name] // config.repeats,
                    shape=match.group(1),
                    source=match.group(3),
                    container=container,
                )
            )
    print(
        f"{config.impl}, B {B} T {T} H {H}: {step_ms:.3f} ms per step under the profiler, {ops_ms:.3f} ms of it "
        f"summed over the program's {op_calls} op calls per step (independent ops may overlap on the cores)",
        flush=True,
    )
    for row in rows:
        print(
            f"{row['ms_per_step'] * 1e3:9.1f} us  x{row['calls_per_step']:<4d} {row['op']:36s} "
            f"{row['shape'][:26]:26s} {row['source'][-50:]}"
            + ("  (a loop, all its steps)" if row["container"] else ""),
            flush=True,
        )
    return {"step_ms_under_profiler": step_ms, "ops_ms": ops_ms, "op_calls_per_step": op_calls, "rows": rows}


def run(args) -> dict:
    return common.run_benchmark(args, "profile_step", PRESETS, main)


if __name__ == "__main__":
    common.script_main(__doc__, run)
