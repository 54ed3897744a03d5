"""Shared pieces of the experiments: tasks, a final-state model, a scan-compiled training loop, the command line.

Shapes: ``T`` time, ``B`` batch, ``D`` input, ``H`` hidden, ``V`` outputs. Inputs are time-major ``(T, B, ...)``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
import warnings

import jax
import optax
import jax.numpy as jnp
import numpy as np

import jaxrnn
import jaxrnn.training
from jaxrnn import results as results_io

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


def init_model(kind: str, key, input_size: int, hidden_size: int, output_size: int, **kwargs):
    """The library's initialiser for the cell named ``kind`` (``"rnn"``, ``"lstm"``, ``"gru"``): orthogonal
    ``Whh``; ``kwargs`` such as the LSTM's ``forget_bias`` go to it."""
    return jaxrnn.cell_type(kind).init(key, input_size, hidden_size, output_size, **kwargs)


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


global_norm = optax.tree.norm


def make_trainer(loss_fn, optimizer, make_batch, chunk: int):
    """``run(params, opt_state, key) -> (params, opt_state, losses (chunk,), grad_norms (chunk,))``: ``chunk``
    optimiser steps of ``jaxrnn.make_train_step`` in one compiled call, each on a fresh batch
    ``make_batch(k)`` for ``k`` in ``split(key, chunk)``.

    ``loss_fn(params, batch) -> scalar``. The gradient norm is measured before the optimiser (and its clipping).
    """
    step = jaxrnn.make_train_step(
        optimizer,
        loss_fn=lambda p, carry, batch, _, mask=None: (loss_fn(p, batch), carry),
        updates_per_call=chunk,
        with_grad_norm=True,
    )

    @jax.jit
    def run(params, opt_state, key):
        batches = jax.vmap(make_batch)(jax.random.split(key, chunk))
        params, opt_state, _, losses, norms = step(params, opt_state, (), batches, None)
        return params, opt_state, losses, norms

    return run


def train(loss_fn, params, optimizer, make_batch, key, steps: int, *, chunk: int = 100, evaluate=None, stop_below=None):
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


# ----------------------------------------------------------------------------------------------- seeds


def spread(values) -> dict:
    """One number measured over seeds: ``mean``, sample ``std`` (0 for one seed), ``min``, ``max``, ``n`` and the
    ``values`` themselves. Non-finite values are kept and make the mean non-finite (a diverged seed shows)."""
    v = np.asarray(values, dtype=float).ravel()
    if v.size == 0:
        raise ValueError("spread of no values")
    return {
        "mean": float(v.mean()),
        "std": float(v.std(ddof=1)) if v.size > 1 else 0.0,
        "min": float(v.min()),
        "max": float(v.max()),
        "n": int(v.size),
        "values": v.tolist(),
    }


def separated(a: dict, b: dict) -> bool:
    """Whether two ``spread`` results do not overlap (min-max ranges apart): the only case in which the
    experiments say that one setting beats another."""
    return a["max"] < b["min"] or b["max"] < a["min"]


def verdict(a: dict, b: dict, names=("a", "b"), lower_is_better: bool = True) -> str:
    """``"<name> better"`` when the ranges of ``a`` and ``b`` are apart, else ``"no difference"``."""
    if not separated(a, b):
        return "no difference"
    a_wins = (a["mean"] < b["mean"]) == lower_is_better
    return f"{names[0] if a_wins else names[1]} better"


def pm(s: dict, digits: int = 3) -> str:
    """``"mean ± std"`` of a ``spread``, for tables: ``pm(spread([1, 2, 3]), 2) == "2.00 ± 1.00"``."""
    return f"{s['mean']:.{digits}f} ± {s['std']:.{digits}f}"


def band(ax, x, curves, *, label=None, color=None, ls="-", alpha=0.2, log=False):
    """Plot the mean of ``curves (seeds, len(x))`` as a line and the min-max over seeds as a shaded band
    (geometric mean on a log axis). Seeds that stop early are NaN-padded; a point is drawn where any seed has one."""
    c = np.asarray(curves, dtype=float)
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # an all-NaN column (every seed stopped) stays NaN
        centre = np.exp(np.nanmean(np.log(c), axis=0)) if log else np.nanmean(c, axis=0)
        lo, hi = np.nanmin(c, axis=0), np.nanmax(c, axis=0)
    (line,) = ax.plot(x, centre, color=color, ls=ls, label=label)
    ax.fill_between(x, lo, hi, color=line.get_color(), alpha=alpha, lw=0)
    if log:
        ax.set_yscale("log")
    return line


def pad(curves, fill=np.nan):
    """Curves of different lengths (a seed stopped early) as one ``(seeds, longest)`` array padded with ``fill``."""
    n = max(len(c) for c in curves)
    return np.array([list(c) + [fill] * (n - len(c)) for c in curves], dtype=float)


# ------------------------------------------------------------------------------------ command line, files


environment = results_io.environment
to_jsonable = results_io.to_jsonable


def save(out_dir: str, name: str, results: dict, figure=None) -> dict:
    """Write ``NAME.json`` (and ``NAME.png`` from a matplotlib figure) into ``out_dir``, each atomically;
    returns the paths."""
    paths = {"json": results_io.write_json(os.path.join(out_dir, f"{name}.json"), results)}
    if figure is not None:
        paths["png"] = results_io.write_figure(os.path.join(out_dir, f"{name}.png"), figure)
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
    parser = argparse.ArgumentParser(
        prog=f"{name}.py", description=(main.__module__ and sys.modules[main.__module__].__doc__ or "").split("\n")[0]
    )
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
