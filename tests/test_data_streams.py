"""Splitting, the second built-in corpus, and the layout of parallel streams for truncated BPTT."""

import numpy as np
import pytest

from jaxrnn.data import CORPORA, DataError, Vocabulary, load_corpus, split_ids
from jaxrnn.streams import Streams, evaluation_streams


def test_split_is_contiguous_90_5_5():
    ids = np.arange(1000)
    train, val, test = split_ids(ids)
    assert (len(train), len(val), len(test)) == (900, 50, 50)
    np.testing.assert_array_equal(np.concatenate([train, val, test]), ids)


def test_stdlib_source_corpus_is_python_and_deterministic():
    assert "stdlib_source" in CORPORA
    text = load_corpus("stdlib_source")
    assert len(text) > 100_000 and "def " in text and "import " in text
    assert Vocabulary.from_text(text) == Vocabulary.from_text(load_corpus("stdlib_source"))


def test_streams_continue_across_chunks_and_wrap():
    ids = np.arange(2 * 10 + 1, dtype=np.int32)  # 2 streams of L = 10, T = 3 -> 3 chunks per epoch
    s = Streams.from_ids(ids, batch_size=2, seq_length=3)
    assert s.chunks_per_epoch == 3
    xs0, ys0, r0 = s.chunk(0)
    xs1, ys1, r1 = s.chunk(1)
    assert xs0.shape == (3, 2)
    np.testing.assert_array_equal(xs0[:, 0], [0, 1, 2])
    np.testing.assert_array_equal(xs0[:, 1], [10, 11, 12])  # stream 1 starts at b * L
    np.testing.assert_array_equal(xs1[:, 0], [3, 4, 5])  # the next chunk continues each stream
    np.testing.assert_array_equal(ys0, xs0 + 1)  # targets: the next character
    assert r0.all() and not r1.any()
    xs3, _, r3 = s.chunk(3)  # epoch wraps: chunk 3 is chunk 0 again, and the state must reset
    np.testing.assert_array_equal(xs3, xs0)
    assert r3.all()
    xs, ys, resets = s.chunks(2, 3)
    assert xs.shape == (3, 3, 2) and resets.tolist() == [[False] * 2, [True] * 2, [False] * 2]


def test_too_short_text_is_a_clear_error():
    with pytest.raises(DataError, match="too short: 16 characters.*at least 17"):
        Streams.from_ids(np.arange(16), batch_size=4, seq_length=4)
    with pytest.raises(DataError, match="positive integer"):
        Streams.from_ids(np.arange(100), batch_size=0, seq_length=4)


def test_evaluation_streams_shrink_the_batch_for_a_short_piece():
    s = evaluation_streams(np.arange(30), batch_size=32, seq_length=4, what="val")
    assert s.batch_size == 7 and s.chunks_per_epoch == 1
    with pytest.raises(DataError, match="val is too short"):
        evaluation_streams(np.arange(3), batch_size=32, seq_length=4, what="val")
