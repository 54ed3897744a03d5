"""The faults a cluster job meets: a scheduler's stop signals, a full disk or an unwritable file while writing, and
corrupted checkpoints. Each is one line and a known exit status; checkpoints stay whole; resuming is exact."""

import errno
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from jaxrnn.checkpoint import CheckpointError, CheckpointStore, checksums, sum32
from jaxrnn.cli import EXIT_BAD_INPUT, main
from jaxrnn.lm import load_model
from jaxrnn.lm.config import restore_target
from jaxrnn.cli import EXIT_PREEMPTED

TINY = ["--hidden", "8", "--batch-size", "2", "--seq-length", "4", "--steps-per-call", "2", "--no-progress"]
QUIET = ["--sample-length", "0"]


def run_main(argv, capsys):
    """``main(argv)`` in this process: (exit status, non-blank stderr lines)."""
    rc = main(argv)
    err = capsys.readouterr().err
    assert "Traceback" not in err and "Exception ignored" not in err, err
    return rc, [line for line in err.splitlines() if line.strip()]


def entries(directory):
    return sorted(os.listdir(directory))


def leaves_equal(a, b):
    return all(np.array_equal(np.asarray(x), np.asarray(y)) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


# --- stop signals -------------------------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGUSR1])
def test_a_stop_signal_saves_the_step_reached_and_the_resumed_run_is_exact(tmp_path, text_file, capsys, signum):
    """The signal arrives mid-run: the process finishes the call in flight, saves that step (no evaluation, no
    partial folder), says so in one line and exits with 143; resuming to N steps gives the parameters of an
    uninterrupted run of N steps, bit for bit."""
    out, flags = tmp_path / "stopped", [*TINY, *QUIET, "--data", text_file, "--eval-every", "100000"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "jaxrnn", "train", "--out", str(out), "--steps", "1000000", *flags],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "JAXRNN_NO_COMPILE_CACHE": "1"},
    )
    metrics, deadline = out / "metrics.jsonl", time.monotonic() + 180
    while not (metrics.exists() and metrics.read_text().count("\n") >= 3):
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.1)
    proc.send_signal(signum)
    _, err = proc.communicate(timeout=180)
    lines = [line for line in err.splitlines() if line.strip()]
    assert proc.returncode == EXIT_PREEMPTED, err
    reported = [json.loads(line)["step"] for line in metrics.read_text().splitlines()][-1]
    saved = CheckpointStore(out / "checkpoints", create=False).steps()
    assert len(saved) == 1 and reported <= saved[0] <= reported + 2  # within one compiled call (2 updates)
    step = saved[0]
    assert entries(out / "checkpoints") == [str(step)]  # no temporary folder
    assert len(lines) == 2 and lines[1] == (
        f"{signal.Signals(signum).name} at step {step}: saved checkpoint {step} in {out}/checkpoints; "
        f"continue with: jaxrnn train --out {out} --resume"
    )
    assert load_model(str(out))[2]["val_loss"] is None  # saved without waiting for an evaluation

    rc, _ = run_main(["train", "--out", str(out), "--resume", "--steps", str(step + 6), *TINY, *QUIET], capsys)
    assert rc == 0
    whole = tmp_path / "whole"
    assert run_main(["train", "--out", str(whole), "--steps", str(step + 6), *flags], capsys)[0] == 0
    (resumed, _, meta), (straight, _, meta_whole) = load_model(str(out)), load_model(str(whole))
    assert meta["step"] == meta_whole["step"] == step + 6
    assert leaves_equal(resumed, straight)


def test_checkpoint_every_minutes_saves_on_the_clock_without_evaluating(tmp_path, text_file, capsys, monkeypatch):
    from jaxrnn.lm import loop

    class Clock:  # every reading is 0.25 s later: a save is due every few compiled calls
        now = 0.0

        def perf_counter(self):
            self.now += 0.25
            return self.now

    monkeypatch.setattr(loop, "time", Clock())
    out = tmp_path / "clock"
    argv = ["train", "--data", text_file, "--out", str(out), "--steps", "20", "--eval-every", "10", *TINY, *QUIET]
    rc, _ = run_main([*argv, "--keep", "100", "--checkpoint-every-minutes", "0.02"], capsys)  # every 1.2 s
    assert rc == 0
    store = CheckpointStore(out / "checkpoints", create=False)
    on_clock = [s for s in store.steps() if s % 10]
    assert on_clock and store.steps() == sorted({*on_clock, 10, 20})
    assert all(store.read_meta(s)["val_loss"] is None for s in on_clock)
    assert store.best_step() in (10, 20)  # a checkpoint without a validation loss is never the best
    argv[4] = str(tmp_path / "never")
    rc, lines = run_main([*argv, "--checkpoint-every-minutes", "0"], capsys)
    assert rc == EXIT_BAD_INPUT and lines == [
        "jaxrnn train: error: --checkpoint-every-minutes must be a positive number of minutes, got 0"
    ]


# --- write errors -------------------------------------------------------------------------------------------------


def _mount_tmpfs(directory, size):
    os.makedirs(directory)
    if (
        os.geteuid() != 0
        or subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", directory]).returncode
    ):
        pytest.skip("mounting a tmpfs needs root")


@pytest.mark.slow
@pytest.mark.parametrize("how", ["tmpfs", "file size limit"])
def test_a_full_disk_while_writing_a_checkpoint_is_one_line_and_leaves_no_partial_folder(tmp_path, text_file, how):
    """A real full disk: a 700 KB tmpfs (root only), or a file size limit (``RLIMIT_FSIZE``: every write past
    100 KB fails with EFBIG) set when resuming a run that holds checkpoint 4. orbax's writer threads and
    coroutines fail for real; the user sees one line naming the checkpoint, the cause and the last good one."""
    disk = str(tmp_path / "disk")
    flags = [*TINY, *QUIET, "--hidden", "64", "--eval-every", "4", "--keep", "100"]
    train = [sys.executable, "-m", "jaxrnn", "train", "--out", f"{disk}/out", *flags]
    env = {**os.environ, "JAXRNN_NO_COMPILE_CACHE": "1"}
    if how == "tmpfs":
        _mount_tmpfs(disk, "700k")
        cause, argv, limit = "No space left on device", [*train, "--data", text_file, "--steps", "400"], None
    else:
        first = subprocess.run([*train, "--data", text_file, "--steps", "4"], env=env, capture_output=True, text=True)
        assert first.returncode == 0, first.stderr
        cause, argv, limit = "File too large", [*train, "--resume", "--steps", "8"], 100_000

    def limited():
        if limit is not None:
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG instead
            resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    try:
        proc = subprocess.run(argv, env=env, capture_output=True, text=True, preexec_fn=limited, timeout=300)
        lines = [line for line in proc.stderr.splitlines() if line.strip()]
        assert proc.returncode == EXIT_BAD_INPUT, proc.stderr
        steps = sorted(int(n) for n in os.listdir(f"{disk}/out/checkpoints") if n.isdigit())
        failed = [line for line in lines if line.startswith("jaxrnn train: error:")]
        assert len(lines) == 2 and failed == [
            f"jaxrnn train: error: cannot write checkpoint {disk}/out/checkpoints/{steps[-1] + 4}: {cause}; the last "
            f"good checkpoint is {disk}/out/checkpoints/{steps[-1]}"
        ], proc.stderr
        assert not [n for n in os.listdir(f"{disk}/out/checkpoints") if "tmp" in n]
        records = [json.loads(line) for line in open(f"{disk}/out/metrics.jsonl")]
        assert records[-1]["step"] == steps[-1] + 2  # the metrics so far are whole
        sample = subprocess.run(
            [sys.executable, "-m", "jaxrnn", "sample", "--out", f"{disk}/out", "--length", "10"],
            env=env,
            capture_output=True,
            text=True,
        )
        assert sample.returncode == 0 and f"checkpoint of step {steps[-1]} " in sample.stderr, sample.stderr
    finally:
        if how == "tmpfs":
            subprocess.run(["umount", disk])


def _failing_open(monkeypatch, module, name, error, after):
    """``module.open`` fails with ``error`` on calls for a file called ``name`` after the first ``after``."""
    real, calls = open, []

    def fake(path, *args, **kwargs):
        if os.path.basename(os.fspath(path)) == name:
            calls.append(path)
            if len(calls) > after:
                if error == errno.ENOENT:  # the output directory vanished
                    shutil.rmtree(os.path.dirname(os.fspath(path)), ignore_errors=True)
                    return real(path, *args, **kwargs)
                raise OSError(error, os.strerror(error), path)
        return real(path, *args, **kwargs)

    monkeypatch.setattr(module, "open", fake, raising=False)


@pytest.mark.parametrize("error", [errno.EACCES, errno.ENOSPC, errno.EROFS, errno.ENOENT])
def test_a_metrics_file_that_cannot_be_written_stops_the_run_in_one_line(
    tmp_path, text_file, capsys, monkeypatch, error
):
    import jaxrnn.results

    _failing_open(monkeypatch, jaxrnn.results, "metrics.jsonl", error, after=3)  # the 4th record fails: step 8
    out = tmp_path / "out"
    argv = ["train", "--data", text_file, "--out", str(out), "--steps", "20", "--eval-every", "4", *TINY, *QUIET]
    rc, lines = run_main(argv, capsys)
    assert rc == EXIT_BAD_INPUT and len(lines) == 2
    assert lines[1] == (
        f"jaxrnn train: error: cannot write {out}/metrics.jsonl: {os.strerror(error)}; the last good checkpoint "
        f"is {out}/checkpoints/8"
    )
    if error != errno.ENOENT:
        assert [json.loads(line)["step"] for line in open(out / "metrics.jsonl")] == [2, 4, 6]
        assert CheckpointStore(out / "checkpoints", create=False).steps() == [4, 8]


def test_a_plot_that_cannot_be_written_stops_in_one_line_and_leaves_no_temporary_file(
    tmp_path, text_file, capsys, monkeypatch
):
    pytest.importorskip("matplotlib")
    from matplotlib.figure import Figure

    def full(self, *args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(Figure, "savefig", full)
    out = tmp_path / "out"
    argv = ["train", "--data", text_file, "--out", str(out), "--steps", "4", "--eval-every", "4", *TINY, *QUIET]
    rc, lines = run_main(argv, capsys)
    assert rc == EXIT_BAD_INPUT and lines[-1] == (
        f"jaxrnn train: error: cannot write {out}/curves.png: No space left on device; the last good checkpoint is "
        f"{out}/checkpoints/4"
    )
    assert entries(out) == ["checkpoints", "ids.bin", "ids.json", "metrics.jsonl"]


# --- corrupted checkpoints ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def run_of_8(tmp_path_factory, text_file):
    """A run with checkpoints 4 and 8."""
    out = tmp_path_factory.mktemp("run") / "out"
    argv = ["train", "--data", text_file, "--out", str(out), "--steps", "8", "--eval-every", "4", "--keep", "10"]
    assert main([*argv, *TINY, *QUIET]) == 0
    return out


def _overwrite(path):
    with open(path, "r+b") as f:
        size = len(f.read())
        f.seek(0)
        f.write(np.random.default_rng(0).bytes(size))


def _corrupt(checkpoint, kind):
    state = checkpoint / "state"
    if kind == "arrays from another checkpoint":  # a whole, valid array store of other values: only the checksums see
        shutil.rmtree(state)
        shutil.copytree(checkpoint.parent / "4" / "state", state)
    elif kind == "array data":
        for name in os.listdir(state / "d"):
            _overwrite(state / "d" / name)
    else:
        _overwrite(checkpoint / {"metadata": "meta/metadata", "metrics": "metrics/metrics"}.get(kind, f"state/{kind}"))


KINDS = ["arrays from another checkpoint", "array data", "_METADATA", "manifest.ocdbt", "metadata", "metrics"]


@pytest.mark.parametrize("kind", [pytest.param(k, marks=pytest.mark.slow) if i else k for i, k in enumerate(KINDS)])
def test_a_corrupt_newest_checkpoint_is_set_aside_in_one_line_and_the_run_resumes_from_the_one_before(
    tmp_path, run_of_8, capsys, kind
):
    out = tmp_path / "out"
    shutil.copytree(run_of_8, out)
    _corrupt(out / "checkpoints" / "8", kind)
    rc, lines = run_main(["train", "--out", str(out), "--resume", "--steps", "12", *TINY, *QUIET], capsys)
    assert rc == 0 and len(lines) == 3, lines
    assert lines[0].startswith(f"checkpoint {out}/checkpoints/8 is unreadable (")
    assert lines[0].endswith(f"); moved to {out}/checkpoints/8.unreadable; using {out}/checkpoints/4")
    assert lines[1].endswith("step 4 of 12") and lines[2].startswith("step 12: validation")
    assert [e for e in entries(out / "checkpoints") if e != "errors.log"] == ["12", "4", "8", "8.unreadable"]
    assert [json.loads(line)["step"] for line in open(out / "metrics.jsonl")][:4] == [2, 4, 6, 8]  # 8 again


@pytest.mark.parametrize("kind", ["arrays from another checkpoint", "array data"])
def test_sample_skips_a_corrupt_checkpoint_unless_it_is_named(tmp_path, run_of_8, capsys, kind):
    out = tmp_path / "out"
    shutil.copytree(run_of_8, out)
    _corrupt(out / "checkpoints" / "8", kind)
    rc, lines = run_main(["sample", "--out", str(out), "--checkpoint", "latest", "--length", "5"], capsys)
    assert rc == 0 and len(lines) == 2 and lines[1].startswith("sampling from the checkpoint of step 4 ")
    assert lines[0].startswith(f"checkpoint {out}/checkpoints/8 is unreadable (")
    assert lines[0].endswith(f"); using {out}/checkpoints/4")
    rc, lines = run_main(["sample", "--out", str(out), "--checkpoint", "8", "--length", "5"], capsys)
    assert rc == EXIT_BAD_INPUT and len(lines) == 1
    assert lines[0].startswith(f"jaxrnn sample: error: checkpoint {out}/checkpoints/8 is unreadable (")
    assert entries(out / "checkpoints") == ["4", "8"]  # sampling moves nothing


def test_overwritten_arrays_never_restore_silently(tmp_path, run_of_8):
    """orbax restores the arrays of another checkpoint without complaint; the checksums name the first that
    differs."""
    out = tmp_path / "out"
    shutil.copytree(run_of_8, out)
    _corrupt(out / "checkpoints" / "8", "arrays from another checkpoint")
    store = CheckpointStore(out / "checkpoints", create=False)
    with pytest.raises(CheckpointError, match=r"8 is unreadable \(state\.params\..* differ from the checksums"):
        load_model(str(out), "8")
    meta = store.read_meta(8)
    assert meta["step"] == 8 and len(meta["checksums"]) == len(jax.tree.leaves(restore_target(meta)))


def test_no_readable_checkpoint_is_an_error_naming_the_newest(tmp_path, run_of_8, capsys):
    out = tmp_path / "out"
    shutil.copytree(run_of_8, out)
    for step in ("4", "8"):
        _corrupt(out / "checkpoints" / step, "metadata")
    rc, lines = run_main(["train", "--out", str(out), "--resume", "--steps", "12", *TINY, *QUIET], capsys)
    assert rc == EXIT_BAD_INPUT and len(lines) == 1
    assert lines[0].startswith(f"jaxrnn train: error: checkpoint {out}/checkpoints/8 is unreadable (")
    assert [e for e in entries(out / "checkpoints") if e != "errors.log"] == ["4", "8"]  # nothing moved


# --- checksums ----------------------------------------------------------------------------------------------------


def test_sum32_is_the_same_on_the_host_and_on_the_devices_and_sees_one_changed_word():
    from jaxrnn.checkpoint import _sum32_on_devices

    rng = np.random.default_rng(0)
    arrays = [
        rng.normal(size=(3, 5)).astype(np.float32),
        rng.integers(0, 2**31, size=(7,)).astype(np.uint32),
        np.asarray(3, np.int32),
        rng.normal(size=(4, 4)).astype(jax.numpy.bfloat16),
        np.array([True, False, True]),
    ]
    for a in arrays:
        assert sum32(a) == int(_sum32_on_devices(jax.numpy.asarray(a)))
    a = arrays[0].copy()
    before = sum32(a)
    a.view(np.uint32)[1, 2] ^= 1  # one bit of one word
    assert sum32(a) != before
    b = arrays[0].copy()
    b[[0, 1]] = b[[1, 0]]  # two rows swapped
    assert sum32(b) != before
    assert checksums({"w": arrays[0], "none": None}) == {"['w']": f"{before:08x}"}


@pytest.mark.slow
def test_sigterm_to_every_process_of_a_distributed_run_saves_one_checkpoint_and_the_run_resumes(tmp_path, text_file):
    """What ``srun`` does at ``--signal``: every process gets SIGTERM; process 0's decision is broadcast, every
    process writes its part of the checkpoint and exits with 143; process 0 alone prints."""
    from test_distributed import finish, free_port, jaxrnn_train, launch

    out, port = tmp_path / "run", free_port()
    procs = launch(lambda i: jaxrnn_train(out, port, i, 2, "--steps", "100000", "--data", text_file), 2, 2)
    metrics, deadline = out / "metrics.jsonl", time.monotonic() + 240
    while not (metrics.exists() and metrics.read_text().count("\n") >= 3):
        assert time.monotonic() < deadline and all(p.poll() is None for p in procs)
        time.sleep(0.2)
    for proc in procs:
        proc.send_signal(signal.SIGTERM)
    codes, outs = finish(procs)
    assert codes == [EXIT_PREEMPTED, EXIT_PREEMPTED], outs
    own = lambda text: [line for line in text.splitlines() if line.strip() and not line.startswith("[Gloo]")]
    assert own(outs[1][1]) == [] and own(outs[0][1])[-1].startswith("SIGTERM at step ")
    reported = [json.loads(line)["step"] for line in metrics.read_text().splitlines()][-1]
    step = max(int(n) for n in entries(out / "checkpoints") if n.isdigit())
    assert reported <= step <= reported + 5 and not [n for n in entries(out / "checkpoints") if "tmp" in n]
    port = free_port()
    codes, outs = finish(
        launch(lambda i: jaxrnn_train(out, port, i, 2, "--steps", str(step + 5), "--resume", "--data", text_file), 2, 2)
    )
    assert codes == [0, 0] and f"step {step + 5}: validation" in outs[0][1], outs
