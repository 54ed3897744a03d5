"""Data-parallel throughput: the same jitted LSTM train step on 1, 2 and 4 devices (batch split, params replicated).

Command: ``python -m benchmarks.data_parallel [--quick] [--device cpu|gpu|auto]``

Each device count runs in its own process (the number of forced CPU devices is fixed when JAX starts). On a
CPU the devices are ``--xla_force_host_platform_device_count`` slices of the same cores, so the ratio shows the
cost of partitioning the step, not a speed-up; on a machine with several accelerators (``--device gpu``) the
real local devices are used and the ratio is the scaling. The first loss of every run is checked against the
1-device run before anything is timed.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys

from benchmarks import common


@dataclasses.dataclass(frozen=True)
class Config:
    vocab: int = 100
    hidden: int = 256
    batch: int = 32
    seq_length: int = 64
    devices: tuple = (1, 2, 4)
    min_seconds: float = 3.0


PRESETS = {
    "full": Config(),
    "quick": Config(vocab=11, hidden=8, batch=4, seq_length=5, devices=(1, 2), min_seconds=0.01),
}


def measure(config: Config, devices: int) -> dict:
    """Tokens per second of ``make_train_step`` with its inputs placed by ``jaxrnn.parallel`` on ``devices``."""
    import jax
    import numpy as np

    import jaxrnn
    from jaxrnn import parallel

    V, H, B, T = config.vocab, config.hidden, config.batch, config.seq_length
    params = jaxrnn.init_lstm(jax.random.PRNGKey(0), V, H, V)
    optimizer = jaxrnn.make_optimizer("adam", 2e-3, clip=5.0)
    train_step = jaxrnn.make_train_step(optimizer, reduction="mean")
    ids = np.random.default_rng(0).integers(V, size=(T + 1, B)).astype(np.int32)
    args = (params, optimizer.init(params), jaxrnn.initial_carry(params, (B,)), ids[:-1], ids[1:])
    mesh = parallel.make_mesh(jax.local_devices()[:devices])
    args = parallel.shard_train_inputs(mesh, *args)[:5]
    first_loss = float(train_step(*args)[3])
    timing = common.median_time(lambda: train_step(*args), min_seconds=config.min_seconds)
    return dict(devices=devices, first_loss=first_loss, tokens_per_s=B * T / timing["median_s"], **timing)


def main(config: Config, device: str) -> dict:
    import jax

    rows = []
    counts = (
        config.devices
        if device in ("cpu", "auto") and jax.default_backend() == "cpu"
        else tuple(n for n in config.devices if n <= jax.local_device_count())
    )
    for n in counts:
        env = dict(os.environ)
        if jax.default_backend() == "cpu":
            env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") + f" --xla_force_host_platform_device_count={n}").strip()
        worker = [sys.executable, "-m", "benchmarks.data_parallel", "--device", device, "--worker", str(n)]
        if config is PRESETS["quick"]:
            worker.append("--quick")
        proc = subprocess.run(worker, env=env, capture_output=True, text=True, cwd=common.ROOT)
        if proc.returncode:
            raise SystemExit(f"data_parallel: the {n}-device run failed: {proc.stderr.strip().splitlines()[-1]}")
        rows.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    base = rows[0]
    for row in rows:
        common.check_close(f"data_parallel {row['devices']} devices", base["first_loss"], row["first_loss"], 1e-5)
        row["ratio_vs_1_device"] = row["tokens_per_s"] / base["tokens_per_s"]
        print(
            f"{row['devices']} device(s): {row['tokens_per_s']:.0f} tokens/s "
            f"({row['ratio_vs_1_device']:.2f}x 1 device)",
            flush=True,
        )
    return {"rows": rows}


def run(args) -> dict:
    return common.run_benchmark(args, "data_parallel", PRESETS, main, pass_device=True)


def worker(args) -> None:
    """``--worker N``: measure on ``N`` devices and print the row as JSON."""
    print(json.dumps(measure(PRESETS["quick" if args.quick else "full"], int(args.worker))))


if __name__ == "__main__":
    common.script_main(__doc__, run, worker)
