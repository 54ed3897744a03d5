"""A/B timing of two checkouts of the whole package: the fused LSTM training step as users call it.

Command: ``python -m benchmarks.investigations.ab_checkout OTHER_CHECKOUT [--rounds 5] [--shapes small mid large]``
An older version: ``git worktree add /tmp/jaxrnn_old REV``. Each round runs one child process per checkout, in
alternating order, with ``PYTHONPATH`` set to that checkout; a child builds ``jaxrnn.make_train_step(adam,
method="fused")`` for an LSTM reading token ids (embedding folded into ``Wxh``, vocabulary 100), warms it up and
times calls of the returned function (argument checks included), and prints the median seconds per call. Printed
per shape: each checkout's median over rounds and the ratio this/other by round (median [quartiles]); a ratio
above 1 means this checkout is slower. Both checkouts must give the same first loss (to float32 rounding).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

SHAPES = {"small": (1, 25, 100), "mid": (32, 64, 256), "large": (64, 128, 512)}

CHILD = r"""
import json, sys, time
import jax, jax.numpy as jnp, optax, jaxrnn
B, T, H = (int(a) for a in sys.argv[1:4])
seconds = float(sys.argv[4])
V = 100
k = jax.random.split(jax.random.PRNGKey(B * T + H), 3)
params = jaxrnn.init_lstm(k[0], V, H, V)
carry = jaxrnn.initial_carry(params, (B,))
xs, ys = (jax.random.randint(kk, (T, B), 0, V) for kk in k[1:])
opt = optax.adam(1e-3)
step = jaxrnn.make_train_step(opt, method="fused", reduction="mean")
opt_state = opt.init(params)
loss = step(params, opt_state, carry, xs, ys)[3].block_until_ready()
for _ in range(3):
    step(params, opt_state, carry, xs, ys)[3].block_until_ready()
times, start = [], time.perf_counter()
while time.perf_counter() - start < seconds or len(times) < 20:
    t0 = time.perf_counter()
    step(params, opt_state, carry, xs, ys)[3].block_until_ready()
    times.append(time.perf_counter() - t0)
times.sort()
print(json.dumps({"median_s": times[len(times) // 2], "loss": float(loss), "version": jaxrnn.__version__}))
"""


def child(checkout: Path, shape, seconds: float) -> dict:
    env = {**os.environ, "PYTHONPATH": str(checkout), "JAXRNN_NO_COMPILE_CACHE": "1"}
    out = subprocess.run(
        [sys.executable, "-c", CHILD, *map(str, shape), str(seconds)],
        env=env,
        cwd=checkout,
        capture_output=True,
        text=True,
    )
    if out.returncode:
        raise SystemExit(f"{checkout}: the child failed: {out.stderr.strip().splitlines()[-1]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def quartiles(values):
    q = statistics.quantiles(values, n=4) if len(values) > 1 else [values[0]] * 3
    return q[1], q[0], q[2]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("other", type=Path, help="the other checkout (its root folder)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=3.0, help="timing per child (default 3)")
    parser.add_argument("--shapes", nargs="+", choices=SHAPES, default=list(SHAPES))
    args = parser.parse_args()
    this = Path(__file__).resolve().parents[2]
    if not (args.other / "jaxrnn" / "__init__.py").is_file():
        raise SystemExit(f"{args.other} holds no jaxrnn package")
    for name in args.shapes:
        shape, runs = SHAPES[name], {"this": [], "other": []}
        for r in range(args.rounds):
            order = (("this", this), ("other", args.other))
            for label, checkout in order if r % 2 == 0 else order[::-1]:
                runs[label].append(child(checkout, shape, args.seconds))
        losses = {run["loss"] for label in runs for run in runs[label]}
        if max(losses) - min(losses) > 1e-5 * max(abs(x) for x in losses):
            raise SystemExit(f"{name}: the checkouts disagree on the first loss: {sorted(losses)}")
        ratios = [a["median_s"] / b["median_s"] for a, b in zip(runs["this"], runs["other"])]
        med = lambda label: statistics.median(run["median_s"] for run in runs[label])
        mid, lo, hi = quartiles(ratios)
        print(
            f"{name} (B, T, H) = {shape}: this {runs['this'][0]['version']} {1e3 * med('this'):.3f} ms, other "
            f"{runs['other'][0]['version']} {1e3 * med('other'):.3f} ms; this/other by round {mid:.3f} "
            f"[{lo:.3f}-{hi:.3f}] over {args.rounds} rounds",
            flush=True,
        )


if __name__ == "__main__":
    main()
