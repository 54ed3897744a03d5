"""Training the language model as a function: ``fit(config, data) -> FitResult``, in memory.

``fit`` reads no file, writes none, prints nothing and installs no signal handler. It trains ``K`` updates per
compiled call, evaluates every ``eval_every`` updates, and stops at ``steps`` updates or when the time budget is
spent, at a non-finite loss, at a validation loss that stays worse than guessing, or when the caller asks
(``should_stop()`` or a callback that returns true). ``jaxrnn.lm.run_training`` is the shell around it that reads
the text, restores and saves checkpoints, writes ``metrics.jsonl`` and the curves, and draws progress.

The history is a list of records, the lines of ``metrics.jsonl``:

- after each compiled call: ``step``, ``train_loss`` (nats/char, mean over the call's updates),
  ``chars_per_sec``, ``train_seconds`` (compiled calls only), ``elapsed_seconds`` (wall clock since the start
  at the end of the call, evaluation and compilation included, earlier runs of a resumed one too),
  ``learning_rate`` when it follows a time budget, and ``val_loss``, ``val_bpc``, ``val_tokens`` at an evaluation;
- where a run that did not diverge or fail ends between evaluations: ``step``, ``val_loss``, ``val_bpc``,
  ``val_tokens``, ``train_seconds``, ``elapsed_seconds``;
- where it ran to its end (``status == "done"``): ``step``, ``test_loss``, ``test_bpc``, ``test_tokens``.

``val_tokens``/``test_tokens``: the characters an evaluation reads, all of a held-out split up to
``jaxrnn.streams.EVAL_TOKENS``, else a fixed, evenly spaced sample of that many.
"""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from jaxrnn.data import DataError, Splits, load_splits
from jaxrnn.distributed import agree
from jaxrnn.lm.config import Plan, RunConfig
from jaxrnn import streams
from jaxrnn.streams import Streams, evaluation_streams

if TYPE_CHECKING:
    import optax
    from jax.sharding import Mesh

    from jaxrnn.lm.model import TrainState
    from jaxrnn.typing import Array, DTypeLike

DIVERGED_FACTOR, DIVERGED_EVALUATIONS = 2.0, 3
"""A run stops as diverged when its validation loss exceeds ``DIVERGED_FACTOR`` times that of uniform guessing,
``ln V``, at this many evaluations in a row (a fresh model starts near ``ln V``)."""

Status = Literal["done", "stopped", "nan", "diverged"]
"""How a ``fit`` call ended (see ``FitResult.status``)."""

Record = dict[str, Any]
"""One line of the history: a JSON-ready dict whose keys the module docstring lists."""

Callback = Callable[["TrainState", Record], object]
"""``callback(state, record)`` after each record, ``state`` the state the record describes; a true return value
asks the run to stop before its next compiled call (the state and history so far are kept and returned)."""


@dataclass(frozen=True)
class FitResult:
    """What ``fit`` returns.

    Attributes:
      state: the ``TrainState`` reached; after a non-finite loss, the last state whose losses were finite.
      history: the records of this call, in order (see the module docstring).
      status: ``"done"`` (``steps`` reached, the budget or ``max_seconds`` spent), ``"stopped"`` (the caller
        asked), ``"nan"`` (a non-finite loss) or ``"diverged"`` (validation loss above ``DIVERGED_FACTOR`` x
        ``ln V`` at ``DIVERGED_EVALUATIONS`` evaluations in a row).
      val_loss: validation loss of ``state`` in nats/char (``None`` if it was never evaluated).
      train_seconds: training time spent, the given time included; pass it back to continue a budget.
      elapsed_seconds: wall-clock time spent, the given time included.
      reason: why a ``"nan"`` or ``"diverged"`` run stopped, one line; ``""`` otherwise.
      stop: what stopped a ``"stopped"`` run: ``should_stop``'s integer answer (process 0's), 1 for another true
        answer or a callback; 0 when the run was not stopped.
    """

    state: TrainState
    history: list[dict[str, Any]]
    status: Literal["done", "stopped", "nan", "diverged"]
    val_loss: float | None
    train_seconds: float
    elapsed_seconds: float
    reason: str = ""
    stop: int = 0


def initial_state(config: RunConfig, vocab_size: int, *, mesh: Mesh | None = None) -> TrainState:
    """The fresh ``TrainState`` of a config (``resolved()`` here; parameters from ``config.seed``), placed on the
    device(s) of ``mesh``: what ``fit`` starts from, and the template a checkpoint is restored into."""
    return _initial_state(config.plan(vocab_size), mesh)


def _initial_state(plan: Plan, mesh: Mesh | None) -> TrainState:
    """``initial_state`` of a ``Plan``: the one place that builds a fresh state."""
    import jax

    from jaxrnn.lm.model import init_train_state, place_state

    key = jax.random.PRNGKey(plan.config.seed)
    state = init_train_state(key, plan.model, plan.optimizer, plan.config.batch_size)
    if mesh is None:  # committed where it is, as a restored state is: a run and its resume share compiled programs
        return jax.device_put(state, jax.tree.map(lambda leaf: leaf.sharding, state))
    return place_state(state, mesh)


def training_streams(config: RunConfig, splits: Splits) -> tuple[Streams, Streams, Streams]:
    """The train, validation and test streams ``fit`` reads (``config.batch_size`` streams of ``seq_length``
    chunks; fewer for a short held-out split); ``DataError`` when a split is too short."""
    B, T = config.batch_size, config.seq_length
    return (
        Streams.from_ids(splits.train, B, T, what=f"the training split of {splits.source}"),
        evaluation_streams(splits.val, B, T, what=f"the validation split of {splits.source}"),
        evaluation_streams(splits.test, B, T, what=f"the test split of {splits.source}"),
    )


def fit(
    config: RunConfig,
    data: str | Splits,
    *,
    state: TrainState | None = None,
    mesh: Mesh | None = None,
    should_stop: Callable[..., object] | None = None,
    callbacks: Sequence[Callable[..., object]] = (),
    max_seconds: float | None = None,
    train_seconds: float = 0.0,
    elapsed_seconds: float = 0.0,
    clock: Callable[[], float] | None = None,
    started: float | None = None,
) -> FitResult:
    """Train the character model of ``config`` on ``data``, in memory; see the module docstring.

    Args:
      config: the settings (``resolved()`` here); ``corpus`` and ``data`` are not read: the text is ``data``.
      data: a text, or ``jaxrnn.data.Splits`` (``load_splits``, or ids in memory with their vocabulary).
      state: continue from this ``TrainState`` (e.g. a checkpoint restored into ``initial_state(config, V,
        mesh=mesh)``, so that each process reads its own shards); default: ``initial_state(config, V, mesh=mesh)``.
      mesh: a ``jax.sharding.Mesh`` with a ``"batch"`` axis: the streams are split over its devices. With several
        processes every process calls ``fit`` alike; stop decisions are process 0's (``distributed.agree``).
      should_stop: asked before each compiled call; a true value stops the run (status ``"stopped"``, not
        evaluated again: a caller that stops wants to save at once). An integer (``jaxrnn train`` gives a signal's
        number) comes back as ``FitResult.stop``.
      callbacks: ``callback(state, record)`` after each record, ``state`` the state the record describes; a true
        return value asks the run to stop before its next compiled call.
      max_seconds: stop (status ``"done"``) once this much training time (``train_seconds``) is spent.
      train_seconds: training time already spent by ``state`` (compiled calls); a time budget counts it.
      elapsed_seconds: wall-clock time already spent by ``state``; a time budget counts it.
      clock: seconds, for the budget and the records (``None``: ``time.perf_counter``).
      started: the ``clock()`` reading the run's time counts from (default: at the call; a shell passes its own
        start, so that reading the data counts too).
    Returns: a ``FitResult``.
    Raises: ``ConfigError`` for impossible settings, ``DataError`` for data too short or ids outside ``[0, V)``.
    """
    from jaxrnn.lm.model import evaluate, place_batch

    now = time.perf_counter if clock is None else clock
    start = (now() if started is None else started) - elapsed_seconds
    elapsed = lambda: now() - start
    splits = _splits(data)
    V = splits.vocab.size
    plan = config.plan(V)  # everything derived from the config, at once
    config, compute_dtype, follows_budget = plan.config, plan.compute_dtype, plan.optimizer_settings.follows_budget
    B, T, K = config.batch_size, config.seq_length, config.steps_per_call
    train, val, test = training_streams(config, splits)
    if state is None:
        state = _initial_state(plan, mesh)
    val_xs, val_ys = place_batch(val.epoch(max_tokens=streams.EVAL_TOKENS), mesh)  # a fixed sample of a large piece
    val_tokens = int(np.size(val_xs))
    validation_loss = lambda s: float(evaluate(s.params, val_xs, val_ys, compute_dtype))
    train_chunks = _train_chunks(plan.optimizer, K, config.dropout, compute_dtype)
    budget = None if config.time_budget is None else 60.0 * config.time_budget
    worse_than_guessing = DIVERGED_FACTOR * math.log(V)
    history: list[Record] = []
    step, reason = int(state.step), ""
    status: Status = "done"
    val_loss: float | None = None
    evaluated, above, requested, stopped_by = None, 0, False, 0

    def emit(record: Record, state: TrainState) -> None:
        nonlocal requested
        history.append(record)
        for callback in callbacks:
            requested = bool(callback(state, record)) or requested

    while True:
        asked = _stop_code(should_stop() if should_stop is not None else 0) or int(requested)
        spent, trained, stop = agree([elapsed(), train_seconds, asked])
        if stop:
            status, stopped_by = "stopped", int(stop)
            break
        if (step >= config.steps if budget is None else spent >= budget) or (
            max_seconds is not None and trained >= max_seconds
        ):
            break
        next_eval = (step // config.eval_every + 1) * config.eval_every
        n = min(K, next_eval - step, config.steps - step if budget is None else K)
        xs, ys, reset = train.chunks(step, K)
        batch = place_batch((xs, ys, reset, np.arange(K) < n), mesh)
        if follows_budget:
            assert budget is not None
            learning_rate = config.learning_rate_at(spent / budget)
            state = _with_learning_rate(state, learning_rate)
        t0 = now()
        new_state, call_losses = train_chunks(state, *batch)
        losses = np.asarray(call_losses)[:n]
        dt = now() - t0
        if not np.all(np.isfinite(losses)):
            bad = step + int(np.argmin(np.isfinite(losses))) + 1
            status, reason = "nan", f"loss became {losses[~np.isfinite(losses)][0]} at step {bad}"
            if evaluated != step:
                val_loss = validation_loss(state)
            break
        state, step, train_seconds = new_state, step + n, train_seconds + dt
        record: Record = {
            "step": step,
            "train_loss": float(np.mean(losses)),
            "chars_per_sec": n * B * T / dt,
            "train_seconds": train_seconds,
            "elapsed_seconds": elapsed(),
        }
        if follows_budget:
            record["learning_rate"] = learning_rate
        if step % config.eval_every == 0 or (budget is None and step == config.steps):
            val_loss, evaluated = validation_loss(state), step
            record.update(val_loss=val_loss, val_bpc=val_loss / math.log(2), val_tokens=val_tokens)
            above = above + 1 if val_loss > worse_than_guessing else 0
        emit(record, state)
        if above >= DIVERGED_EVALUATIONS:
            status = "diverged"
            reason = (
                f"validation loss {val_loss:.4g} nats/char has been above {DIVERGED_FACTOR:g} x ln V = "
                f"{worse_than_guessing:.3f} (worse than guessing) for {above} evaluations"
            )
            break
    if status == "done" and evaluated != step:
        val_loss = validation_loss(state)
        emit(
            {
                "step": step,
                "val_loss": val_loss,
                "val_bpc": val_loss / math.log(2),
                "val_tokens": val_tokens,
                "train_seconds": train_seconds,
                "elapsed_seconds": elapsed(),
            },
            state,
        )
    if status == "done":
        test_xs, test_ys = place_batch(test.epoch(max_tokens=streams.EVAL_TOKENS), mesh)
        test_loss = float(evaluate(state.params, test_xs, test_ys, compute_dtype))
        test_tokens = int(np.size(test_xs))
        emit(
            {"step": step, "test_loss": test_loss, "test_bpc": test_loss / math.log(2), "test_tokens": test_tokens},
            state,
        )
    return FitResult(state, history, status, val_loss, train_seconds, elapsed(), reason, stopped_by)


def _stop_code(value: object) -> int:
    """A ``should_stop`` answer as a number: 0 to go on, an integer as given, 1 for any other true value."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    return 1 if value else 0


def _splits(data: str | Splits) -> Splits:
    """``data`` as ``Splits``, its ids checked against its vocabulary."""
    if isinstance(data, str):
        return load_splits(text=data)
    if not isinstance(data, Splits):
        raise TypeError(f"fit: data must be a text (str) or jaxrnn.data.Splits, got {type(data).__name__}")
    V = data.vocab.size
    for name in ("train", "val", "test"):
        ids = np.asarray(getattr(data, name))
        if ids.size and (ids.min() < 0 or ids.max() >= V):
            raise DataError(
                f"data.{name}: token ids must lie in [0, {V}) (the vocabulary's size), "
                f"found {int(ids.min())}..{int(ids.max())}"
            )
    return data


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
    optimizer: optax.GradientTransformation, updates_per_call: int, dropout: float, compute_dtype: DTypeLike | None
) -> Callable[[TrainState, Array, Array, Array, Array], tuple[TrainState, Array]]:
    """``make_train_chunks`` for these settings, built once per process, so that runs with the same optimiser
    (``Plan.optimizer`` is one object per ``OptimizerSettings``: a resumed run, the seeds of an experiment) reuse
    one compiled function."""
    from jaxrnn.lm.model import make_train_chunks

    return make_train_chunks(optimizer, updates_per_call, dropout=dropout, compute_dtype=compute_dtype)
