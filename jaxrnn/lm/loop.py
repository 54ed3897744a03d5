"""A training run on disk: ``run_training(config, out)``, the shell around ``jaxrnn.lm.fit``.

``run_training`` reads the text, starts or resumes a run in ``out`` and trains it with ``fit``; an output directory
holds ``checkpoints/<step>/`` (see ``jaxrnn.checkpoint``), ``metrics.jsonl`` (``fit``'s records, one JSON object a
line), ``curves.png`` and the text's ids, ``ids.bin`` + ``ids.json`` (``jaxrnn.data``: encoded on the first start,
mapped and reused by the next). It raises ``DataError``/``ConfigError``/``CheckpointError`` for bad input before any
file is changed; a stop request (``should_stop``, e.g. Ctrl-C in ``jaxrnn train``) saves a checkpoint and stops; a
non-finite loss stops with the last good checkpoint kept.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from jaxrnn.data import DataError, Splits, load_splits
from jaxrnn.lm.config import RunConfig, restore_target, resume_config
from jaxrnn.lm.fitting import DIVERGED_EVALUATIONS, DIVERGED_FACTOR, FitResult, Record, fit, initial_state
from jaxrnn.streams import Streams

if TYPE_CHECKING:
    from jax.sharding import Mesh

    from jaxrnn.checkpoint import CheckpointStore
    from jaxrnn.lm.model import TrainState

__all__ = ["DIVERGED_EVALUATIONS", "DIVERGED_FACTOR", "checkpoint_dir", "metrics_path_of", "run_training"]


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
    should_stop: Callable[..., object] | None = None,
    checkpoint_every: float | None = None,
) -> dict[str, Any]:
    """Train (or continue training) the character model and write checkpoints, metrics and curves to ``out``.

    Args:
      config: the settings; on ``resume`` the checkpoint's settings are used except ``RESUME_MAY_CHANGE``, and
        any name in ``explicit`` (the flags a user typed) that contradicts the checkpoint is an error.
      progress: a tqdm bar on stderr (the ``train`` extra), else a ``log`` line per evaluation.
      log: ``log(text)`` for messages, on process 0 only (default: none); ``jaxrnn train`` prints them.
      mesh: optional ``jax.sharding.Mesh`` with a ``"batch"`` axis (data parallelism, see ``fit``).
      max_seconds: stop after this much training time.
      should_stop: asked before each compiled call; a true value (``jaxrnn train`` gives the signal's number)
        saves a checkpoint at once, without evaluating, and stops (status ``"interrupted"``, ``stop_signal`` the
        value; a SIGTERM or SIGUSR1 stop also skips the plot: a scheduler's kill is near).
      checkpoint_every: also save (without evaluating) once this many seconds have passed since the last save,
        bounding what a hard kill loses.

    Returns:
      A summary dict (``status`` is ``"done"``, ``"interrupted"``, ``"nan"`` for a non-finite loss or
      ``"diverged"`` for a validation loss above ``DIVERGED_FACTOR`` x ``ln V`` at ``DIVERGED_EVALUATIONS``
      evaluations in a row; losses in nats/char; ``records``: the run's metrics records, earlier runs' included).

    Bad input raises ``DataError``, ``ConfigError`` or ``CheckpointError`` before any file is changed; a file that
    cannot be written (a checkpoint, the metrics, the plot) raises ``CheckpointError`` naming it, the cause and the
    last good checkpoint. On resume, an unreadable newest checkpoint is set aside (``<step>.unreadable``) with one
    line through ``log`` and the newest readable one is used.
    """
    import signal

    from jaxrnn.checkpoint import FORMAT as CHECKPOINT_FORMAT
    from jaxrnn.checkpoint import CheckpointStore, write_error
    from jaxrnn.distributed import agree, is_main_process
    from jaxrnn.metrics import append_metrics, truncate_after
    from jaxrnn.lm.model import unroll_method

    clock = time.perf_counter
    started = clock()  # the budget counts reading the data and restoring the checkpoint too
    main = is_main_process()  # with several processes, process 0 alone logs and writes metrics and plots
    say = log if log is not None and main else (lambda text: None)
    config = config.resolved()
    out = os.path.abspath(out)
    if os.path.exists(out) and not os.path.isdir(out):
        raise DataError(f"output directory {out} exists and is not a directory")
    splits = None if resume else _training_splits(config, out, None)  # bad data: refused before a checkpoint
    store = CheckpointStore(checkpoint_dir(out), keep_last=config.keep)
    try:
        latest = store.latest_step()
        meta: dict[str, Any] | None = None
        if resume:
            if latest is None:
                raise DataError(f"nothing to resume: no checkpoint in {store.directory}")

            def readable(step: int) -> dict[str, Any]:  # the whole checkpoint is read and its checksums compared
                found = store.read_meta(step)
                if found.get("format") == CHECKPOINT_FORMAT:
                    store.restore(step, restore_target(found))
                return found

            latest, resumed = store.first_readable(store.steps()[::-1], readable, log=say, set_aside=True)
            meta = resumed
            if resumed.get("format") != CHECKPOINT_FORMAT:
                raise DataError(
                    f"cannot resume from {store.path(latest)}: it was written by jaxrnn 0.1 (checkpoint "
                    f"format {resumed.get('format')}), whose model layout this version reads for sampling "
                    "only; start a new run"
                )
            config = resume_config(config, set(explicit or ()), resumed["config"])
            store.close()
            store = CheckpointStore(checkpoint_dir(out), keep_last=config.keep)
            splits = _training_splits(config, out, resumed)
            if "".join(splits.vocab.chars) != resumed["vocabulary"]:
                raise DataError(
                    f"cannot resume: the vocabulary of {splits.source} ({splits.vocab.size} characters) differs "
                    f"from the checkpoint's ({len(resumed['vocabulary'])} characters)"
                )
        elif latest is not None:
            raise DataError(
                f"{store.directory} already holds checkpoints (latest step {latest}); resume that run, "
                "or choose another output directory"
            )
        assert splits is not None
        train_text = Streams.from_ids(  # too short: refused before any file is changed
            splits.train, config.batch_size, config.seq_length, what=f"the training split of {splits.source}"
        )
        state, train_seconds, elapsed_seconds = None, 0.0, 0.0
        if meta is not None:  # restored into the placed template: each process reads its own shards
            assert latest is not None
            state = store.restore(latest, initial_state(config, splits.vocab.size, mesh=mesh))
            train_seconds = float(meta.get("train_seconds", 0.0))
            elapsed_seconds = float(meta.get("elapsed_seconds", train_seconds))  # a budget spans resumes
        step = latest if meta is not None and latest is not None else 0
        elapsed = lambda: elapsed_seconds + clock() - started
        metrics_path = metrics_path_of(out)
        previous: list[Record] = []
        say(
            f"training a {config.layers}-layer {config.cell.upper()} (hidden {config.hidden_size}, precision "
            f"{config.precision}, method {unroll_method(config.model(splits.vocab.size))}) on {splits.source}: "
            f"{len(splits.train)} training characters, vocabulary "
            f"{splits.vocab.size}, {config.batch_size} streams x {config.seq_length} characters, "
            f"{train_text.chunks_per_epoch} chunks per epoch; "
            + (
                f"step {step} of {config.steps}"
                if config.time_budget is None
                else f"{elapsed() / 60:.1f} of {config.time_budget:g} minutes spent at step {step}"
            )
        )
        run_meta = {
            "vocabulary": "".join(splits.vocab.chars),
            "data": splits.source,
            "data_blake2b": splits.digest,
            "config": dataclasses.asdict(config),
        }
        save_clock = clock if checkpoint_every is not None else (lambda: 0.0)  # a budget's readings stay as they were
        saved = _Saved(store, run_meta, latest if resume else None, elapsed, save_clock)
        written: list[Record] = []
        prepared = False

        @contextlib.contextmanager
        def writing(path: str) -> Iterator[None]:  # a file that cannot be written stops the run in one line
            try:
                yield
            except OSError as e:
                raise write_error(path, e, None if saved.step is None else store.path(saved.step)) from None

        def prepare_metrics() -> None:
            """Once fit has accepted the data: drop a resumed run's records after its checkpoint, or keep aside
            a file that a run without checkpoints left."""
            nonlocal prepared
            if main and not prepared:
                with writing(metrics_path):
                    if resume:
                        previous.extend(truncate_after(metrics_path, step))
                    elif os.path.exists(metrics_path):
                        os.replace(metrics_path, metrics_path + ".old")
            prepared = True

        def write(state: TrainState, record: Record) -> None:
            if "val_loss" in record:
                if record["step"] == saved.step:  # a resumed run with nothing left to do: saved and written
                    return
                saved(state, record)
            elif checkpoint_every is not None and agree([save_clock() - saved.at >= checkpoint_every])[0]:
                saved(state, {**record, "val_loss": None})  # on the clock: no evaluation
            if main:
                prepare_metrics()
                with writing(metrics_path):
                    append_metrics(metrics_path, record)
                written.append(record)

        display = _Display(progress and main, config.steps if config.time_budget is None else None, step, say)
        try:
            result = fit(
                config,
                splits,
                state=state,
                mesh=mesh,
                should_stop=should_stop,
                callbacks=(write, display),
                max_seconds=max_seconds,
                train_seconds=train_seconds,
                elapsed_seconds=elapsed_seconds,
                clock=clock,
                started=started,
            )
        finally:
            display.close()
        if result.status == "stopped" and saved.step != int(result.state.step):  # save first: no evaluation
            record = {"step": int(result.state.step), "val_loss": None, "train_seconds": result.train_seconds}
            saved(result.state, record)
        prepare_metrics()
        _report_failure(result, saved, say)
    finally:
        store.close()
    records = previous + written
    if main and result.stop not in (signal.SIGTERM, signal.SIGUSR1):  # a scheduler's kill is near: no plot
        png = os.path.join(out, "curves.png")
        with writing(png):
            _plot(records, png, splits.source)
    return _summary(result, saved.step, out, splits, config, records)


class _Saved:
    """Saves a checkpoint at each evaluation: ``saved(state, record)``; ``step`` is the latest one saved. The
    checkpoint records the time spent when it is written, which a resumed budget counts from."""

    def __init__(
        self,
        store: CheckpointStore,
        run_meta: dict[str, Any],
        step: int | None,
        elapsed: Callable[[], float],
        clock: Callable[[], float],
    ):
        self.store, self.run_meta, self.step, self.elapsed, self.clock = store, run_meta, step, elapsed, clock
        self.at = clock()  # when the last checkpoint was saved (or the run started)

    def __call__(self, state: TrainState, record: Record) -> None:
        meta = {**self.run_meta, "train_seconds": record["train_seconds"], "elapsed_seconds": self.elapsed()}
        self.store.save(record["step"], state, meta, val_loss=record["val_loss"])
        self.step, self.at = record["step"], self.clock()


def _report_failure(result: FitResult, saved: _Saved, say: Callable[[str], object]) -> None:
    """A non-finite loss: save the last good state if it has no checkpoint; say where the run stopped."""
    hint = "(try a smaller learning rate or clipping threshold)"
    if result.status == "nan":
        step = int(result.state.step)
        if saved.step != step:
            saved(
                result.state,
                {"step": step, "val_loss": result.val_loss, "train_seconds": result.train_seconds},
            )
        assert saved.step is not None
        say(f"{result.reason}; stopped. Last good checkpoint: {saved.store.path(saved.step)} {hint}")
    elif result.status == "diverged":
        best = saved.store.best_step()
        assert best is not None  # every evaluation counted saved a checkpoint with its loss
        say(f"{result.reason}; stopped. Best checkpoint: {saved.store.path(best)} {hint}")


def _summary(
    result: FitResult, saved_step: int | None, out: str, splits: Splits, config: RunConfig, records: list[Record]
) -> dict[str, Any]:
    """``run_training``'s summary of a ``fit`` result."""
    history = result.history
    val_losses = [r["val_loss"] for r in history if "val_loss" in r]
    tests = [r for r in history if "test_loss" in r]
    summary: dict[str, Any] = {
        "status": "interrupted" if result.status == "stopped" else result.status,
        "stop_signal": result.stop,
        "step": int(result.state.step),
        "saved_step": saved_step,
        "out": out,
        "train_seconds": result.train_seconds,
        "elapsed_seconds": result.elapsed_seconds,
        "vocab_size": splits.vocab.size,
        "val_loss": None if result.status == "nan" else result.val_loss,
        "records": records,
    }
    if tests:
        summary.update(test_loss=tests[-1]["test_loss"], test_bpc=tests[-1]["test_bpc"])
        summary["test_tokens"] = tests[-1]["test_tokens"]
    if val_losses:
        summary["val_bpc"] = val_losses[-1] / math.log(2)
        summary["val_tokens"] = next(r["val_tokens"] for r in history if "val_tokens" in r)
    summary["params"], summary["vocab"], summary["precision"] = result.state.params, splits.vocab, config.precision
    return summary


def _training_splits(config: RunConfig, out: str, meta: dict[str, Any] | None) -> Splits:
    """The run's text as ids mapped from ``out/ids.bin``; a resumed run refuses its text if it has changed since
    the checkpoint (another ``--data`` is checked by its vocabulary only)."""
    source = os.path.abspath(config.data) if config.data is not None else f"corpus:{config.corpus}"
    digest = meta.get("data_blake2b") if meta is not None and meta.get("data") == source else None
    return load_splits(config.corpus, path=config.data, cache_dir=out, digest=digest)


class _Display:
    """Progress as a callback: a tqdm bar on stderr, or (without tqdm, the ``train`` extra) a ``say`` line per
    evaluation; nothing when disabled."""

    def __init__(self, enabled: bool, total: int | None, initial: int, say: Callable[[str], object]):
        self.enabled, self.step, self.say, self.val_loss = enabled, initial, say, None
        self.bar = None
        if enabled:
            try:
                import sys

                from tqdm import tqdm

                self.bar = tqdm(total=total, initial=initial, unit="step", file=sys.stderr, dynamic_ncols=True)
            except ImportError:
                pass

    def __call__(self, state: TrainState, record: Record) -> None:
        if not (self.enabled and "train_loss" in record):
            return
        self.val_loss = record.get("val_loss", self.val_loss)
        if self.bar is None:
            if "val_loss" in record:
                self.say(
                    f"step {record['step']}: train {record['train_loss']:.3f}, validation {record['val_loss']:.3f} "
                    f"nats/char, {record['chars_per_sec']:.0f} chars/s"
                )
            return
        self.bar.set_postfix(
            loss=f"{record['train_loss']:.3f}",
            val="-" if self.val_loss is None else f"{self.val_loss:.3f}",
            chars_s=f"{record['chars_per_sec']:.0f}",
            refresh=False,
        )
        self.bar.update(record["step"] - self.step)
        self.step = record["step"]

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _plot(records: list[Record], png: str, title: str) -> None:
    from jaxrnn.metrics import plot_curves

    try:
        plot_curves(records, png, title=title)
    except ImportError:  # matplotlib is optional ("train" extra); the JSONL has the numbers
        pass
