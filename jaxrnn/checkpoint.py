"""Checkpoints of a training run, on orbax-checkpoint: atomic writes, the last N kept and the best kept.

Layout: ``DIR/<step>/state`` (the ``TrainState`` pytree: parameters, optimiser state, carried states, PRNG key,
step) and ``DIR/<step>/meta`` (JSON: vocabulary, model and training configuration, validation loss).

orbax writes each checkpoint into a temporary directory and renames it into place only when every file is
written (``commit_success.txt``), so a crash or Ctrl-C during a write leaves the previous checkpoints as they
were and no half-written step is ever listed. Every problem surfaces as ``CheckpointError``, one line.
"""

from __future__ import annotations

import os
import tempfile

import jax
import numpy as np

from jaxrnn.data import DataError
from jaxrnn.typing import PyTree

FORMAT = 2
"""Format of the checkpoints this version writes: 2 since jaxrnn 0.2 (the model is a ``StackParams``); format 1
(jaxrnn 0.1) is still read by ``jaxrnn.lm.load_model``. A stack layer's missing readout is stored as ``None``, as
it is held in memory; jaxrnn 0.2 and 0.3 held it as zero-size arrays and stripped them when saving, which wrote the
same files."""
READABLE_FORMATS = (1, 2)


class CheckpointError(DataError):
    """A checkpoint directory that cannot be written, or a checkpoint that cannot be read: one line."""


def _check_writable(directory: str) -> None:
    try:
        os.makedirs(directory, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=directory, prefix=".write-test-"):
            pass
    except OSError as e:
        raise CheckpointError(f"cannot write checkpoints to {directory}: {e.strerror or e}") from None


class CheckpointStore:
    """The checkpoints in ``directory``: keeps the ``keep_last`` most recent and the one with the lowest
    validation loss. ``create=False`` opens an existing directory read-only (for sampling)."""

    def __init__(self, directory: str | os.PathLike, *, keep_last: int = 3, create: bool = True):
        import orbax.checkpoint as ocp
        from orbax.checkpoint.checkpoint_managers import preservation_policy as pp

        self.directory = os.path.abspath(os.fspath(directory))
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
            self._manager = ocp.CheckpointManager(self.directory, options=options)
        except Exception as e:  # noqa: BLE001 - orbax raises many types; the user needs one line
            raise CheckpointError(f"cannot open checkpoints in {self.directory}: {e}") from None
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

    def save(self, step: int, state: PyTree, meta: dict, *, val_loss: float) -> None:
        """Write ``state`` (a pytree of arrays) and ``meta`` (JSON-able) as checkpoint ``step``."""
        ocp = self._ocp
        meta = {"format": FORMAT, "step": int(step), "val_loss": float(val_loss), **meta}
        try:
            self._manager.save(
                int(step),
                args=ocp.args.Composite(
                    state=ocp.args.StandardSave(_without_empty(state)), meta=ocp.args.JsonSave(meta)
                ),
                metrics={"val_loss": float(val_loss)},
                force=True,
            )
            self._manager.wait_until_finished()
        except OSError as e:
            raise CheckpointError(f"cannot write checkpoint {self.path(step)}: {e.strerror or e}") from None

    def read_meta(self, step: int) -> dict:
        """The JSON part of checkpoint ``step``."""
        ocp = self._ocp
        try:
            meta = self._manager.restore(int(step), args=ocp.args.Composite(meta=ocp.args.JsonRestore()))["meta"]
        except Exception as e:  # noqa: BLE001
            raise CheckpointError(f"checkpoint {self.path(step)} is unreadable ({_first_line(e)})") from None
        if not isinstance(meta, dict) or meta.get("format") not in READABLE_FORMATS:
            raise CheckpointError(
                f"checkpoint {self.path(step)} is not a jaxrnn checkpoint of format "
                f"{' or '.join(map(str, READABLE_FORMATS))}"
            )
        return meta

    def restore(self, step: int, template: PyTree) -> PyTree:
        """The state of checkpoint ``step``, with the structure, shapes and dtypes of ``template``."""
        ocp = self._ocp
        abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, template)
        try:
            restored = self._manager.restore(
                int(step), args=ocp.args.Composite(state=ocp.args.StandardRestore(_without_empty(abstract)))
            )["state"]
        except Exception as e:  # noqa: BLE001
            raise CheckpointError(f"checkpoint {self.path(step)} is unreadable ({_first_line(e)})") from None
        return _with_empty(restored, abstract)

    def close(self) -> None:
        self._manager.close()


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


def _first_line(e: Exception) -> str:
    text = str(e).strip().splitlines()
    line = text[0] if text else type(e).__name__
    return line if len(line) <= 160 else line[:157] + "..."
