"""The language model's training loop: data, checkpoints, evaluation, metrics and plots of one run.

``run_training(config, out)`` trains (or resumes) and returns a summary; an output directory holds
``checkpoints/<step>/`` (see ``jaxrnn.checkpoint``), ``metrics.jsonl`` and ``curves.png``. It raises
``DataError``/``ConfigError``/``CheckpointError`` for bad input before any file is changed; Ctrl-C, SIGTERM and
SIGUSR1 save a checkpoint and stop (``jaxrnn.lm.preemption``); a file that cannot be written stops with
``CheckpointError``; a non-finite loss stops with the last good checkpoint kept.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import math
import os
import sys
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import numpy as np

from jaxrnn.data import DataError, Vocabulary, split_ids
from jaxrnn.lm.config import RunConfig, load_training_text, resume_config

if TYPE_CHECKING:
    from jax.sharding import Mesh

    from jaxrnn.lm.model import TrainState
    from jaxrnn.typing import Array


DIVERGED_FACTOR, DIVERGED_EVALUATIONS = 2.0, 3
"""A run stops as diverged when its validation loss exceeds ``DIVERGED_FACTOR`` times that of uniform guessing,
``ln V``, at this many evaluations in a row (a fresh model starts near ``ln V``)."""


def checkpoint_dir(out: str) -> str:
    """Where the checkpoints of the run in ``out`` live."""
    return os.path.join(out, "checkpoints")


def metrics_path_of(out: str) -> str:
    """The metrics file of the run in ``out``: one JSON record per line."""
    return os.path.join(out, "metrics.jsonl")


def run_training(
    config: RunConfig,
    out: str,
    *,
    resume: bool = False,
    explicit: set[str] | None = None,
    progress: bool = True,
    log: Callable[[str], object] | None = None,
    mesh: Mesh | None = None,
    max_seconds: float | None = None,
    checkpoint_every: float | None = None,
) -> dict[str, Any]:
    """Train (or continue training) the character model and write checkpoints, metrics and curves to ``out``.

    Args:
      config: the settings; on ``resume`` the checkpoint's settings are used except ``RESUME_MAY_CHANGE``, and
        any name in ``explicit`` (the flags a user typed) that contradicts the checkpoint is an error.
      mesh: optional ``jax.sharding.Mesh`` with a ``"batch"`` axis; batches and state pass through
        ``jaxrnn.lm.place_batch`` / ``place_state`` with it (data parallelism).
      log: ``log(text)`` for messages (default: stderr); max_seconds: stop after this much training time.
      checkpoint_every: also save (without evaluating) once this many seconds have passed since the last save,
        bounding what a hard kill loses.
    Returns: a summary dict (``status`` is ``"done"``, ``"interrupted"`` (``stop_signal`` says by which signal),
      ``"nan"`` for a non-finite loss or
      ``"diverged"`` for a validation loss above ``DIVERGED_FACTOR`` x ``ln V`` at ``DIVERGED_EVALUATIONS``
      evaluations in a row; losses in nats/char).
    Raises: ``DataError`` / ``ConfigError`` / ``CheckpointError`` for bad input, before any file is changed;
      ``CheckpointError`` naming the file, the cause and the last good checkpoint when a write fails.
    """
    import jax

    from jaxrnn.checkpoint import FORMAT as CHECKPOINT_FORMAT
    from jaxrnn.checkpoint import CheckpointStore, write_error
    from jaxrnn.distributed import agree, is_main_process
    from jaxrnn.lm.generate import restore_target
    from jaxrnn.lm.model import evaluate, init_train_state, place_batch, place_state
    from jaxrnn.lm.preemption import preempted, stop_requests
    from jaxrnn.metrics import append_metrics, plot_curves, truncate_after
    from jaxrnn.streams import Streams, evaluation_streams

    clock = time.perf_counter()
    main = is_main_process()  # with several processes, process 0 alone prints and writes metrics and plots
    log = (log or (lambda text: print(text, file=sys.stderr, flush=True))) if main else (lambda text: None)
    explicit = set(explicit or ())
    config = config.resolved()
    out = os.path.abspath(out)
    saved_step: int | None = None

    @contextlib.contextmanager
    def writing(path: str) -> Iterator[None]:  # a file that cannot be written stops the run in one line
        try:
            yield
        except OSError as e:
            raise write_error(path, e, None if saved_step is None else store.path(saved_step)) from None

    def write_metrics(record: dict[str, Any]) -> None:
        if main:
            with writing(metrics_path_of(out)):
                append_metrics(metrics_path_of(out), record)

    if os.path.exists(out) and not os.path.isdir(out):
        raise DataError(f"output directory {out} exists and is not a directory")
    if not resume:
        text, source = load_training_text(config)  # bad data is refused before anything is written
    store = CheckpointStore(checkpoint_dir(out), keep_last=config.keep)
    latest = store.latest_step()
    meta = None
    if resume:
        if latest is None:
            raise DataError(f"nothing to resume: no checkpoint in {store.directory}")

        def readable(step: int) -> dict[str, Any]:  # the whole checkpoint is read and its checksums compared
            meta = store.read_meta(step)
            if meta.get("format") == CHECKPOINT_FORMAT:
                store.restore(step, restore_target(meta))
            return meta

        latest, meta = store.first_readable(store.steps()[::-1], readable, log=log, set_aside=True)
        if meta.get("format") != CHECKPOINT_FORMAT:
            raise DataError(
                f"cannot resume from {store.path(latest)}: it was written by jaxrnn 0.1 (checkpoint "
                f"format {meta.get('format')}), whose model layout this version reads for sampling "
                "only; start a new run"
            )
        config = resume_config(config, explicit, meta["config"])
        store.close()
        store = CheckpointStore(checkpoint_dir(out), keep_last=config.keep)
        text, source = load_training_text(config)
        if "".join(Vocabulary.from_text(text).chars) != meta["vocabulary"]:
            raise DataError(
                f"cannot resume: the vocabulary of {source} ({len(set(text))} characters) differs from "
                f"the checkpoint's ({len(meta['vocabulary'])} characters)"
            )
    elif latest is not None:
        raise DataError(
            f"{store.directory} already holds checkpoints (latest step {latest}); resume that run, "
            "or choose another output directory"
        )
    vocab = Vocabulary.from_text(text)

    model_config = config.model(vocab.size)
    train_ids, val_ids, test_ids = split_ids(vocab.encode(text))
    B, T, K = config.batch_size, config.seq_length, config.steps_per_call
    train = Streams.from_ids(train_ids, B, T, what="the training text (90% of the file)")
    val = evaluation_streams(val_ids, B, T, what="the validation text (5% of the file)")
    test = evaluation_streams(test_ids, B, T, what="the test text (5% of the file)")
    optimizer = config.make_optimizer()
    state = place_state(init_train_state(jax.random.PRNGKey(config.seed), model_config, optimizer, B), mesh)
    if meta is not None:  # restored into the placed template: each process reads its own shards
        assert latest is not None  # resuming needs a checkpoint: refused above otherwise
        state = store.restore(latest, state)
    val_xs, val_ys = place_batch(val.epoch(), mesh)
    train_chunks = _train_chunks(_optimizer_settings(config), K, model_config.dropout, config.compute_dtype)
    metrics_path = metrics_path_of(out)
    step = int(state.step)
    train_seconds = float(meta.get("train_seconds", 0.0)) if meta is not None else 0.0
    clock -= float(meta.get("elapsed_seconds", train_seconds)) if meta is not None else 0.0  # a budget spans resumes
    elapsed = lambda: time.perf_counter() - clock
    budget = None if config.time_budget is None else 60.0 * config.time_budget
    with writing(metrics_path):
        if resume and main:
            truncate_after(metrics_path, step)
        elif main and os.path.exists(metrics_path):  # a run without checkpoints left it; keep it aside
            os.replace(metrics_path, metrics_path + ".old")
    saved_step = latest if resume else None
    clock_saves = (lambda: time.perf_counter()) if checkpoint_every is not None else (lambda: 0.0)
    saved_at = clock_saves()
    run_meta = {"vocabulary": "".join(vocab.chars), "data": source, "config": dataclasses.asdict(config)}

    def save(state, val_loss):
        nonlocal saved_step, saved_at
        store.save(
            int(state.step),
            state,
            {**run_meta, "train_seconds": train_seconds, "elapsed_seconds": elapsed()},
            val_loss=val_loss,
        )
        saved_step, saved_at = int(state.step), clock_saves()

    signals = contextlib.ExitStack()
    interrupt = signals.enter_context(stop_requests())
    status, val_loss, above = "done", None, 0
    log(
        f"training a {config.layers}-layer {config.cell.upper()} (hidden {config.hidden_size}, precision "
        f"{config.precision}) on {source}: "
        f"{len(train_ids)} training characters, vocabulary {vocab.size}, {B} streams x {T} characters, "
        f"{train.chunks_per_epoch} chunks per epoch; "
        + (
            f"step {step} of {config.steps}"
            if budget is None
            else f"{elapsed() / 60:.1f} of {config.time_budget:g} minutes spent at step {step}"
        )
    )
    bar = _progress_bar(progress and main, config.steps if budget is None else None, step)
    stop_requested, stop_signal = False, 0
    try:
        while True:
            due = checkpoint_every is not None and clock_saves() - saved_at >= checkpoint_every
            spent, trained, stop_signal, due = agree([elapsed(), train_seconds, interrupt.signum or 0, due])
            stop_requested = bool(stop_signal)
            if stop_requested or (step >= config.steps if budget is None else spent >= budget):
                break
            if max_seconds is not None and trained >= max_seconds:
                break
            next_eval = (step // config.eval_every + 1) * config.eval_every
            n = min(K, next_eval - step, config.steps - step if budget is None else K)
            xs, ys, reset = train.chunks(step, K)
            batch = place_batch((xs, ys, reset, np.arange(K) < n), mesh)
            if config.follows_budget:
                learning_rate = config.learning_rate_at(spent / budget)
                state = _with_learning_rate(state, learning_rate)
            t0 = time.perf_counter()
            new_state, call_losses = train_chunks(state, *batch)
            losses = np.asarray(call_losses)[:n]
            dt = time.perf_counter() - t0
            if not np.all(np.isfinite(losses)):
                bad = step + int(np.argmin(np.isfinite(losses))) + 1
                if saved_step is None or saved_step < step:
                    save(state, float(evaluate(state.params, val_xs, val_ys, config.compute_dtype)))
                status = "nan"
                assert saved_step is not None  # save() just above sets it when there was none
                log(
                    f"loss became {losses[~np.isfinite(losses)][0]} at step {bad}; stopped. Last good checkpoint: "
                    f"{store.path(saved_step)} (try a smaller learning rate or clipping threshold)"
                )
                break
            state, step, train_seconds = new_state, step + n, train_seconds + dt
            record = {
                "step": step,
                "train_loss": float(np.mean(losses)),
                "chars_per_sec": n * B * T / dt,
                "train_seconds": train_seconds,
                "elapsed_seconds": elapsed(),
            }
            if config.follows_budget:
                record["learning_rate"] = learning_rate
            if step % config.eval_every == 0 or (budget is None and step == config.steps):
                val_loss = float(evaluate(state.params, val_xs, val_ys, config.compute_dtype))
                record.update(val_loss=val_loss, val_bpc=val_loss / math.log(2))
                save(state, val_loss)
                above = above + 1 if val_loss > DIVERGED_FACTOR * math.log(vocab.size) else 0
            elif due:  # on the clock: no evaluation
                save(state, None)
            write_metrics(record)
            if above >= DIVERGED_EVALUATIONS:
                status, best = "diverged", store.best_step()
                assert best is not None  # every evaluation counted above saved a checkpoint with its loss
                log(
                    f"validation loss {val_loss:.4g} nats/char has been above {DIVERGED_FACTOR:g} x ln V = "
                    f"{DIVERGED_FACTOR * math.log(vocab.size):.3f} (worse than guessing) for {above} evaluations; "
                    f"stopped. Best checkpoint: {store.path(best)} (try a smaller learning rate or clipping threshold)"
                )
                break
            if bar is None and progress and "val_loss" in record:  # no tqdm: one line per evaluation
                log(
                    f"step {step}: train {record['train_loss']:.3f}, validation {val_loss:.3f} nats/char, "
                    f"{record['chars_per_sec']:.0f} chars/s"
                )
            if bar is not None:
                bar.set_postfix(
                    loss=f"{record['train_loss']:.3f}",
                    val="-" if val_loss is None else f"{val_loss:.3f}",
                    chars_s=f"{record['chars_per_sec']:.0f}",
                    refresh=False,
                )
                bar.update(n)
        if stop_requested and saved_step != step:  # save first; no evaluation delays it
            save(state, None)
        elif status == "done" and not stop_requested and (saved_step != step or val_loss is None):
            val_loss = float(evaluate(state.params, val_xs, val_ys, config.compute_dtype))
            if saved_step != step:
                save(state, val_loss)
                write_metrics(
                    {
                        "step": step,
                        "val_loss": val_loss,
                        "val_bpc": val_loss / math.log(2),
                        "train_seconds": train_seconds,
                        "elapsed_seconds": elapsed(),
                    }
                )
        if stop_requested:
            status = "interrupted"
    finally:
        if bar is not None:
            bar.close()
        signals.close()
        store.close()
    plot = plot_curves if not preempted(int(stop_signal)) else None  # a scheduler's kill is near: no plot
    with writing(os.path.join(out, "curves.png")):
        records = _safe_plot(plot, metrics_path, os.path.join(out, "curves.png"), source) if main else []
    summary = {
        "status": status,
        "stop_signal": int(stop_signal),
        "step": int(state.step),
        "saved_step": saved_step,
        "out": out,
        "train_seconds": train_seconds,
        "elapsed_seconds": elapsed(),
        "vocab_size": vocab.size,
        "val_loss": None if status == "nan" else val_loss,
        "records": records,
    }
    if status == "done":
        test_loss = float(evaluate(state.params, *place_batch(test.epoch(), mesh), config.compute_dtype))
        summary.update(test_loss=test_loss, test_bpc=test_loss / math.log(2))
        write_metrics({"step": step, "test_loss": test_loss, "test_bpc": test_loss / math.log(2)})
    if val_loss is not None:
        summary["val_bpc"] = val_loss / math.log(2)
    summary["params"], summary["vocab"], summary["precision"] = state.params, vocab, config.precision
    return summary


def _optimizer_settings(config: RunConfig) -> tuple[Any, ...]:
    """The settings that define the optimiser (the decay length only when the schedule decays)."""
    decay = config.decay_steps if config.lr_schedule != "constant" else None
    budget = 1.0 if config.follows_budget else None  # the budget's length does not enter the compiled step
    return (config.optimizer, config.learning_rate, config.lr_schedule, decay, budget, config.clip, config.clip_mode)


def _with_learning_rate(state: TrainState, learning_rate: float) -> TrainState:
    """``state`` with the learning rate of an ``optax.inject_hyperparams`` optimiser set to ``learning_rate``,
    placed where the old value was (replicated under a mesh)."""
    import jax

    hyper = state.opt_state.hyperparams
    old = hyper["learning_rate"]
    new = jax.device_put(np.asarray(learning_rate, old.dtype), old.sharding)
    return state._replace(opt_state=state.opt_state._replace(hyperparams={**hyper, "learning_rate": new}))


@functools.lru_cache(maxsize=8)
def _train_chunks(
    optimizer_settings: tuple[Any, ...], updates_per_call: int, dropout: float, compute_dtype: Any = None
) -> Callable[[TrainState, Array, Array, Array, Array], tuple[TrainState, Array]]:
    """``make_train_chunks`` for these settings, built once per process, so that runs with the same optimiser
    (a resumed run, the models of an experiment) reuse one compiled function."""
    from jaxrnn.lm.model import make_train_chunks

    name, learning_rate, schedule, decay, budget, clip, clip_mode = optimizer_settings
    config = RunConfig(
        optimizer=name,
        learning_rate=learning_rate,
        lr_schedule=schedule,
        decay_steps=decay,
        time_budget=budget,
        clip=clip,
        clip_mode=clip_mode,
    )
    return make_train_chunks(
        config.resolved().make_optimizer(), updates_per_call, dropout=dropout, compute_dtype=compute_dtype
    )


def _progress_bar(enabled: bool, total: int | None, initial: int) -> Any:
    """A tqdm bar on stderr, or ``None`` when disabled or tqdm (the ``train`` extra) is not installed."""
    if not enabled:
        return None
    try:
        from tqdm import tqdm
    except ImportError:
        return None
    return tqdm(total=total, initial=initial, unit="step", file=sys.stderr, dynamic_ncols=True)


def _safe_plot(plot: Callable[..., None] | None, metrics_path: str, png: str, title: str) -> list[dict[str, Any]]:
    from jaxrnn.metrics import read_metrics

    records = read_metrics(metrics_path)
    if plot is None:
        return records
    try:
        plot(records, png, title=title)
    except ImportError:  # matplotlib is optional ("train" extra); the JSONL has the numbers
        pass
    return records
