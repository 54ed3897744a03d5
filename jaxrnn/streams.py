"""Parallel contiguous streams of token ids, cut into chunks for truncated BPTT (char-rnn style).

Shapes: ``B`` streams (the batch), ``T`` characters per chunk, ``L`` characters per stream, ``K`` chunks
stacked for one compiled call. Chunks are time-major: ``xs (T, B)``, ``targets (T, B)``.

The text ``ids (N,)`` is laid out as ``B`` rows of ``L = (N - 1) // B`` consecutive characters; stream ``b``
reads ``ids[b*L : (b+1)*L]`` and its targets are the same characters shifted by one. Chunk ``j`` of an epoch is
columns ``j*T .. (j+1)*T - 1`` of every row, so chunk ``j + 1`` continues each stream exactly where chunk ``j``
stopped: the state a stream ends a chunk with is the right state to start its next chunk. After
``L // T`` chunks every stream wraps around to its start, and only there is its state reset
(``reset`` is true for chunk 0 of every epoch). The last ``L mod T`` characters of a stream are not used.

The streams are views of the ids, never copies: ids mapped from an id file (``jaxrnn.data.load_splits`` with
``cache_dir``) stay on disk, and only the chunks read are converted to int32.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from jaxrnn._checks import positive_int
from jaxrnn.data import DataError


@dataclass(frozen=True, eq=False)
class Streams:
    """``B`` contiguous streams of ids with their targets, read in chunks of ``T``.

    Attributes: ``inputs (B, L)`` and ``targets (B, L)``, views of the ids in their integer dtype (uint8 from
    an id file), ``seq_length`` T. Chunks are int32.
    """

    inputs: np.ndarray
    targets: np.ndarray
    seq_length: int

    @classmethod
    def from_ids(cls, ids: npt.ArrayLike, batch_size: int, seq_length: int, *, what: str = "the text") -> Streams:
        """Lay ``ids (N,)`` out as ``batch_size`` streams; ``DataError`` when a stream would be shorter than one
        chunk of ``seq_length`` (plus the one character of look-ahead the targets need)."""
        for name, value in (("batch size", batch_size), ("sequence length", seq_length)):
            positive_int(name, value, error=DataError)
        ids = np.asarray(ids).reshape(-1)  # a view: a mapped id file stays mapped
        if not np.issubdtype(ids.dtype, np.integer):
            ids = ids.astype(np.int32)
        needed = batch_size * seq_length + 1
        if len(ids) < needed:
            raise DataError(
                f"{what} is too short: {len(ids)} characters, but {batch_size} streams of one "
                f"{seq_length}-character chunk need at least {needed}; use a longer text, fewer streams "
                "or shorter chunks"
            )
        L = (len(ids) - 1) // batch_size
        inputs = ids[: batch_size * L].reshape(batch_size, L)
        targets = ids[1 : batch_size * L + 1].reshape(batch_size, L)
        return cls(inputs, targets, int(seq_length))

    @property
    def batch_size(self) -> int:
        return self.inputs.shape[0]

    @property
    def chunks_per_epoch(self) -> int:
        """The number of chunks before the streams wrap around, ``L // T``."""
        return self.inputs.shape[1] // self.seq_length

    def chunk(self, index: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Chunk number ``index`` counted from the start of training (epochs wrap around).

        Returns: ``xs (T, B)``, ``targets (T, B)``, ``reset (B,)`` (true where a stream starts over, so its
        carried state must start from zero).
        """
        j = int(index) % self.chunks_per_epoch
        cols = slice(j * self.seq_length, (j + 1) * self.seq_length)
        reset = np.full((self.batch_size,), j == 0)
        return self.inputs[:, cols].T.astype(np.int32), self.targets[:, cols].T.astype(np.int32), reset

    def chunks(self, start: int, count: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``count`` consecutive chunks from ``start``: ``xs (K, T, B)``, ``targets (K, T, B)``, ``reset (K, B)``."""
        parts = [self.chunk(start + k) for k in range(count)]
        return tuple(np.stack(p) for p in zip(*parts))  # type: ignore[return-value]

    def epoch(self, max_tokens: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Every chunk of one epoch in order: ``xs (C, T, B)``, ``targets (C, T, B)`` int32 (evaluation reads this).

        ``max_tokens``: at most this many characters (``C * T * B``), as the first
        ``C = max(1, max_tokens // (T * B))`` chunks of every stream: ``B`` evenly spaced windows of the piece,
        each read from its start with the state carried from zero, the same at every call. A piece that fits is
        read whole.
        """
        count = self.chunks_per_epoch
        if max_tokens is not None:
            count = min(count, max(1, int(max_tokens) // (self.seq_length * self.batch_size)))
        xs, targets, _ = self.chunks(0, count)
        return xs, targets


EVAL_TOKENS = 1 << 20
"""At most this many characters of a held-out piece are read by an evaluation (``Streams.epoch(max_tokens=)``):
a text of up to 20 MB (a 5% piece of up to 1 MiB) is evaluated whole, a larger one on a fixed sample."""


def evaluation_streams(ids: npt.ArrayLike, batch_size: int, seq_length: int, *, what: str) -> Streams:
    """Streams for evaluating a held-out piece: as many as ``batch_size`` streams, fewer when the piece is short,
    so that every stream holds at least one chunk; ``DataError`` if not even one stream fits."""
    ids = np.asarray(ids).reshape(-1)  # a view, as in Streams.from_ids
    streams = min(batch_size, max((len(ids) - 1) // seq_length, 1))
    return Streams.from_ids(ids, streams, seq_length, what=what)
