"""Shared pieces of the experiments: a scan-compiled training loop, results over seeds, figures, files and the
command line (the synthetic tasks and the final-state model are in ``experiments.tasks``).

Shapes: ``T`` time, ``B`` batch, ``D`` input, ``H`` hidden, ``V`` outputs. Inputs are time-major ``(T, B, ...)``.
"""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import json
import math
import os
import sys
import time
import warnings

import jax
import optax
import numpy as np

import jaxrnn
import jaxrnn.training
from jaxrnn import results as results_io

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


# ---------------------------------------------------------------------------------------- finished runs


class Runs:
    """The results of single runs kept as they finish, one JSON line each, so that an interrupted sweep resumes
    where it stopped: ``runs(key, fn)`` returns the stored result of ``key`` or runs ``fn()`` and stores it.

    A run is known by ``key`` (a dict: seed, cell, length...) together with the experiment's config less its seed
    list (adding seeds reuses the others) and jaxrnn's version. Results come back as JSON gives them (lists, not
    arrays), whether stored or fresh. ``Runs()`` (no path) stores nothing.
    """

    def __init__(self, path: str | None = None, config=None):
        self.path = path
        context = to_jsonable(dataclasses.asdict(config)) if dataclasses.is_dataclass(config) else {}
        self.context = {k: v for k, v in context.items() if k not in ("seeds", "train_seeds")}
        self.done: dict[str, object] = {}
        if path is not None and os.path.exists(path):
            with open(path) as f:
                text = f.read()
            if text and not text.endswith("\n"):  # a line cut short by a kill: the next one starts on its own line
                results_io.append_line(path, "")
            for line in text.splitlines():
                try:
                    entry = json.loads(line)
                except json.JSONDecodeError:  # the line cut short: that run runs again
                    continue
                self.done[entry["key"]] = entry["result"]

    def _key(self, key: dict) -> str:
        return json.dumps(
            {"run": to_jsonable(key), "config": self.context, "jaxrnn": jaxrnn.__version__}, sort_keys=True
        )

    def __call__(self, key: dict, fn):
        k = self._key(key)
        if k not in self.done:
            self.done[k] = json.loads(json.dumps(to_jsonable(fn())))
            if self.path is not None:
                results_io.append_line(self.path, json.dumps({"key": k, "result": self.done[k]}))
        return self.done[k]


# ------------------------------------------------------------------------------------ command line, files


environment = results_io.environment
to_jsonable = results_io.to_jsonable


def neighbour_rate(rate: float, up: bool) -> float:
    """The next learning rate on the 1-2-5 grid above (``up``) or below ``rate``: 5e-3 -> 1e-2, 1e-3 -> 5e-4."""
    exponent = math.floor(math.log10(rate) + 1e-9)
    mantissa = rate / 10**exponent
    steps = {1: (0.5, 2), 2: (1, 5), 5: (2, 10)}.get(round(mantissa))
    if steps is None or abs(mantissa - round(mantissa)) > 1e-6:
        raise ValueError(f"a learning-rate search extends grids of 1, 2 and 5 times a power of ten, got {rate:g}")
    return float(f"{steps[int(up)] * 10**exponent:.3g}")


def search_rates(rates, score, *, extend: int = 3) -> tuple[list, float]:
    """Scores every rate of ``rates`` (``score(rate) -> dict`` with ``"validation_loss"``), then, while the best is at
    an edge of those tried, the next rate past that edge on the 1-2-5 grid, up to ``extend`` more: a search whose
    best rate is its largest or smallest has not found the best. Returns the runs in the order tried and the rate
    with the lowest validation loss."""
    tried = {rate: score(rate) for rate in rates}
    for _ in range(extend):
        best = min(tried, key=lambda r: tried[r]["validation_loss"])
        if min(tried) < best < max(tried):
            break
        nxt = neighbour_rate(best, up=best == max(tried))
        tried[nxt] = score(nxt)
    return list(tried.values()), min(tried, key=lambda r: tried[r]["validation_loss"])


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


DEVICES = {"cpu": "cpu", "gpu": "cuda", "auto": None}


class UsageError(Exception):
    """A bad command-line value: reported as one line on stderr, exit status 2."""


def select_device(device: str) -> None:
    """Pick JAX's platform before JAX touches a device (scripts decide, never the library)."""
    if DEVICES[device] is not None:
        jax.config.update("jax_platforms", DEVICES[device])
    try:
        jax.devices()
    except Exception:  # RuntimeError, or an AssertionError when no plugin for the platform is installed
        raise UsageError(f"--device {device}: JAX has no such backend on this machine") from None


def with_seeds(config, seeds: str):
    """``config`` with ``--seeds 0,1,2`` in its ``seeds`` (or, for one seed, its ``seed``) field."""
    try:
        values = tuple(int(v) for v in seeds.split(","))
    except ValueError:
        raise UsageError(f"--seeds {seeds!r}: expected integers separated by commas, e.g. 0,1,2") from None
    names = {f.name for f in dataclasses.fields(config)}
    if "seeds" in names:
        return dataclasses.replace(config, seeds=values)
    if "seed" in names and len(values) == 1:
        return dataclasses.replace(config, seed=values[0])
    raise UsageError(f"--seeds {seeds}: this experiment takes {'one seed' if 'seed' in names else 'no seeds'}")


def _make_folder(out: str) -> None:
    if os.path.exists(out) and not os.path.isdir(out):
        raise UsageError(f"--out {out!r} exists and is not a folder")
    try:
        os.makedirs(out, exist_ok=True)
    except OSError as e:
        raise UsageError(f"cannot create --out folder {out!r}: {e.strerror}") from None


def cli(
    name: str,
    presets: dict,
    main,
    make_figure=None,
    argv=None,
    *,
    default: str = "cpu",
    fields: tuple = (),
    errors: tuple = (),
    after=None,
) -> int:
    """The command line of every experiment: ``python -m experiments.NAME [--preset P] [--out DIR] [--seeds 0,1]
    [--device cpu|gpu|auto]``. Runs ``main(config)`` and writes ``NAME.json`` (and ``NAME.png`` from
    ``make_figure(results)``) to ``--out``.

    Args:
      fields: names of config fields that may be set on the command line (``--hidden-size 64``).
      errors: exception types of ``main`` that mean bad input (a missing file): one line, exit status 2.
      after: ``after(results, out)`` once the files are written (a page of its own beside them).

    When ``main`` takes ``progress``, it is given ``progress(partial_results)``, which writes the JSON so far; when
    it takes ``runs``, a ``Runs`` kept in ``NAME.runs.jsonl`` beside the results (``--fresh`` starts it over).
    Bad arguments: one line on stderr, exit status 2.
    """
    module = sys.modules.get(main.__module__)
    parser = argparse.ArgumentParser(
        prog=f"python -m experiments.{name}", description=((module and module.__doc__) or "").split("\n")[0]
    )
    parser.add_argument("--preset", default=default, help=f"one of {sorted(presets)} (default: {default})")
    parser.add_argument("--out", default=os.path.join("experiments", "results"), help="results folder")
    parser.add_argument("--seeds", default=None, help="seeds in place of the preset's, e.g. 0,1,2")
    parser.add_argument("--device", choices=sorted(DEVICES), default="cpu", help="JAX platform (default: cpu)")
    parser.add_argument("--fresh", action="store_true", help="run every run again, ignoring the finished ones kept")
    config_fields = {f.name: f for f in dataclasses.fields(next(iter(presets.values())))} if fields else {}
    for field in fields:
        kind = config_fields[field].type
        parser.add_argument(
            "--" + field.replace("_", "-"),
            type={"int": int, "float": float}.get(kind if isinstance(kind, str) else kind.__name__, str),
            default=None,
            help="(the preset's value if omitted)",
        )
    args = parser.parse_args(argv)
    try:
        if args.preset not in presets:
            raise UsageError(f"unknown preset {args.preset!r}; expected one of {sorted(presets)}")
        config = presets[args.preset]
        if args.seeds is not None:
            config = with_seeds(config, args.seeds)
        overrides = {f: getattr(args, f) for f in fields if getattr(args, f) is not None}
        if overrides:
            config = dataclasses.replace(config, **overrides)
        _make_folder(args.out)
        select_device(args.device)
        command = " ".join([f"python -m experiments.{name}", *(sys.argv[1:] if argv is None else argv)])
        kwargs = {}
        if "progress" in inspect.signature(main).parameters:
            kwargs["progress"] = lambda partial: save(args.out, name, partial | {"command": command, "partial": True})
        if "runs" in inspect.signature(main).parameters:
            kept = os.path.join(args.out, f"{name}.runs.jsonl")
            if args.fresh and os.path.exists(kept):
                os.remove(kept)
            kwargs["runs"] = Runs(kept, config)
        start = time.perf_counter()
        try:
            results = main(config, **kwargs)
        except errors as error:
            raise UsageError(str(error)) from None
    except UsageError as error:
        print(f"{name}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    results["runtime_s"] = round(time.perf_counter() - start, 1)
    results["command"] = command
    results["environment"] = environment()
    if "progress" in kwargs:
        results["partial"] = False
    paths = save(args.out, name, results, make_figure(results) if make_figure is not None else None)
    print(json.dumps(summary(results), indent=1))
    print(f"wrote {', '.join(paths.values())} in {results['runtime_s']} s")
    if after is not None:
        after(results, args.out)
    return 0


def summary(results: dict) -> dict:
    """The scalar entries of ``results["summary"]`` (what the README quotes)."""
    return to_jsonable(results.get("summary", {}))
