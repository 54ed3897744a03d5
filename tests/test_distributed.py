"""Several processes on one machine: jax.distributed over gloo on 127.0.0.1, two processes with two CPU devices
each against one process with four, for the core training step and for ``jaxrnn train``; a killed process."""

import json
import os
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

from jaxrnn import distributed
from jaxrnn.cli import EXIT_BAD_INPUT, EXIT_PEER_LOST, main

HERE = os.path.dirname(os.path.abspath(__file__))
TRAIN = [
    "--hidden",
    "32",
    "--batch-size",
    "8",
    "--seq-length",
    "16",
    "--eval-every",
    "10",
    "--steps-per-call",
    "5",
    "--no-progress",
    "--sample-length",
    "0",
    "--no-compile-cache",
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def env(devices: int) -> dict:
    return {
        **os.environ,
        "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}",
        "JAX_PLATFORMS": "cpu",
        "PYTHONUNBUFFERED": "1",
    }


def launch(args_of, n: int, devices: int, **kw):
    """Start ``n`` processes, ``args_of(i)`` the command line of process ``i``."""
    return [
        subprocess.Popen(args_of(i), env=env(devices), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)
        for i in range(n)
    ]


def finish(procs, timeout=240):
    out = [p.communicate(timeout=timeout) for p in procs]
    return [p.returncode for p in procs], out


def jaxrnn_train(out, port, i, n, *extra):
    return [
        sys.executable,
        "-m",
        "jaxrnn",
        "train",
        "--out",
        str(out),
        *TRAIN,
        *extra,
        *(
            ["--coordinator", f"127.0.0.1:{port}", "--num-processes", str(n), "--process-id", str(i)]
            if n > 1
            else ["--data-parallel"]
        ),
    ]


def metrics(out):
    return [json.loads(line) for line in open(os.path.join(out, "metrics.jsonl"))]


@pytest.mark.parametrize(
    "argv, flag",
    [
        (["--coordinator", "localhost", "--num-processes", "2", "--process-id", "0"], "--coordinator"),
        (["--coordinator", "127.0.0.1:99999", "--num-processes", "2", "--process-id", "0"], "--coordinator"),
        (["--coordinator", "127.0.0.1:1234", "--num-processes", "2", "--process-id", "2"], "--process-id"),
        (["--coordinator", "127.0.0.1:1234", "--num-processes", "0", "--process-id", "0"], "--num-processes"),
        (["--coordinator", "127.0.0.1:1234"], "--num-processes"),
        (["--distributed", "--heartbeat-timeout", "0"], "--heartbeat-timeout"),
        (["--distributed"], "--coordinator"),  # no cluster in this environment to read the settings from
        (["--time-budget", "0"], "--time-budget"),
        (["--time-budget", "-2"], "--time-budget"),
        (["--time-budget", "nan"], "--time-budget"),
        (["--time-budget", "5", "--steps", "10"], "--steps"),
        (["--time-budget", "5", "--decay-steps", "10"], "--decay-steps"),
    ],
)
def test_impossible_settings_are_refused_in_one_line(tmp_path, capsys, argv, flag):
    try:
        code = main(["train", "--out", str(tmp_path / "run"), *argv])
    except SystemExit as e:  # argparse's own refusals
        code = e.code
    assert code == EXIT_BAD_INPUT
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and flag in err, err
    assert not (tmp_path / "run").exists()


def test_coordinator_addresses():
    assert distributed.parse_coordinator("10.0.0.1:1234") == ("10.0.0.1", 1234)
    assert distributed.parse_coordinator("node-7.cluster:8476") == ("node-7.cluster", 8476)
    assert distributed.parse_coordinator("[::1]:80") == ("[::1]", 80)
    for bad in ("10.0.0.1", ":1234", "host:0", "host:port", "a b:1", ""):
        with pytest.raises(distributed.DistributedError, match="HOST:PORT"):
            distributed.parse_coordinator(bad)


@pytest.mark.slow
def test_two_processes_train_step_equals_one_process_with_all_devices():
    worker = os.path.join(HERE, "distributed_worker.py")
    port = free_port()
    codes, outs = finish(launch(lambda i: [sys.executable, worker, str(i), "2", str(port), "2"], 2, 2))
    assert codes == [0, 0], outs
    two = json.loads(outs[0][0].strip().splitlines()[-1])
    codes, outs = finish(launch(lambda i: [sys.executable, worker, "0", "1", "0", "4"], 1, 4))
    one = json.loads(outs[0][0].strip().splitlines()[-1])
    assert (two["processes"], two["devices"], one["processes"], one["devices"]) == (2, 4, 1, 4)
    np.testing.assert_allclose(two["losses"], one["losses"], rtol=1e-6)  # float32; only the all-reduce order differs
    assert two["losses"][-1] < two["losses"][0]


@pytest.mark.slow
def test_jaxrnn_train_on_two_processes_equals_one_process_and_resumes(tmp_path):
    port = free_port()
    codes, outs = finish(launch(lambda i: jaxrnn_train(tmp_path / "two", port, i, 2, "--steps", "20"), 2, 2))
    assert codes == [0, 0], outs
    assert "validation" in outs[0][1] and "step 20" in outs[0][1]
    own = lambda text: [line for line in text.splitlines() if line.strip() and not line.startswith("[Gloo]")]
    assert own(outs[1][0]) == own(outs[1][1]) == []  # gloo's lines aside (blank where two interleave)
    codes, outs = finish(launch(lambda i: jaxrnn_train(tmp_path / "one", port, i, 1, "--steps", "20"), 1, 4))
    assert codes == [0], outs
    two, one = metrics(tmp_path / "two"), metrics(tmp_path / "one")
    assert [r["step"] for r in two] == [r["step"] for r in one]
    for key in ("train_loss", "val_loss", "test_loss"):
        a = [r[key] for r in two if key in r]
        assert a and np.allclose(a, [r[key] for r in one if key in r], rtol=1e-5, atol=0), key
    port = free_port()  # both processes continue the run from the checkpoints they wrote together
    codes, outs = finish(
        launch(lambda i: jaxrnn_train(tmp_path / "two", port, i, 2, "--steps", "30", "--resume"), 2, 2)
    )
    assert codes == [0, 0], outs
    assert [r["step"] for r in metrics(tmp_path / "two") if "val_loss" in r] == [10, 20, 30]


@pytest.mark.slow
@pytest.mark.parametrize("killed", [1, 0])  # 0 also hosts the coordination service
def test_a_killed_process_stops_the_other_in_one_line_and_the_run_resumes(tmp_path, killed):
    port, out = free_port(), tmp_path / "run"
    timeout = 10
    procs = launch(
        lambda i: jaxrnn_train(out, port, i, 2, "--steps", "100000", "--heartbeat-timeout", str(timeout)), 2, 2
    )
    deadline = time.monotonic() + 180
    while not (out / "checkpoints" / "20").exists():
        assert time.monotonic() < deadline and all(p.poll() is None for p in procs), "no checkpoint written"
        time.sleep(0.5)
    survivor = procs[1 - killed]
    procs[killed].send_signal(signal.SIGKILL)
    start = time.monotonic()
    _, err = survivor.communicate(timeout=timeout + 60)
    assert time.monotonic() - start < timeout + 30
    procs[killed].communicate()
    assert survivor.returncode != 0, err
    ours = [line for line in err.splitlines() if "lost contact with the other processes" in line]
    if survivor.returncode == EXIT_PEER_LOST:  # a collective noticed first: our line, and nothing else
        assert len(ours) == 1 and "--resume" in ours[0] and "Traceback" not in err, err
    else:  # the heartbeat timeout noticed first: jax.distributed aborts the process with its own message
        assert "another task died" in err, err
    done = max(int(p.name) for p in (out / "checkpoints").iterdir() if p.name.isdigit())
    port = free_port()
    codes, outs = finish(launch(lambda i: jaxrnn_train(out, port, i, 2, "--steps", str(done + 10), "--resume"), 2, 2))
    assert codes == [0, 0], outs
    assert f"step {done + 10}: validation" in outs[0][1]
