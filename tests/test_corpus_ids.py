"""Id files: the compact dtype, streamed encoding equal to ``Vocabulary.encode``, reuse without rewriting, a changed
text refused on resume, training on mapped ids equal to training on ids in memory, a bounded evaluation sample."""

import json
import os

import jax
import numpy as np
import pytest

from jaxrnn.data import (
    IDS_FILE,
    IDS_META,
    DataError,
    Vocabulary,
    encode_to_file,
    ids_dtype,
    load_splits,
    open_ids,
    split_ids,
)
from jaxrnn.streams import Streams, evaluation_streams

# 1-, 2-, 3- and 4-byte UTF-8 characters side by side, so that small pieces cut every kind of character.
TEXT = "".join(f"line {i}: naïve café → 日本語 🎉 {'x' * (i % 7)}\n" for i in range(40))


def _write(path, text):
    path.write_bytes(text.encode("utf-8"))
    return str(path)


def test_ids_are_uint8_up_to_256_characters_then_uint16(tmp_path):
    assert [ids_dtype(v).name for v in (1, 256, 257, 65536, 65537)] == ["uint8"] * 2 + ["uint16"] * 2 + ["uint32"]
    small = "".join(chr(0x100 + i) for i in range(256)) * 3  # 256 characters, all two bytes long
    large = "".join(chr(0x100 + i) for i in range(257)) * 3
    for text, dtype in ((small, "uint8"), (large, "uint16")):
        meta = encode_to_file(tmp_path / dtype, _write(tmp_path / f"{dtype}.txt", text))
        assert meta["dtype"] == dtype and meta["length"] == len(text)
        assert os.path.getsize(tmp_path / dtype / IDS_FILE) == len(text) * np.dtype(dtype).itemsize
        ids, _ = open_ids(tmp_path / dtype)
        np.testing.assert_array_equal(ids, Vocabulary.from_text(text).encode(text))


@pytest.mark.parametrize("chunk_bytes", [1, 2, 3, 5, 7, 64, 1 << 20])
def test_streamed_ids_equal_vocabulary_encode_across_piece_boundaries(tmp_path, chunk_bytes):
    vocab = Vocabulary.from_text(TEXT)
    meta = encode_to_file(tmp_path / "ids", _write(tmp_path / "t.txt", TEXT), chunk_bytes=chunk_bytes)
    ids, _ = open_ids(tmp_path / "ids")
    assert meta["vocabulary"] == "".join(vocab.chars) and ids.dtype == np.uint8 and len(ids) == len(TEXT)
    np.testing.assert_array_equal(ids, vocab.encode(TEXT))
    assert meta["splits"] == [0, *np.cumsum([len(p) for p in split_ids(np.arange(len(TEXT)))]).tolist()]


@pytest.mark.parametrize("chunk_bytes", [2, 4, 1 << 20])
def test_invalid_utf8_names_its_byte_and_offset_whatever_the_pieces(tmp_path, chunk_bytes):
    path = tmp_path / "bad.txt"
    path.write_bytes(b"abc\xc3\xff" + b"d" * 10)
    with pytest.raises(DataError, match=r"bad.txt is not UTF-8 text \(byte 0xc3 at offset 3\)$"):
        encode_to_file(tmp_path / "ids", str(path), chunk_bytes=chunk_bytes)
    path.write_bytes(b"abc\xe2\x86")  # cut inside its last character
    with pytest.raises(DataError, match="byte 0xe2 at offset 3"):
        encode_to_file(tmp_path / "ids", str(path), chunk_bytes=chunk_bytes)
    assert not (tmp_path / "ids").exists()


def test_the_in_memory_splits_are_the_old_int32_ids():
    splits = load_splits(text=TEXT)
    vocab = Vocabulary.from_text(TEXT)
    for got, want in zip((splits.train, splits.val, splits.test), split_ids(vocab.encode(TEXT))):
        assert got.dtype == np.int32
        np.testing.assert_array_equal(got, want)
    assert splits.vocab == vocab and splits.source == "text" and len(splits.digest) == 128


def test_an_id_file_is_mapped_and_reused_without_rewriting(tmp_path):
    source, cache = _write(tmp_path / "t.txt", TEXT), tmp_path / "out"
    first = load_splits(path=source, cache_dir=cache)
    ids_stat = os.stat(cache / IDS_FILE)
    second = load_splits(path=source, cache_dir=cache)
    again = os.stat(cache / IDS_FILE)
    assert (again.st_ino, again.st_mtime_ns) == (ids_stat.st_ino, ids_stat.st_mtime_ns)
    # The splits are consecutive views of one read-only map; streams are views of them.
    assert isinstance(second.train, np.memmap) and not second.train.flags.writeable
    address = lambda a: a.__array_interface__["data"][0]
    assert address(second.val) == address(second.train) + len(second.train)
    assert address(second.test) == address(second.val) + len(second.val)
    streams = Streams.from_ids(second.train, 4, 8)
    assert np.shares_memory(streams.inputs, second.train) and streams.inputs.dtype == np.uint8
    assert streams.chunk(0)[0].dtype == np.int32
    np.testing.assert_array_equal(first.train, second.train)
    # A touched file with the same bytes is hashed again and still reused; its new time is recorded.
    os.utime(source, ns=(10**18, 10**18))
    load_splits(path=source, cache_dir=cache)
    assert os.stat(cache / IDS_FILE).st_ino == ids_stat.st_ino
    assert json.loads((cache / IDS_META).read_text())["mtime_ns"] == 10**18
    # Other bytes: encoded again.
    _write(tmp_path / "t.txt", TEXT.upper())
    changed = load_splits(path=source, cache_dir=cache)
    assert os.stat(cache / IDS_FILE).st_ino != ids_stat.st_ino
    np.testing.assert_array_equal(changed.train, split_ids(Vocabulary.from_text(TEXT.upper()).encode(TEXT.upper()))[0])


def test_a_text_whose_hash_differs_from_digest_is_refused_before_writing(tmp_path):
    source, cache = _write(tmp_path / "t.txt", TEXT), tmp_path / "out"
    digest = load_splits(path=source, cache_dir=cache).digest
    ids_stat = os.stat(cache / IDS_FILE)
    _write(tmp_path / "t.txt", TEXT.replace("naïve", "naive"))
    with pytest.raises(DataError, match=r"t.txt has changed: its blake2b hash .* is not .*; restore that text"):
        load_splits(path=source, cache_dir=cache, digest=digest)
    assert os.stat(cache / IDS_FILE).st_ino == ids_stat.st_ino
    with pytest.raises(DataError, match="has changed"):
        load_splits(path=source, cache_dir=tmp_path / "elsewhere", digest=digest)
    assert not (tmp_path / "elsewhere").exists()


TINY = ["--hidden", "8", "--batch-size", "2", "--seq-length", "4", "--steps-per-call", "2", "--eval-every", "4"]
QUIET = ["--no-progress", "--sample-length", "0"]


def _main(argv, capsys):
    from jaxrnn.cli import main

    rc = main(argv)
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return rc, [line for line in err.splitlines() if line.strip()]


def test_a_changed_text_is_refused_on_resume_with_one_line(tmp_path, capsys):
    source, out = _write(tmp_path / "t.txt", TEXT * 3), str(tmp_path / "out")
    assert _main(["train", "--data", source, "--out", out, "--steps", "2", *TINY, *QUIET], capsys)[0] == 0
    ids_stat = os.stat(os.path.join(out, IDS_FILE))
    assert _main(["train", "--out", out, "--resume", "--steps", "4", *QUIET], capsys)[0] == 0
    assert os.stat(os.path.join(out, IDS_FILE)).st_ino == ids_stat.st_ino  # the resumed run mapped the same file
    _write(tmp_path / "t.txt", (TEXT * 3).replace("café", "cafe"))  # same vocabulary, other text
    rc, lines = _main(["train", "--out", out, "--resume", "--steps", "6", *QUIET], capsys)
    assert rc == 2 and len(lines) == 1
    assert lines[0].startswith(f"jaxrnn train: error: {source} has changed: its blake2b hash")


def test_training_on_mapped_ids_equals_training_on_ids_in_memory(tmp_path):
    from jaxrnn.lm.config import RunConfig
    from jaxrnn.lm.model import init_train_state, make_train_chunks

    config = RunConfig(hidden_size=16, batch_size=3, seq_length=5).resolved()
    mapped = load_splits(path=_write(tmp_path / "t.txt", TEXT * 2), cache_dir=tmp_path / "out")
    memory = load_splits(text=TEXT * 2)
    assert mapped.train.dtype == np.uint8 and memory.train.dtype == np.int32
    optimizer = config.make_optimizer()
    train_chunks = make_train_chunks(optimizer, 3)
    states = []
    for splits in (mapped, memory):
        streams = Streams.from_ids(splits.train, 3, 5)
        state = init_train_state(jax.random.PRNGKey(0), config.model(splits.vocab.size), optimizer, 3)
        for step in range(0, 12, 3):
            xs, ys, reset = streams.chunks(step, 3)
            state, _ = train_chunks(state, xs, ys, reset, np.ones(3, bool))
        states.append(state)
    leaves = [jax.tree.leaves(s) for s in states]
    assert all(np.array_equal(a, b) for a, b in zip(*leaves))
    assert int(states[0].step) == 12


def test_evaluation_reads_a_fixed_evenly_spaced_sample_of_a_large_piece():
    ids = np.arange(10_001) % 97
    s = evaluation_streams(ids, batch_size=4, seq_length=10, what="val")  # 4 streams of 2500: 250 chunks
    xs, ys = s.epoch(max_tokens=1000)  # 1000 // (10 * 4) = 25 chunks of every stream
    assert xs.shape == (25, 10, 4) and xs.dtype == np.int32
    whole_xs, _ = s.epoch()
    np.testing.assert_array_equal(xs, whole_xs[:25])  # the start of each of 4 windows spaced 2500 apart
    np.testing.assert_array_equal(xs[0, 0], ids[[0, 2500, 5000, 7500]])
    np.testing.assert_array_equal(s.epoch(max_tokens=1000)[1], ys)  # the same sample every time
    assert s.epoch(max_tokens=10**9)[0].shape == (250, 10, 4)  # a piece that fits is read whole
    assert s.epoch(max_tokens=1)[0].shape == (1, 10, 4)  # at least one chunk


def test_the_trainer_states_how_many_characters_it_evaluated(tmp_path, capsys, monkeypatch):
    from jaxrnn import streams

    source = _write(tmp_path / "t.txt", TEXT * 3)
    splits = load_splits(text=TEXT * 3)
    whole = [evaluation_streams(ids, 2, 4, what="").epoch()[0].size for ids in (splits.val, splits.test)]
    assert min(whole) > 16
    for limit, expected in ((None, whole), (16, [16, 16])):  # small texts are evaluated whole, as before
        if limit is not None:
            monkeypatch.setattr(streams, "EVAL_TOKENS", limit)
        out = tmp_path / f"out{limit}"
        assert _main(["train", "--data", source, "--out", str(out), "--steps", "4", *TINY, *QUIET], capsys)[0] == 0
        records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
        assert [r["val_tokens"] for r in records if "val_loss" in r] == [expected[0]]
        assert [r["test_tokens"] for r in records if "test_loss" in r] == [expected[1]]


def test_a_resume_reuses_the_first_run_s_compiled_programs(tmp_path):
    """The first run's state is committed to its device as a restored one is, so the resumed run finds the
    training and evaluation programs in the compilation cache and compiles neither again."""
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "JAXRNN_NO_COMPILE_CACHE"}
    env["JAXRNN_CACHE_DIR"] = str(tmp_path / "cache")
    source, out = _write(tmp_path / "t.txt", TEXT * 3), str(tmp_path / "out")
    runs = (["--data", source, "--steps", "2", *TINY], ["--resume", "--steps", "4"])
    listings = []
    for flags in runs:
        argv = [sys.executable, "-m", "jaxrnn", "train", "--out", out, *flags, *QUIET]
        proc = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr
        programs = ("jit_train_chunks", "jit_evaluate")
        listings.append(sorted(n for n in os.listdir(tmp_path / "cache") if n.startswith(programs)))
    assert {n.split("-")[0] for n in listings[0]} == {"jit_train_chunks", "jit_evaluate"}
    assert listings[1] == listings[0]  # nothing new compiled by the resumed run


@pytest.mark.slow
def test_the_corpus_scale_benchmark_measures_a_run_and_its_resume(tmp_path):
    import subprocess
    import sys

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    argv = [sys.executable, "-m", "benchmarks.corpus_scale", "--quick", "--out", str(tmp_path), "--workdir"]
    proc = subprocess.run([*argv, str(tmp_path / "work")], cwd=root, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    (row,) = json.loads((tmp_path / "corpus_scale.json").read_text())["rows"]
    assert 1_000_000 <= row["text_bytes"] < 1_100_000 and row["ids_bytes"] < row["text_bytes"]
    for run in (row["first_run"], row["resume"]):
        assert 0 < run["ready_s"] <= run["first_update_s"] <= run["total_s"] and 50 < run["peak_rss_mb"] < 3000
    assert row["val_tokens"] > 0
