"""Shared pieces of the experiments: tasks, a final-state model, a scan-compiled training loop, the command line.

Shapes: ``T`` time, ``B`` batch, ``D`` input, ``H`` hidden, ``V`` outputs. Inputs are time-major ``(T, B, ...)``.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import platform
import sys
import tempfile
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

import jaxrnn

# ----------------------------------------------------------------------------------------------- tasks


def adding_batch(key, T: int, B: int):
    """The adding problem: ``xs (T, B, 2)`` = (value in [0, 1], marker), target ``(B,)`` = sum of the two
    marked values (one marker in each half of the sequence). Predicting 1 always scores MSE 1/6."""
    k_v, k_a, k_b = jax.random.split(key, 3)
    values = jax.random.uniform(k_v, (T, B))
    half = max(T // 2, 1)
    first = jax.random.randint(k_a, (B,), 0, half)
    second = jax.random.randint(k_b, (B,), half, T)
    t = jnp.arange(T)[:, None]
    marks = ((t == first) | (t == second)).astype(values.dtype)
    return jnp.stack([values, marks], axis=-1), jnp.sum(values * marks, axis=0)


ADDING_BASELINE_MSE = 1.0 / 6.0
COPY_SYMBOLS, COPY_LENGTH = 8, 10
COPY_BLANK, COPY_GO = COPY_SYMBOLS, COPY_SYMBOLS + 1


def copy_batch(key, T: int, B: int):
    """The copy task: 10 symbols from 8, ``T - 1`` blanks, a go marker, 10 blanks; the targets are blanks
    until the last 10 steps, which must repeat the symbols. ``xs, targets (T + 20, B)`` integer ids."""
    symbols = jax.random.randint(key, (COPY_LENGTH, B), 0, COPY_SYMBOLS)
    blanks = lambda n: jnp.full((n, B), COPY_BLANK, symbols.dtype)
    go = jnp.full((1, B), COPY_GO, symbols.dtype)
    xs = jnp.concatenate([symbols, blanks(T - 1), go, blanks(COPY_LENGTH)])
    targets = jnp.concatenate([blanks(T + COPY_LENGTH), symbols])
    return xs, targets


def copy_baseline(T: int) -> float:
    """Mean cross-entropy (nats per step) of the memoryless answer: blanks right, uniform over the symbols."""
    return COPY_LENGTH * math.log(COPY_SYMBOLS) / (T + 2 * COPY_LENGTH)


# ---------------------------------------------------------------------------------------------- models


def init_model(kind: str, key, input_size: int, hidden_size: int, output_size: int, *, forget_bias=1.0):
    """``init_rnn`` or ``init_lstm`` (the library defaults: orthogonal ``Whh``) by name."""
    if kind == "rnn":
        return jaxrnn.init_rnn(key, input_size, hidden_size, output_size)
    if kind == "lstm":
        return jaxrnn.init_lstm(key, input_size, hidden_size, output_size, forget_bias=forget_bias)
    raise ValueError(f"unknown model kind {kind!r}; expected 'rnn' or 'lstm'")


def hidden(carry):
    """``h`` of an RNN state (the array itself) or of an ``LSTMCarry``."""
    return carry.h if isinstance(carry, jaxrnn.LSTMCarry) else carry


def final_readout(params, xs):
    """Many-to-one: unroll from the zero state and read out the last hidden state: ``(B, V)``."""
    carry = jaxrnn.initial_carry(params, xs.shape[1:2])
    carry_T, _ = jaxrnn.unroll(jaxrnn.step_for(params), params, carry, xs)
    return jaxrnn.readout(params, hidden(carry_T))


# -------------------------------------------------------------------------------------------- training


def thin(values, points: int = 200):
    """Every k-th value so that a curve keeps about ``points`` points (the JSON stays small)."""
    values = np.asarray(values)
    return values[:: max(len(values) // points, 1)]


def global_norm(tree):
    return jnp.sqrt(sum(jnp.sum(jnp.square(x)) for x in jax.tree.leaves(tree)))


def make_trainer(loss_fn, optimizer, make_batch, chunk: int):
    """``run(params, opt_state, key) -> (params, opt_state, losses (chunk,), grad_norms (chunk,))``: ``chunk``
    optimiser steps as one compiled ``lax.scan``, each on a fresh batch ``make_batch(key)``.

    ``loss_fn(params, batch) -> scalar``. The gradient norm is measured before the optimiser (and its clipping).
    """

    def one(carry, key):
        params, opt_state = carry
        loss, grads = jax.value_and_grad(loss_fn)(params, make_batch(key))
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return (optax.apply_updates(params, updates), opt_state), (loss, global_norm(grads))

    @jax.jit
    def run(params, opt_state, key):
        (params, opt_state), (losses, norms) = jax.lax.scan(one, (params, opt_state), jax.random.split(key, chunk))
        return params, opt_state, losses, norms

    return run


def train(loss_fn, params, optimizer, make_batch, key, steps: int, *, chunk: int = 100, evaluate=None,
          stop_below=None):
    """Train for ``steps`` steps (a multiple of ``chunk``); ``evaluate(params) -> float`` after every chunk.

    Stops early once ``evaluate`` is below ``stop_below``. Returns ``(params, history)`` with per-step
    ``losses``/``grad_norms`` and per-chunk ``eval``/``eval_step``.
    """
    chunk = min(chunk, steps)
    run = make_trainer(loss_fn, optimizer, make_batch, chunk)
    opt_state = optimizer.init(params)
    history = {"losses": [], "grad_norms": [], "eval": [], "eval_step": []}
    for i in range(max(steps // chunk, 1)):
        key, k = jax.random.split(key)
        params, opt_state, losses, norms = run(params, opt_state, k)
        history["losses"] += np.asarray(losses).tolist()
        history["grad_norms"] += np.asarray(norms).tolist()
        if evaluate is not None:
            history["eval"].append(float(evaluate(params)))
            history["eval_step"].append((i + 1) * chunk)
            if stop_below is not None and history["eval"][-1] < stop_below:
                break
    return params, history


# ------------------------------------------------------------------------------------ command line, files


def environment() -> dict:
    """Device and versions, recorded beside every result."""
    return {"device": str(jax.devices()[0]), "jax": jax.__version__, "optax": optax.__version__,
            "python": platform.python_version(), "cpu_count": os.cpu_count()}


def to_jsonable(x):
    if dataclasses.is_dataclass(x):
        return to_jsonable(dataclasses.asdict(x))
    if isinstance(x, dict):
        return {str(k): to_jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [to_jsonable(v) for v in x]
    if isinstance(x, (np.ndarray, jax.Array)):
        return to_jsonable(np.asarray(x).tolist())
    if isinstance(x, (np.floating, float)):
        x = float(x)
        return x if math.isfinite(x) else str(x)  # JSON has no inf/nan
    if isinstance(x, (np.integer,)):
        return int(x)
    return x


def _atomic_write(path: str, write) -> None:
    """Write to a temporary file beside ``path`` and rename, so a failed run never leaves half a file."""
    directory = os.path.dirname(path) or "."
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-", suffix=os.path.splitext(path)[1])
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def save(out_dir: str, name: str, results: dict, figure=None) -> dict:
    """Write ``NAME.json`` (and ``NAME.png`` from a matplotlib figure) into ``out_dir``; returns the paths."""
    os.makedirs(out_dir, exist_ok=True)
    paths = {"json": os.path.join(out_dir, f"{name}.json")}

    def write_json(p):
        with open(p, "w") as f:
            json.dump(to_jsonable(results), f, indent=1)
            f.write("\n")

    _atomic_write(paths["json"], write_json)
    if figure is not None:
        paths["png"] = os.path.join(out_dir, f"{name}.png")
        _atomic_write(paths["png"], lambda p: figure.savefig(p, dpi=80, format="png"))
    return paths


def new_figure(rows: int, cols: int, size=(5.0, 3.6)):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(rows, cols, figsize=(size[0] * cols, size[1] * rows), squeeze=False)
    return fig, axes


def cli(name: str, presets: dict, main, make_figure, argv=None) -> int:
    """``python experiments/NAME.py --preset cpu --out experiments/results``: run ``main(presets[preset])``,
    write ``NAME.json`` and ``NAME.png``. Bad arguments: one line on stderr, exit status 2."""
    parser = argparse.ArgumentParser(prog=f"{name}.py", description=(main.__module__ and sys.modules[
        main.__module__].__doc__ or "").split("\n")[0])
    parser.add_argument("--preset", default="cpu", help=f"one of {sorted(presets)} (default: cpu)")
    parser.add_argument("--out", default=os.path.join("experiments", "results"), help="results folder")
    args = parser.parse_args(argv)
    if args.preset not in presets:
        print(f"{name}: unknown preset {args.preset!r}; expected one of {sorted(presets)}", file=sys.stderr)
        return 2
    if os.path.exists(args.out) and not os.path.isdir(args.out):
        print(f"{name}: --out {args.out!r} exists and is not a folder", file=sys.stderr)
        return 2
    try:
        os.makedirs(args.out, exist_ok=True)
    except OSError as e:
        print(f"{name}: cannot create --out folder {args.out!r}: {e.strerror}", file=sys.stderr)
        return 2
    start = time.perf_counter()
    results = main(presets[args.preset])
    results["runtime_s"] = round(time.perf_counter() - start, 1)
    results["command"] = f"python experiments/{name}.py --preset {args.preset} --out {args.out}"
    results["environment"] = environment()
    paths = save(args.out, name, results, make_figure(results))
    print(json.dumps(summary(results), indent=1))
    print(f"wrote {', '.join(paths.values())} in {results['runtime_s']} s")
    return 0


def summary(results: dict) -> dict:
    """The scalar entries of ``results["summary"]`` (what the README quotes)."""
    return to_jsonable(results.get("summary", {}))
