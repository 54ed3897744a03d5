"""Text in, token ids out: built-in corpora, reading text files, a character vocabulary, id files.

This module reads and writes files; it does no training. Every problem with user input raises ``DataError`` with
a one-line message, which the command-line tools print before exiting with status 2.

An id file (``encode_to_file``, ``open_ids``) holds a text's ids once encoded, as nanoGPT's ``train.bin``
does: ``ids.bin`` is the raw ids ``(N,)`` (uint8 for a vocabulary of at most 256 characters, uint16 up to 65536,
else uint32, little-endian, no header), and ``ids.json`` says what they are::

    {"format": 1, "source": "/abs/path.txt" | "corpus:NAME" | "text", "size": bytes, "mtime_ns": int | null,
     "blake2b": hex digest of the source's UTF-8 bytes, "vocabulary": the characters in id order,
     "dtype": "uint8", "length": N, "splits": [0, n_train, n_train + n_val, N], "fractions": [0.9, 0.05, 0.05]}

Encoding streams the text in pieces of ``CHUNK_BYTES`` (two passes: the vocabulary, then the ids), so memory
stays bounded whatever the text's size. ``load_splits(..., cache_dir=)`` maps the file (``np.memmap``) and
reuses it while the source is unchanged: the same path, and the same size and modification time (then the
recorded hash is trusted without reading the text again); when size or time differ the text is hashed again
(a full streaming blake2b) and the file is reused only if the hash is the same.
"""

from __future__ import annotations

import codecs
import hashlib
import io
import json
import os
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, BinaryIO

import numpy as np
import numpy.typing as npt


class DataError(ValueError):
    """Bad input from a user (a file, a corpus name, a character): the message is one line, fit to print."""


def _pydoc_topics() -> str:
    import pydoc_data.topics  # English help text shipped with every CPython

    topics = pydoc_data.topics.topics
    return "\n\n".join(topics[name] for name in sorted(topics))


STDLIB_MODULES = (
    "abc",
    "argparse",
    "bisect",
    "calendar",
    "contextlib",
    "copy",
    "dataclasses",
    "difflib",
    "enum",
    "fnmatch",
    "fractions",
    "functools",
    "heapq",
    "pprint",
    "queue",
    "sched",
    "shlex",
    "statistics",
    "string",
    "textwrap",
)
"""The pure-Python standard-library modules whose source makes the ``stdlib_source`` corpus, in this order."""


def _stdlib_source() -> str:
    import sysconfig

    root = sysconfig.get_paths()["stdlib"]
    texts = []
    for name in STDLIB_MODULES:
        try:
            with open(os.path.join(root, name + ".py"), encoding="utf-8") as f:
                texts.append(f.read())
        except OSError:  # a trimmed installation may lack a module; the others still make a corpus
            continue
    if not texts:
        raise DataError(f"corpus 'stdlib_source': no standard-library sources found under {root}")
    return "\n\n".join(texts)


CORPORA = {"pydoc_topics": _pydoc_topics, "stdlib_source": _stdlib_source}
"""Built-in corpora by name, text that every Python installation already has (no download). ``pydoc_topics`` is
English help text; ``stdlib_source`` is Python source (its exact text depends on the Python version)."""

DEFAULT_CORPUS = "pydoc_topics"


def load_corpus(name: str = DEFAULT_CORPUS) -> str:
    """The text of a built-in corpus (see ``CORPORA``)."""
    if name not in CORPORA:
        raise DataError(f"unknown corpus {name!r}; choose one of: {', '.join(sorted(CORPORA))}")
    return CORPORA[name]()


def load_text(path: str | os.PathLike) -> str:
    """Read a UTF-8 text file, refusing what cannot be a training text with a clear ``DataError``."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise DataError(f"no such file: {path}")
    if os.path.isdir(path):
        raise DataError(f"{path} is a directory; expected a UTF-8 text file")
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as e:
        raise DataError(f"cannot read {path}: {e.strerror}") from None
    if not raw:
        raise DataError(f"{path} is empty")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise DataError(f"{path} is not UTF-8 text (byte 0x{raw[e.start]:02x} at offset {e.start})") from None


@dataclass(frozen=True)
class Vocabulary:
    """Characters in sorted order; a character's id is its index (deterministic for a given text)."""

    chars: tuple[str, ...]

    @classmethod
    def from_text(cls, text: str) -> Vocabulary:
        if not text:
            raise DataError("cannot build a vocabulary from empty text")
        return cls(tuple(sorted(set(text))))

    @property
    def size(self) -> int:
        return len(self.chars)

    def encode(self, text: str) -> np.ndarray:
        """Ids ``(len(text),)`` int32; characters outside the vocabulary raise ``DataError`` naming them."""
        index = {ch: i for i, ch in enumerate(self.chars)}
        try:
            return np.fromiter((index[ch] for ch in text), np.int32, len(text))
        except KeyError:
            unknown = sorted(set(text) - set(index))
            raise DataError(
                "characters not in the vocabulary: "
                + " ".join(repr(ch) for ch in unknown[:10])
                + (f" and {len(unknown) - 10} more" if len(unknown) > 10 else "")
            ) from None

    def decode(self, ids: npt.ArrayLike) -> str:
        """The text for ids ``(N,)``."""
        return "".join(self.chars[int(i)] for i in np.asarray(ids).reshape(-1))


SPLIT = (0.90, 0.05, 0.05)
"""Train, validation and test fractions of a text, taken as contiguous pieces in that order."""


def split_ids(
    ids: npt.ArrayLike, fractions: tuple[float, float, float] = SPLIT
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Cut ids ``(N,)`` into contiguous train, validation and test pieces (no shuffling: the text's order is kept
    inside each piece and no piece sees another's characters)."""
    ids = np.asarray(ids)
    if len(fractions) != 3 or any(f < 0 for f in fractions) or abs(sum(fractions) - 1) > 1e-9:
        raise ValueError(f"fractions must be three non-negative numbers summing to 1, got {fractions!r}")
    _, a, b, _ = _boundaries(len(ids), fractions)
    return ids[:a], ids[a:b], ids[b:]


def _boundaries(n: int, fractions: tuple[float, float, float]) -> tuple[int, int, int, int]:
    n_train = int(round(n * fractions[0]))
    n_val = int(round(n * fractions[1]))
    return 0, n_train, n_train + n_val, n


@dataclass(frozen=True)
class Splits:
    """A text cut for training: its vocabulary and the train, validation and test ids ``(N_split,)``.

    In memory the ids are int32; mapped from an id file they are views of one ``np.memmap`` (uint8/uint16/uint32,
    nothing copied): convert a batch at a time.
    """

    vocab: Vocabulary
    train: np.ndarray
    val: np.ndarray
    test: np.ndarray
    source: str
    """The text's origin, ``corpus:NAME``, the file's absolute path, or ``text``."""
    digest: str = ""
    """The blake2b hex digest of the text's UTF-8 bytes."""


def load_splits(
    corpus: str = DEFAULT_CORPUS,
    *,
    path: str | os.PathLike | None = None,
    text: str | None = None,
    fractions: tuple[float, float, float] = SPLIT,
    cache_dir: str | os.PathLike | None = None,
    digest: str | None = None,
) -> Splits:
    """Load a text (a built-in ``corpus``, a file at ``path``, or ``text`` itself), build its vocabulary and cut
    it with ``split_ids``. The one way from a corpus to training ids, shared by the trainer and the scripts.

    Args:
      cache_dir: keep the ids in an id file there (``IDS_FILE``, see the module's docstring) and map it: made on
        the first call, reused by the next while the source is unchanged. ``None``: int32 ids in memory.
      digest: the blake2b hex digest the text must have (a resumed run's): another text is a ``DataError``,
        raised before any file is written.
    """
    if sum(x is not None for x in (path, text)) > 1:
        raise ValueError("give at most one of path= and text=")
    source = TextSource(corpus, path, text)
    if cache_dir is None:
        vocab, _, current, _ = _scan(source)
        _check_digest(source, current, digest)
        ids = np.concatenate([np.zeros(0, np.int32), *_encoded(source, vocab, np.dtype(np.int32))])
        return Splits(vocab, *split_ids(ids, fractions), source.name, current)
    cache_dir = os.fspath(cache_dir)
    meta = _read_meta(cache_dir)
    if meta is not None and meta["source"] == source.name and meta["fractions"] == list(fractions):
        stat = source.stat()
        unchanged = source.path is not None and stat == (meta["size"], meta["mtime_ns"])
        current = meta["blake2b"] if unchanged else source.hash()  # a text in memory is small: hash it
        _check_digest(source, current, digest)
        if current == meta["blake2b"] and _map(cache_dir, meta) is not None:
            if stat != (meta["size"], meta["mtime_ns"]):  # the same text, touched or copied: keep the new time
                meta = {**meta, "size": stat[0], "mtime_ns": stat[1]}
                _write_meta(cache_dir, meta)
            return _splits_of(cache_dir, meta)
    return _splits_of(cache_dir, encode_to_file(cache_dir, source, fractions=fractions, digest=digest))


IDS_FILE, IDS_META, IDS_FORMAT = "ids.bin", "ids.json", 1
CHUNK_BYTES = 1 << 23
"""The number of bytes of text read at a time while encoding; memory stays bounded by a small multiple of it."""


def ids_dtype(vocab_size: int) -> np.dtype:
    """The smallest unsigned dtype that holds the ids ``0`` to ``vocab_size - 1``: uint8 up to 256 ids, uint16 up to
    65536, else uint32."""
    for dtype in (np.uint8, np.uint16):
        if vocab_size <= np.iinfo(dtype).max + 1:
            return np.dtype(dtype)
    return np.dtype(np.uint32)


def open_ids(directory: str | os.PathLike) -> tuple[np.memmap, dict[str, Any]]:
    """Map the id file in ``directory``: the ids ``(N,)`` read-only in its dtype, and its ``ids.json`` record."""
    directory = os.fspath(directory)
    meta = _read_meta(directory)
    if meta is None:
        raise DataError(f"no id file in {directory} (expected {IDS_FILE} and {IDS_META})")
    ids = _map(directory, meta)
    if ids is None:
        raise DataError(f"{os.path.join(directory, IDS_FILE)} does not hold the {meta['length']} ids of {IDS_META}")
    return ids, meta


def encode_to_file(
    directory: str | os.PathLike,
    source: str | os.PathLike | TextSource,
    *,
    fractions: tuple[float, float, float] = SPLIT,
    digest: str | None = None,
    chunk_bytes: int = CHUNK_BYTES,
) -> dict[str, Any]:
    """Encode a text file (or a ``TextSource``) into ``directory/ids.bin`` + ``ids.json``, streaming it in pieces of
    ``chunk_bytes``; returns the ``ids.json`` record. Both files are replaced atomically, so that a reader
    (another process of the run) sees the old file or the new one, never half of one.

    ``digest``: the hash the text must have; another text is a ``DataError`` before anything is written.
    """
    if not isinstance(source, TextSource):
        source = TextSource(path=source)
    source.chunk_bytes = chunk_bytes
    vocab, length, current, stat = _scan(source)
    _check_digest(source, current, digest)
    dtype = ids_dtype(vocab.size)
    directory = os.fspath(directory)
    try:
        os.makedirs(directory, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{IDS_FILE}-")
        with os.fdopen(fd, "wb") as f:
            for piece in _encoded(source, vocab, dtype):
                piece.astype(dtype.newbyteorder("<"), copy=False).tofile(f)
        os.replace(tmp, os.path.join(directory, IDS_FILE))
    except OSError as e:
        raise DataError(f"cannot write {os.path.join(directory, IDS_FILE)}: {e.strerror or e}") from None
    meta = {
        "format": IDS_FORMAT,
        "source": source.name,
        "size": stat[0],
        "mtime_ns": stat[1],
        "blake2b": current,
        "vocabulary": "".join(vocab.chars),
        "dtype": dtype.name,
        "length": length,
        "splits": list(_boundaries(length, fractions)),
        "fractions": list(fractions),
    }
    _write_meta(directory, meta)
    return meta


class TextSource:
    """A text to encode (``encode_to_file``): a file read in pieces, or a built-in ``corpus`` or a ``text`` held in
    memory. A missing file or a directory is a ``DataError`` here."""

    def __init__(self, corpus: str = DEFAULT_CORPUS, path: str | os.PathLike | None = None, text: str | None = None):
        self.path = None if path is None else os.fspath(path)
        self.text = text
        self.chunk_bytes = CHUNK_BYTES
        if self.path is not None:
            self.name = os.path.abspath(self.path)
            if not os.path.exists(self.path):
                raise DataError(f"no such file: {self.path}")
            if os.path.isdir(self.path):
                raise DataError(f"{self.path} is a directory; expected a UTF-8 text file")
        elif text is not None:
            self.name = "text"
        else:
            self.name, self.text = f"corpus:{corpus}", load_corpus(corpus)
        self.what = self.path if self.path is not None else f"the text of {self.name}"

    def stat(self) -> tuple[int, int | None]:
        """Size in bytes and modification time (ns; ``None`` for a text in memory)."""
        if self.path is None:
            assert self.text is not None
            return len(self.text.encode("utf-8")), None
        try:
            st = os.stat(self.path)
        except OSError as e:
            raise DataError(f"cannot read {self.path}: {e.strerror}") from None
        return st.st_size, st.st_mtime_ns

    def open(self) -> BinaryIO:
        if self.path is None:
            assert self.text is not None
            return io.BytesIO(self.text.encode("utf-8"))
        try:
            return open(self.path, "rb")
        except OSError as e:
            raise DataError(f"cannot read {self.path}: {e.strerror}") from None

    def pieces(self, on_bytes: Callable[[bytes], object] | None = None) -> Iterator[np.ndarray]:
        """The text's code points, a piece at a time (uint8 for an ASCII piece, else uint32); a multibyte
        character cut by a piece's end is decoded whole with the next. ``on_bytes`` sees every raw piece."""
        decoder = codecs.getincrementaldecoder("utf-8")()
        offset = 0
        with self.open() as f:
            while True:
                raw = f.read(self.chunk_bytes)
                if on_bytes is not None:
                    on_bytes(raw)
                pending = len(decoder.getstate()[0])
                if raw and not pending and raw.isascii():
                    yield np.frombuffer(raw, np.uint8)
                else:
                    try:
                        text = decoder.decode(raw, final=not raw)
                    except UnicodeDecodeError as e:
                        raise DataError(
                            f"{self.what} is not UTF-8 text (byte 0x{e.object[e.start]:02x} at offset "
                            f"{offset - pending + e.start})"
                        ) from None
                    if text:
                        yield np.frombuffer(text.encode("utf-32-le"), np.uint32)
                if not raw:
                    return
                offset += len(raw)

    def hash(self) -> str:
        """The blake2b hex digest of the text's UTF-8 bytes (one streaming read, no decoding)."""
        h = hashlib.blake2b()
        with self.open() as f:
            while raw := f.read(self.chunk_bytes):
                h.update(raw)
        return h.hexdigest()


def _scan(source: TextSource) -> tuple[Vocabulary, int, str, tuple[int, int | None]]:
    """The first pass: vocabulary, length in characters, blake2b digest and ``(size, mtime_ns)`` of the text."""
    stat = source.stat()
    h = hashlib.blake2b()
    seen = np.zeros(0x110000, bool)
    length = 0
    for cps in source.pieces(h.update):
        length += len(cps)
        counts = np.bincount(cps)
        seen[: len(counts)] |= counts > 0
    if not length:
        empty = f"{source.what} is empty" if source.path is not None else "cannot build a vocabulary from empty text"
        raise DataError(empty)
    vocab = Vocabulary(tuple(chr(c) for c in np.flatnonzero(seen)))
    return vocab, length, h.hexdigest(), stat


def _encoded(source: TextSource, vocab: Vocabulary, dtype: np.dtype) -> Iterator[np.ndarray]:
    """The second pass: the ids of each piece, ``(n,)`` of ``dtype`` (a lookup table indexed by code point)."""
    code_points = np.array([ord(c) for c in vocab.chars])
    table = np.zeros(int(code_points[-1]) + 1, dtype)
    table[code_points] = np.arange(vocab.size, dtype=dtype)
    for cps in source.pieces():
        yield table[cps]


def _check_digest(source: TextSource, current: str, digest: str | None) -> None:
    if digest is not None and current != digest:
        raise DataError(
            f"{source.name} has changed: its blake2b hash {current[:16]}... is not {digest[:16]}..., that of the text "
            "the run started on; restore that text or start a new run"
        )


def _read_meta(directory: str) -> dict[str, Any] | None:
    """The ``ids.json`` record in ``directory``, or ``None`` when there is none this version reads."""
    try:
        with open(os.path.join(directory, IDS_META), encoding="utf-8") as f:
            meta = json.load(f)
    except (OSError, ValueError):
        return None
    return meta if isinstance(meta, dict) and meta.get("format") == IDS_FORMAT else None


def _write_meta(directory: str, meta: dict[str, Any]) -> None:
    try:
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{IDS_META}-")
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(meta, f, ensure_ascii=False)
        os.replace(tmp, os.path.join(directory, IDS_META))
    except OSError as e:
        raise DataError(f"cannot write {os.path.join(directory, IDS_META)}: {e.strerror or e}") from None


def _map(directory: str, meta: dict[str, Any]) -> np.memmap | None:
    """The ids of ``ids.bin`` mapped read-only, or ``None`` when the file does not hold what ``meta`` says."""
    path = os.path.join(directory, IDS_FILE)
    dtype = np.dtype(meta["dtype"]).newbyteorder("<")
    try:
        if os.path.getsize(path) != meta["length"] * dtype.itemsize or not meta["length"]:
            return None
        return np.memmap(path, dtype, mode="r", shape=(meta["length"],))
    except OSError:
        return None


def _splits_of(directory: str, meta: dict[str, Any]) -> Splits:
    ids = _map(directory, meta)
    if ids is None:
        raise DataError(f"{os.path.join(directory, IDS_FILE)} does not hold the {meta['length']} ids of {IDS_META}")
    _, a, b, n = meta["splits"]
    vocab = Vocabulary(tuple(meta["vocabulary"]))
    return Splits(vocab, ids[:a], ids[a:b], ids[b:n], meta["source"], meta["blake2b"])
