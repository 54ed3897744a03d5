"""Text in, token ids out: built-in corpora, reading text files, a character vocabulary.

This module reads files; it does no training. Every problem with user input raises ``DataError`` with a
one-line message, which the command-line tools print before exiting with status 2.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

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
    n = len(ids)
    n_train = int(round(n * fractions[0]))
    n_val = int(round(n * fractions[1]))
    return ids[:n_train], ids[n_train : n_train + n_val], ids[n_train + n_val :]


@dataclass(frozen=True)
class Splits:
    """A text cut for training: its vocabulary and the train, validation and test ids ``(N_split,)``."""

    vocab: Vocabulary
    train: np.ndarray
    val: np.ndarray
    test: np.ndarray
    source: str
    """Where the text came from, ``corpus:NAME`` or the file's absolute path."""


def load_splits(
    corpus: str = DEFAULT_CORPUS,
    *,
    path: str | os.PathLike | None = None,
    text: str | None = None,
    fractions: tuple[float, float, float] = SPLIT,
) -> Splits:
    """Load a text (a built-in ``corpus``, a file at ``path``, or ``text`` itself), build its vocabulary and cut
    it with ``split_ids``. The one way from a corpus to training ids, shared by the trainer and the scripts."""
    if sum(x is not None for x in (path, text)) > 1:
        raise ValueError("give at most one of path= and text=")
    if text is not None:
        source = "text"
    elif path is not None:
        text, source = load_text(path), os.path.abspath(path)
    else:
        text, source = load_corpus(corpus), f"corpus:{corpus}"
    vocab = Vocabulary.from_text(text)
    train, val, test = split_ids(vocab.encode(text), fractions)
    return Splits(vocab, train, val, test, source)
