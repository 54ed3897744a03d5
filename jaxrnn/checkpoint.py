"""Checkpoints of a training run, on orbax-checkpoint: atomic writes, checksummed arrays, the last N kept and the
best kept.

Layout: ``DIR/<step>/state`` (the ``TrainState`` pytree: parameters, optimiser state, carried states, PRNG key,
step) and ``DIR/<step>/meta`` (JSON: vocabulary, model and training configuration, validation loss, and
``checksums``: for each array of ``state``, keyed by its ``jax.tree_util.keystr`` path, the hexadecimal
``sum32`` of its bytes). ``sum32`` reads an array's bytes as little-endian words of its item size (1, 2 or 4
bytes; 8-byte items as two 4-byte words), widened to 32 bits, and sums word ``i`` times the odd weight
``(i * 2654435761 mod 2**32) | 1``, modulo ``2**32``: any change to one word changes it, and it is computed the
same way on the host (NumPy) and on the devices (for arrays split over several processes).

orbax writes each checkpoint into a temporary directory and renames it into place only when every file is
written, so a crash or kill during a write leaves the previous checkpoints as they were and no half-written step
is ever listed. A write that fails (a full disk, a read-only or vanished directory) removes its temporary
directory and raises ``CheckpointError``; a checkpoint whose files cannot be read, or whose arrays do not match
their checksums, raises ``CheckpointError`` too. Every message is one line; orbax's and asyncio's own reports of
the failure are kept out of the terminal (written to ``DIR/errors.log`` where it can be written).
"""

from __future__ import annotations

import contextlib
import gc
import glob
import json
import logging
import os
import re
import shutil
import sys
import tempfile
import threading
import time
import traceback
import warnings
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar

import jax
import numpy as np

from jaxrnn.data import DataError
from jaxrnn.typing import PyTree

FORMAT = 2
"""Format of the checkpoints this version writes: 2 since jaxrnn 0.2 (the model is a ``StackParams``); format 1
(jaxrnn 0.1) is still read by ``jaxrnn.lm.load_model``. A stack layer's missing readout is stored as ``None``, as
it is held in memory; jaxrnn 0.2 and 0.3 held it as zero-size arrays and stripped them when saving, which wrote the
same files. Since jaxrnn 0.5 the metadata holds ``checksums``; checkpoints without them still load."""
READABLE_FORMATS = (1, 2)
ERROR_LOG = "errors.log"
"""Where, inside the checkpoint directory, the full reports of a failed write or read go."""

_T = TypeVar("_T")
_orbax_failed = False


class CheckpointError(DataError):
    """A checkpoint directory that cannot be written, or a checkpoint that cannot be read: one line."""


def orbax_failed() -> bool:
    """Whether a write or read failed in this process: orbax may have left threads and coroutines behind whose
    reports at interpreter exit a command line skips by leaving with ``os._exit``."""
    return _orbax_failed


def write_error(path: str, error: BaseException, last_good: str | None) -> CheckpointError:
    """The one-line error of a run stopped because ``path`` could not be written: the cause and the last good
    checkpoint."""
    where = "no checkpoint was written before" if last_good is None else f"the last good checkpoint is {last_good}"
    return CheckpointError(f"cannot write {path}: {_cause(error)}; {where}")


def _check_writable(directory: str) -> None:
    try:
        os.makedirs(directory, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=directory, prefix=".write-test-"):
            pass
    except OSError as e:
        raise CheckpointError(f"cannot write checkpoints to {directory}: {e.strerror or e}") from None


def _tolerant_manager(ocp: Any) -> type:
    class Manager(ocp.CheckpointManager):
        """A step whose metrics file is unreadable has no metrics (orbax refuses to open the directory)."""

        def metrics(self, step: int) -> Any:
            try:
                return super().metrics(step)
            except Exception:  # noqa: BLE001 - any unreadable file; the step is checked when read
                return None

    return Manager


class CheckpointStore:
    """The checkpoints in ``directory``: keeps the ``keep_last`` most recent and the one with the lowest
    validation loss. ``create=False`` opens an existing directory read-only (for sampling)."""

    def __init__(self, directory: str | os.PathLike, *, keep_last: int = 3, create: bool = True):
        import orbax.checkpoint as ocp
        from orbax.checkpoint.checkpoint_managers import preservation_policy as pp

        self.directory = os.path.abspath(os.fspath(directory))
        self._writable = create
        if create:
            _check_writable(self.directory)
        elif not os.path.isdir(self.directory):
            raise CheckpointError(f"no checkpoints: {self.directory} is not a directory")
        if not isinstance(keep_last, int) or keep_last < 1:
            raise CheckpointError(f"keep must be a positive integer, got {keep_last!r}")
        metric = lambda metrics: metrics["val_loss"]
        options = ocp.CheckpointManagerOptions(
            enable_async_checkpointing=False,
            create=create,
            best_fn=metric,
            best_mode="min",
            preservation_policy=pp.AnyPreservationPolicy(
                [pp.LatestN(keep_last), pp.BestN(get_metric_fn=metric, reverse=True, n=1)]
            ),
        )
        try:
            with self._contained():
                self._manager = _tolerant_manager(ocp)(self.directory, options=options)
        except Exception as e:  # noqa: BLE001 - orbax raises many types; the user needs one line
            raise CheckpointError(f"cannot open checkpoints in {self.directory}: {_cause(e)}") from None
        self._ocp = ocp

    def steps(self) -> list[int]:
        return sorted(self._manager.all_steps())

    def latest_step(self) -> int | None:
        steps = self.steps()
        return steps[-1] if steps else None

    def best_step(self) -> int | None:
        return self._manager.best_step()

    def path(self, step: int) -> str:
        return os.path.join(self.directory, str(step))

    def save(self, step: int, state: PyTree, meta: dict, *, val_loss: float | None) -> None:
        """Write ``state`` (a pytree of arrays) and ``meta`` (JSON-able) as checkpoint ``step``.

        ``val_loss=None``: not evaluated (a checkpoint saved on a stop request or on the clock); it is never
        the best unless no other is. Raises ``CheckpointError`` naming the cause and the last good checkpoint,
        after removing what the failed write left."""
        ocp = self._ocp
        state = _without_empty(state)
        meta = {
            "format": FORMAT,
            "step": int(step),
            "val_loss": None if val_loss is None else float(val_loss),
            **meta,
            "checksums": checksums(state),
        }
        metric = float("inf") if val_loss is None else float(val_loss)
        before = set(threading.enumerate())
        try:
            with self._contained():
                self._manager.save(
                    int(step),
                    args=ocp.args.Composite(state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta)),
                    metrics={"val_loss": metric},
                    force=True,
                )
                self._manager.wait_until_finished()
        except BaseException as e:
            self._discard_partial(int(step), [t for t in threading.enumerate() if t not in before])
            if not isinstance(e, Exception):
                raise
            last = self._last_committed(exclude=int(step))
            raise write_error(f"checkpoint {self.path(step)}", e, None if last is None else self.path(last)) from None

    def read_meta(self, step: int) -> dict:
        """The JSON part of checkpoint ``step``."""
        ocp = self._ocp
        try:
            with self._contained():
                meta = self._manager.restore(int(step), args=ocp.args.Composite(meta=ocp.args.JsonRestore()))["meta"]
        except Exception as e:  # noqa: BLE001
            raise CheckpointError(f"checkpoint {self.path(step)} is unreadable ({_cause(e)})") from None
        if not isinstance(meta, dict) or meta.get("format") not in READABLE_FORMATS:
            raise CheckpointError(
                f"checkpoint {self.path(step)} is not a jaxrnn checkpoint of format "
                f"{' or '.join(map(str, READABLE_FORMATS))}"
            )
        metrics = os.path.join(self.path(step), "metrics", "metrics")
        if os.path.exists(metrics):  # written with every checkpoint; orbax ranks the checkpoints by it
            try:
                with open(metrics, encoding="utf-8") as f:
                    json.load(f)
            except (OSError, ValueError) as e:
                raise CheckpointError(f"checkpoint {self.path(step)} is unreadable ({_cause(e)})") from None
        return meta

    def restore(self, step: int, template: PyTree) -> PyTree:
        """The state of checkpoint ``step``, with the structure, shapes and dtypes of ``template`` (NumPy
        leaves restore as NumPy arrays), each array checked against its checksum where the checkpoint has one."""
        ocp = self._ocp
        abstract = jax.tree.map(_abstract, template)
        try:
            with self._contained():
                restored = self._manager.restore(
                    int(step), args=ocp.args.Composite(state=ocp.args.StandardRestore(_without_empty(abstract)))
                )["state"]
        except Exception as e:  # noqa: BLE001
            raise CheckpointError(f"checkpoint {self.path(step)} is unreadable ({_cause(e)})") from None
        expected = self.read_meta(step).get("checksums") or {}
        if expected:
            found = checksums(restored)
            wrong = [key for key in expected if key in found and found[key] != expected[key]]
            if wrong:
                more = f" and {len(wrong) - 1} more" if len(wrong) > 1 else ""
                raise CheckpointError(
                    f"checkpoint {self.path(step)} is unreadable (state{wrong[0]}{more} differ from the checksums "
                    "saved with them)"
                )
        return _with_empty(restored, abstract)

    def first_readable(
        self,
        steps: Sequence[int],
        read: Callable[[int], _T],
        *,
        log: Callable[[str], object] | None = None,
        set_aside: bool = False,
    ) -> tuple[int, _T]:
        """``(step, read(step))`` for the first of ``steps`` that ``read`` reads without ``CheckpointError``.

        Skipped checkpoints are reported in one line through ``log`` (default: a warning); ``set_aside=True``
        renames them ``<step>.unreadable`` so that training can write those steps again. When none is readable,
        ``CheckpointError`` names the first one's cause."""
        failed: list[tuple[int, CheckpointError]] = []
        for step in steps:
            try:
                value = read(step)
            except CheckpointError as e:
                failed.append((step, e))
                continue
            if failed:
                moved = [self._set_aside(s) for s, _ in failed] if set_aside else []
                skipped = ", ".join(self.path(s) for s, _ in failed)
                several = len(failed) > 1
                message = (
                    f"checkpoint{'s' if several else ''} {skipped} {'are' if several else 'is'} unreadable "
                    f"({_reason(failed[0][1])})"
                    f"{'; moved to ' + ', '.join(moved) if moved else ''}; using {self.path(step)}"
                )
                if log is None:
                    warnings.warn(message, stacklevel=2)
                else:
                    log(message)
            return step, value
        if not failed:
            raise CheckpointError(f"no checkpoint in {self.directory}")
        raise failed[0][1]

    def close(self) -> None:
        with contextlib.suppress(Exception), self._contained():
            self._manager.close()

    def _set_aside(self, step: int) -> str:
        source = target = self.path(step)
        n = 0
        while os.path.exists(target):
            n += 1
            target = f"{source}.unreadable" + (f"-{n}" if n > 1 else "")
        if jax.process_index() == 0:
            try:
                os.replace(source, target)
            except OSError as e:
                raise CheckpointError(f"cannot move unreadable checkpoint {source} aside: {_cause(e)}") from None
        if jax.process_count() > 1:
            from jax.experimental import multihost_utils

            multihost_utils.sync_global_devices(f"jaxrnn set aside {step}")
        with self._contained():
            self._manager.reload()
        return target

    def _last_committed(self, *, exclude: int) -> int | None:
        steps = [int(n) for n in _listdir(self.directory) if n.isdigit() and int(n) != exclude]
        return max(steps) if steps else None

    def _discard_partial(self, step: int, writers: list[threading.Thread]) -> None:
        """Remove what a failed write of ``step`` left: orbax's temporary directory, once the threads the write
        started (``writers``) have ended or 10 s have passed; removed again while a late writer recreates it."""
        with contextlib.suppress(Exception), self._contained():
            self._manager.wait_until_finished()
        deadline = time.monotonic() + 10.0
        for thread in writers:
            thread.join(max(0.0, deadline - time.monotonic()))
        if jax.process_index() != 0:
            return
        pattern = os.path.join(glob.escape(self.directory), f"{step}.orbax-checkpoint-tmp*")
        for _ in range(20):
            left = glob.glob(pattern)
            if not left:
                break
            for path in left:
                shutil.rmtree(path, ignore_errors=True)
            time.sleep(0.05)

    @contextlib.contextmanager
    def _contained(self) -> Iterator[None]:
        """orbax's log records, and the exceptions its threads and coroutines report (``Exception ignored in
        <coroutine ...>``, ``Event loop is closed``), go to ``DIR/errors.log`` when the block fails, else nowhere;
        the block's own exception reaches the caller."""
        global _orbax_failed
        reports: list[str] = []
        absl = logging.getLogger("absl")
        handler = _Collect(reports)
        propagate, unraisable, excepthook = absl.propagate, sys.unraisablehook, threading.excepthook
        absl.addHandler(handler)
        absl.propagate = False
        sys.unraisablehook = lambda u: reports.append(
            f"{u.err_msg or 'Exception ignored in'}: {u.object!r}\n"
            + "".join(traceback.format_exception(u.exc_type, u.exc_value, u.exc_traceback))
        )
        threading.excepthook = lambda a: reports.append(
            f"in thread {a.thread}:\n" + "".join(traceback.format_exception(a.exc_type, a.exc_value, a.exc_traceback))
        )
        failed = None
        try:
            yield
        except BaseException as e:
            failed = e
            if not _orbax_failed:
                unraisable = _late_reports(unraisable, self)
            _orbax_failed = True
            reports.append("".join(traceback.format_exception(type(e), e, e.__traceback__)))
            raise
        finally:
            if failed is not None:
                del failed
                gc.collect()  # finalise the coroutines orbax abandoned while the hooks still collect their reports
            absl.removeHandler(handler)
            absl.propagate, sys.unraisablehook, threading.excepthook = propagate, unraisable, excepthook
            if reports and self._writable:
                with (
                    contextlib.suppress(OSError),
                    open(os.path.join(self.directory, ERROR_LOG), "a", encoding="utf-8") as f,
                ):
                    f.write("\n".join(reports) + "\n")


def _late_reports(previous: Callable[[Any], Any], store: CheckpointStore) -> Callable[[Any], Any]:
    """An ``unraisablehook`` for the rest of the process once orbax failed: the reports its abandoned event loops
    make later (``Event loop is closed``, coroutines never finished) go to ``DIR/errors.log``; others pass on."""

    def hook(unraisable: Any) -> None:
        text = "".join(traceback.format_exception(unraisable.exc_type, unraisable.exc_value, unraisable.exc_traceback))
        if "asyncio" in text or "orbax" in text or "coroutine" in repr(unraisable.object):
            if store._writable:
                with (
                    contextlib.suppress(Exception),
                    open(os.path.join(store.directory, ERROR_LOG), "a", encoding="utf-8") as f,
                ):
                    f.write(text)
            return
        previous(unraisable)

    return hook


class _Collect(logging.Handler):
    def __init__(self, into: list[str]):
        super().__init__(logging.WARNING)
        self.into = into

    def emit(self, record: logging.LogRecord) -> None:
        with contextlib.suppress(Exception):
            self.into.append(logging.Formatter("%(levelname)s:%(name)s:%(message)s").format(record))


def _listdir(directory: str) -> list[str]:
    try:
        return os.listdir(directory)
    except OSError:
        return []


def _abstract(leaf: Any) -> Any:
    """A restore target: NumPy leaves stay NumPy (each process reads the whole array), others become
    ``ShapeDtypeStruct``s with their sharding."""
    if isinstance(leaf, np.ndarray):
        return leaf
    import orbax.checkpoint as ocp

    return ocp.utils.to_shape_dtype_struct(leaf)


_WEIGHT = 2654435761


def sum32(array: Any) -> int:
    """``sum32`` of an array's bytes (see the module docstring), on the host."""
    words = _words(np.ascontiguousarray(np.asarray(array))).astype(np.uint64)
    weights = (np.arange(words.size, dtype=np.uint64) * np.uint64(_WEIGHT)) & np.uint64(0xFFFFFFFF) | np.uint64(1)
    return int(np.sum(words * weights, dtype=np.uint64) & np.uint64(0xFFFFFFFF))


def _words(a: np.ndarray) -> np.ndarray:
    if a.dtype == np.bool_:
        a = a.view(np.uint8)
    size = a.dtype.itemsize
    if size == 8:
        return a.reshape(-1).view(np.uint32)
    return a.reshape(-1).view({1: np.uint8, 2: np.uint16, 4: np.uint32}[size]).astype(np.uint32)


def _sum32_on_devices(x: jax.Array) -> jax.Array:
    import jax.numpy as jnp

    if x.dtype == jnp.bool_:
        x = x.astype(jnp.uint8)
    size = x.dtype.itemsize
    if size == 8:
        words = jax.lax.bitcast_convert_type(x, jnp.uint32).reshape(-1)
    else:
        words = jax.lax.bitcast_convert_type(x, {1: jnp.uint8, 2: jnp.uint16, 4: jnp.uint32}[size])
        words = words.reshape(-1).astype(jnp.uint32)
    weights = jnp.arange(words.size, dtype=jnp.uint32) * jnp.uint32(_WEIGHT) | jnp.uint32(1)
    return jnp.sum(words * weights, dtype=jnp.uint32)


def checksums(tree: PyTree) -> dict[str, str]:
    """``{keystr(path): "%08x" % sum32(leaf)}`` for every array of ``tree`` (``None`` leaves have none). Arrays
    that this process holds whole are summed on the host; arrays split over processes, on their devices."""
    flat = jax.tree_util.tree_flatten_with_path(tree)[0]
    split = [i for i, (_, x) in enumerate(flat) if isinstance(x, jax.Array) and not x.is_fully_addressable]
    on_devices = iter(jax.jit(lambda xs: [_sum32_on_devices(x) for x in xs])([flat[i][1] for i in split]))
    sums = {}
    for i, (path, leaf) in enumerate(flat):
        value = int(np.asarray(next(on_devices).addressable_data(0))) if i in split else sum32(leaf)
        sums[jax.tree_util.keystr(path)] = f"{value:08x}"
    return sums


def _without_empty(tree: PyTree) -> PyTree:
    """``tree`` with every zero-size array replaced by ``None``: orbax refuses to save arrays of size zero, and
    their contents are known from the shape alone. jaxrnn's own pytrees hold none (a stack layer's missing
    readout is ``None``), but parameters in jaxrnn 0.3's spelling (``Why (0, H)``, ``by (0,)``) still save, to
    the same files as 0.3 wrote."""
    return jax.tree.map(lambda x: None if x.size == 0 else x, tree)


def _with_empty(restored: PyTree, template: PyTree) -> PyTree:
    """``restored`` (read with ``_without_empty(template)``) with the zero-size arrays of ``template`` put back,
    so that a template in 0.3's spelling gets its own structure back."""
    by_path = dict(jax.tree_util.tree_flatten_with_path(restored)[0])
    return jax.tree_util.tree_map_with_path(
        lambda path, t: np.zeros(t.shape, t.dtype) if t.size == 0 else by_path[path], template
    )


def _cause(e: BaseException) -> str:
    """The cause of ``e`` in a few words: the operating system's message where there is one (tensorstore
    reports it as ``[os_error_code='28']``), else the first line of the message."""
    if isinstance(e, OSError) and e.strerror:
        return e.strerror
    code = re.search(r"os_error_code='?(\d+)", str(e))
    if code:
        return os.strerror(int(code.group(1)))
    return _first_line(e)


def _reason(e: CheckpointError) -> str:
    """What made a checkpoint unreadable, from its ``CheckpointError``."""
    text = str(e)
    return text.split(" is unreadable (", 1)[1][:-1] if " is unreadable (" in text else text


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    line = text[0] if text else type(e).__name__
    return line if len(line) <= 160 else line[:157] + "..."
