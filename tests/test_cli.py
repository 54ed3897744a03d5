"""The command line: exact resume, bad input with one-line errors and exit status 2, Ctrl-C, `--help`,
`python -m jaxrnn`, checkpoints of jaxrnn 0.1. Tiny models: each training run is seconds."""

import json
import os
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from jaxrnn.checkpoint import CheckpointStore
from jaxrnn.cli import build_parser, main
from jaxrnn.lm import load_model

LEGACY_RUN = os.path.join(os.path.dirname(__file__), "data", "jaxrnn_0_1_run")

TINY = [
    "--hidden",
    "8",
    "--batch-size",
    "2",
    "--seq-length",
    "4",
    "--steps-per-call",
    "2",
    "--eval-every",
    "4",
    "--no-progress",
    "--sample-length",
    "0",
]
TEXT = "".join(f"line {i}: the quick brown fox jumps over the lazy dog.\n" for i in range(60))


def run_main(argv, capsys):
    """``main(argv)`` in this process: (exit status, stderr lines)."""
    try:
        rc = main(argv)
    except SystemExit as e:  # argparse rejects a flag
        rc = e.code
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return rc, [line for line in err.splitlines() if line.strip()]


@pytest.fixture(scope="module")
def trained(tmp_path_factory, text_file):
    out = str(tmp_path_factory.mktemp("run") / "out")
    assert main(["train", "--data", text_file, "--out", out, "--steps", "4", *TINY]) == 0
    return out


def _leaves_equal(a, b):
    return all(np.array_equal(np.asarray(x), np.asarray(y)) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


def test_resume_is_exact(tmp_path, text_file, capsys):
    """10 steps in one go == 5 steps, stop, resume to 10 (bitwise on CPU). Two layers with dropout, so the PRNG
    state must be carried too; 5 is neither a multiple of --steps-per-call nor of --eval-every."""
    flags = [*TINY, "--layers", "2", "--dropout", "0.3", "--data", text_file, "--keep", "10"]
    one, two = str(tmp_path / "one"), str(tmp_path / "two")
    assert run_main(["train", "--out", one, "--steps", "10", *flags], capsys)[0] == 0
    assert run_main(["train", "--out", two, "--steps", "5", *flags], capsys)[0] == 0
    assert (
        run_main(["train", "--out", two, "--steps", "10", "--resume", "--no-progress", "--sample-length", "0"], capsys)[
            0
        ]
        == 0
    )
    p_one, _, meta_one = load_model(one)
    p_two, _, meta_two = load_model(two)
    assert meta_one["step"] == meta_two["step"] == 10
    assert _leaves_equal(p_one, p_two)
    p_five, _, meta_five = load_model(two, "5")
    assert meta_five["step"] == 5
    assert not _leaves_equal(p_five, p_two)  # the resumed run really trained further


def test_train_writes_metrics_curves_and_samples(trained, capsys):
    from jaxrnn.metrics import read_metrics

    records = read_metrics(os.path.join(trained, "metrics.jsonl"))
    vals = [r for r in records if "val_loss" in r]
    assert [r["step"] for r in vals] == [4]
    assert abs(vals[0]["val_bpc"] - vals[0]["val_loss"] / np.log(2)) < 1e-9
    assert [r for r in records if "test_loss" in r]
    assert os.path.getsize(os.path.join(trained, "curves.png")) > 1000
    rc = main(["sample", "--out", trained, "--length", "30", "--prime", "the ", "--seed", "3"])
    out = capsys.readouterr().out
    assert rc == 0 and out.startswith("the ") and len(out) == len("the ") + 30 + 1


def _bad_inputs(tmp_path, text_file, trained):
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    latin1 = tmp_path / "latin1.txt"
    latin1.write_bytes("caf\xe9 ".encode("latin-1") * 50)
    short = tmp_path / "short.txt"
    short.write_text("x" * 30)
    other = tmp_path / "other.txt"
    other.write_text(TEXT.upper())
    blocker = tmp_path / "blocker"
    blocker.write_text("x")
    train = lambda *a: ["train", "--data", text_file, *TINY, *a]
    return {
        "missing file": (["train", "--data", str(tmp_path / "nope.txt"), "--out", str(tmp_path / "o")], "no such file"),
        "directory": (["train", "--data", str(tmp_path), "--out", str(tmp_path / "o")], "is a directory"),
        "empty file": (["train", "--data", str(empty), "--out", str(tmp_path / "o")], "is empty"),
        "too short": (["train", "--data", str(short), "--out", str(tmp_path / "o"), "--batch-size", "8"], "too short"),
        "not utf-8": (["train", "--data", str(latin1), "--out", str(tmp_path / "o")], "not UTF-8"),
        "zero hidden": (train("--out", str(tmp_path / "o"), "--hidden", "0"), "--hidden must be a positive"),
        "negative batch": (train("--out", str(tmp_path / "o"), "--batch-size", "-3"), "--batch-size must be"),
        "zero steps": (train("--out", str(tmp_path / "o"), "--steps", "0"), "--steps must be a positive"),
        "unknown optimizer": (train("--out", str(tmp_path / "o"), "--optimizer", "lion"), "invalid choice"),
        "unknown cell": (train("--out", str(tmp_path / "o"), "--cell", "tanh"), "invalid choice"),
        "not writable": (train("--out", str(blocker / "out")), "blocker"),
        "existing run": (train("--out", trained), "already holds checkpoints"),
        "other vocabulary": (
            ["train", "--data", str(other), "--out", trained, "--resume", "--no-progress"],
            "vocabulary",
        ),
        "other shape": (["train", "--out", trained, "--resume", "--hidden", "16"], "--hidden 16 differs"),
        "nothing to resume": (train("--out", str(tmp_path / "fresh"), "--resume"), "nothing to resume"),
        "bad temperature": (["sample", "--out", trained, "--temperature", "-1"], "--temperature must be"),
        "bad top-k": (["sample", "--out", trained, "--top-k", "0"], "--top-k must be between"),
        "bad checkpoint": (["sample", "--out", trained, "--checkpoint", "first"], "--checkpoint must be"),
        "resume 0.1": (["train", "--out", LEGACY_RUN, "--resume"], "written by jaxrnn 0.1"),
        "unknown prime": (["sample", "--out", trained, "--prime", "\u00e9"], "not in the vocabulary"),
        "no checkpoints": (["sample", "--out", str(tmp_path / "nowhere")], "not a directory"),
    }


def test_bad_input_is_one_line_and_exit_status_2(tmp_path, text_file, trained, capsys):
    """Every kind of bad input but the corrupt checkpoint, the NaN loss and Ctrl-C (tested below)."""
    before = sorted(os.listdir(os.path.join(trained, "checkpoints")))
    for name, (argv, expected) in _bad_inputs(tmp_path, text_file, trained).items():
        rc, lines = run_main(argv, capsys)
        errors = [line for line in lines if "error" in line]
        assert rc == 2, name
        assert len(errors) == 1 and expected in errors[0], (name, lines)
    assert sorted(os.listdir(os.path.join(trained, "checkpoints"))) == before  # nothing was overwritten


def test_corrupt_checkpoint(tmp_path, text_file, capsys):
    out = str(tmp_path / "out")
    assert run_main(["train", "--data", text_file, "--out", out, "--steps", "2", *TINY], capsys)[0] == 0
    state_dir = os.path.join(out, "checkpoints", "2", "state")
    for root, _, files in os.walk(state_dir):
        for name in files:
            with open(os.path.join(root, name), "wb") as f:
                f.write(b"\0garbage")
    for argv in (["sample", "--out", out], ["train", "--out", out, "--resume", "--steps", "4", *TINY[-3:]]):
        rc, lines = run_main(argv, capsys)
        assert rc == 2 and len(lines) == 1 and "is unreadable" in lines[0], lines


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path, text_file, capsys):
    """SGD at learning rate 1e38 without clipping: step 1's loss is finite (it is computed before the update),
    a later one is not. Training stops with exit status 2 and the checkpoints hold finite parameters."""
    out = str(tmp_path / "out")
    rc, lines = run_main(
        [
            "train",
            "--data",
            text_file,
            "--out",
            out,
            *TINY,
            "--optimizer",
            "sgd",
            "--clip",
            "0",
            "--learning-rate",
            "1e38",
            "--steps",
            "12",
            "--steps-per-call",
            "1",
            "--eval-every",
            "1",
        ],
        capsys,
    )
    assert rc == 2 and any("loss became" in line and "Last good checkpoint" in line for line in lines), lines
    params, _, meta = load_model(out)
    assert 1 <= meta["step"] < 12
    assert all(np.isfinite(np.asarray(x)).all() for x in jax.tree.leaves(params))


def test_help_documents_every_flag_with_its_default():
    parser = build_parser()
    subparsers = parser._subparsers._group_actions[0].choices
    for name in ("train", "sample"):
        for action in subparsers[name]._actions:
            if action.option_strings and action.dest != "help":
                assert "default" in (action.help or ""), (name, action.option_strings)
    train_flags = {s for a in subparsers["train"]._actions for s in a.option_strings}
    assert {
        "--data",
        "--corpus",
        "--out",
        "--steps",
        "--resume",
        "--cell",
        "--hidden",
        "--layers",
        "--seq-length",
        "--batch-size",
        "--seed",
        "--optimizer",
        "--dropout",
        "--embed-size",
        "--clip",
        "--clip-mode",
        "--lr-schedule",
        "--learning-rate",
        "--precision",
    } <= train_flags
    sample_flags = {s for a in subparsers["sample"]._actions for s in a.option_strings}
    assert {"--out", "--length", "--temperature", "--prime", "--seed", "--top-k"} <= sample_flags


def test_python_dash_m_bad_input_exits_2_without_traceback(tmp_path):
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "jaxrnn",
            "train",
            "--data",
            str(tmp_path / "missing.txt"),
            "--out",
            str(tmp_path / "o"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [f"jaxrnn train: error: no such file: {tmp_path / 'missing.txt'}"]


@pytest.mark.slow
def test_ctrl_c_saves_a_checkpoint_and_exits_cleanly(tmp_path, text_file):
    out = tmp_path / "out"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "jaxrnn",
            "train",
            "--data",
            text_file,
            "--out",
            str(out),
            "--steps",
            "1000000",
            *TINY[:-5],
            "--eval-every",
            "100000",
            "--no-progress",
            "--sample-length",
            "0",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    metrics, deadline = out / "metrics.jsonl", time.time() + 180
    while not (metrics.exists() and metrics.read_text().count("\n") >= 2) and time.time() < deadline:
        assert proc.poll() is None
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=180)
    assert proc.returncode == 130, err
    assert "Traceback" not in err and "interrupted at step" in err
    store = CheckpointStore(out / "checkpoints", create=False)
    step = store.latest_step()
    assert step is not None and step >= 4
    assert store.read_meta(step)["step"] == step


def test_both_cells_default_to_adam_and_adagrad_keeps_the_lecture_clipping():
    """The lecture's clipped Adagrad was chaotic for the batched vanilla RNN (validation 3.65 nats/char after 2000
    steps in experiments/char_lm_quality.py, 1.51 with Adam), so both cells default to Adam."""
    from jaxrnn.lm import RunConfig

    for cell in ("rnn", "lstm"):
        resolved = RunConfig(cell=cell).resolved()
        assert (resolved.optimizer, resolved.clip_mode, resolved.learning_rate) == ("adam", "global_norm", 2e-3)
    lecture = RunConfig(cell="rnn", optimizer="adagrad").resolved()
    assert (lecture.clip_mode, lecture.learning_rate, lecture.clip) == ("value", 0.1, 5.0)


def test_a_gru_stack_trains_from_the_command_line(tmp_path, text_file, capsys):
    out = str(tmp_path / "gru")
    rc, _ = run_main(
        ["train", "--data", text_file, "--out", out, "--steps", "4", "--cell", "gru", "--layers", "2", *TINY], capsys
    )
    params, _, meta = load_model(out)
    assert rc == 0 and meta["config"]["cell"] == "gru"
    assert [type(layer).__name__ for layer in params.layers] == ["GRUParams", "GRUParams"]


def test_a_checkpoint_of_jaxrnn_0_1_still_samples(capsys):
    """``tests/data/jaxrnn_0_1_run`` was written by jaxrnn 0.1 (2-layer LSTM, hidden 8, embedding 4, 4 steps);
    its greedy sample after "the " was, with 0.1's own ``jaxrnn sample``, the text asserted here."""
    params, vocab, meta = load_model(LEGACY_RUN)
    assert meta["format"] == 1 and vocab.size == 29 and params.embedding.shape == (4, 29)
    rc = main(["sample", "--out", LEGACY_RUN, "--length", "40", "--temperature", "0", "--prime", "the "])
    assert rc == 0
    assert capsys.readouterr().out == "the rrffffnnnnnnllnnlnnllnnlnnlnlnnlnnlnlnnl\n"


def test_without_the_train_extra_training_prints_a_line_per_evaluation(tmp_path, text_file, capsys, monkeypatch):
    """``pip install jaxrnn`` without ``[train]``: no tqdm and no matplotlib; training still runs and reports."""
    monkeypatch.setitem(sys.modules, "tqdm", None)  # import tqdm now raises ImportError
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    flags = [f for f in TINY if f != "--no-progress"]
    rc, lines = run_main(["train", "--data", text_file, "--out", str(tmp_path / "o"), "--steps", "8", *flags], capsys)
    assert rc == 0
    assert [line.split(":")[0] for line in lines if line.endswith("chars/s")] == ["step 4", "step 8"]
    assert not (tmp_path / "o" / "curves.png").exists() and (tmp_path / "o" / "metrics.jsonl").exists()


def test_a_diverging_loss_stops_and_sample_reads_the_best_checkpoint(tmp_path, text_file, capsys):
    """SGD at learning rate 1e12 without clipping: the loss stays finite but far above ln V (about 1e12). Three
    evaluations in a row above 2 ln V stop the run with exit status 2; ``jaxrnn sample`` then reads the checkpoint
    of lowest validation loss by default and says which step it is."""
    out = str(tmp_path / "out")
    rc, lines = run_main(
        [
            "train",
            "--data",
            text_file,
            "--out",
            out,
            *TINY,
            "--optimizer",
            "sgd",
            "--clip",
            "0",
            "--learning-rate",
            "1e12",
            "--steps",
            "40",
            "--eval-every",
            "2",
        ],
        capsys,
    )
    assert rc == 2 and len(lines) == 2 and "worse than guessing) for 3 evaluations; stopped" in lines[1], lines
    store = CheckpointStore(os.path.join(out, "checkpoints"), create=False)
    assert store.steps() == [2, 4, 6]  # diverged from the first evaluation on: stopped at the third
    losses = {step: store.read_meta(step)["val_loss"] for step in store.steps()}
    assert min(losses.values()) > 2 * np.log(len(set(TEXT)))
    best = min(losses, key=losses.get)
    assert store.best_step() == best
    rc = main(["sample", "--out", out, "--length", "5"])
    err = capsys.readouterr().err
    assert rc == 0 and f"sampling from the checkpoint of step {best} " in err


@pytest.mark.slow
def test_the_command_line_keeps_compiled_programs_unless_told_not_to(tmp_path, trained):
    """A second ``jaxrnn sample`` reads its programs from the compilation cache in JAXRNN_CACHE_DIR (the same
    text comes out); ``--no-compile-cache`` writes none; a cache that cannot be written is turned off in one line."""

    def sample(cache, *flags):
        env = {k: v for k, v in os.environ.items() if k != "JAXRNN_NO_COMPILE_CACHE"}
        env["JAXRNN_CACHE_DIR"] = str(cache)
        proc = subprocess.run(
            [sys.executable, "-m", "jaxrnn", "sample", "--out", trained, "--length", "20", *flags],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert proc.returncode == 0, proc.stderr
        return proc.stdout

    first = sample(tmp_path / "cache")
    cached = sorted(os.listdir(tmp_path / "cache"))
    assert len(cached) >= 2 and sample(tmp_path / "cache") == first
    assert sorted(os.listdir(tmp_path / "cache")) == cached  # the second run compiled nothing new
    sample(tmp_path / "none", "--no-compile-cache")
    assert not (tmp_path / "none").exists()
    blocker = tmp_path / "blocker"
    blocker.write_text("x")
    env = {k: v for k, v in os.environ.items() if k != "JAXRNN_NO_COMPILE_CACHE"}
    proc = subprocess.run(
        [sys.executable, "-m", "jaxrnn", "sample", "--out", trained, "--length", "20"],
        env={**env, "JAXRNN_CACHE_DIR": str(blocker / "cache")},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0 and proc.stdout == first  # an unwritable cache is one line, not a failure
    assert [line for line in proc.stderr.splitlines() if "cache" in line] == [
        f"jaxrnn: compilation cache off: cannot write {blocker / 'cache'} (set JAXRNN_CACHE_DIR)"
    ]


def test_a_time_budget_ends_the_run_and_the_cosine_follows_it(tmp_path, text_file, capsys, monkeypatch):
    from jaxrnn.lm import loop
    from jaxrnn.lm.config import RunConfig

    class Clock:  # every reading of the clock is 0.25 s later: the run's length no longer depends on the machine
        now = 0.0

        def perf_counter(self):
            self.now += 0.25
            return self.now

    monkeypatch.setattr(loop, "time", Clock())
    out = str(tmp_path / "run")
    rc, err = run_main(
        ["train", "--data", text_file, "--out", out, "--time-budget", "0.1", "--lr-schedule", "cosine", *TINY], capsys
    )
    assert rc == 0, err
    records = [json.loads(line) for line in open(os.path.join(out, "metrics.jsonl"))]
    trained = [r for r in records if "learning_rate" in r]
    assert len(trained) > 3 and trained[0]["learning_rate"] == pytest.approx(2e-3, rel=0.05)  # Adam's, barely decayed
    rates = np.array([r["learning_rate"] for r in trained])
    assert np.all(np.diff(rates) < 0) and rates[-1] < 0.3 * rates[0]  # decayed with the time spent
    final = [r for r in records if "val_loss" in r][-1]
    assert 5.0 < trained[-1]["elapsed_seconds"] < 6.0 <= final["elapsed_seconds"]  # stopped once 6 s had passed
    assert final["step"] == trained[-1]["step"]  # and evaluated and saved where it stopped
    config = RunConfig(lr_schedule="cosine").resolved()
    spent = [r["elapsed_seconds"] for r in trained]  # each call's rate was set a few clock readings before its record
    assert all(
        config.learning_rate_at(t / 6.0) <= lr <= config.learning_rate_at((t - 2.0) / 6.0)
        for t, lr in zip(spent, rates)
    )
    assert CheckpointStore(os.path.join(out, "checkpoints"), create=False).latest_step() == records[-1]["step"]


def test_the_budget_cosine_is_optax_s_cosine_over_the_same_fraction():
    import optax

    from jaxrnn.lm.config import COSINE_FLOOR, RunConfig

    config = RunConfig(lr_schedule="cosine", steps=1000).resolved()
    schedule = optax.cosine_decay_schedule(config.learning_rate, 1000, alpha=COSINE_FLOOR)
    for step in (0, 1, 250, 500, 999, 1000):
        assert config.learning_rate_at(step / 1000) == pytest.approx(float(schedule(step)), rel=1e-6)
    assert config.learning_rate_at(2.0) == pytest.approx(COSINE_FLOOR * config.learning_rate)


def test_resuming_may_change_the_budget_but_not_what_a_cosine_follows():
    import dataclasses

    from jaxrnn.lm.config import RunConfig, resume_config
    from jaxrnn.lm.model import ConfigError

    budget_run = dataclasses.asdict(RunConfig(time_budget=10, lr_schedule="cosine").resolved())
    longer = resume_config(RunConfig(time_budget=20), {"time_budget"}, budget_run)
    assert (longer.time_budget, longer.follows_budget) == (20, True)
    with pytest.raises(ConfigError, match="cannot switch it to a step count"):
        resume_config(RunConfig(steps=5000), {"steps"}, budget_run)
    step_run = dataclasses.asdict(RunConfig(lr_schedule="cosine").resolved())
    with pytest.raises(ConfigError, match="cannot switch it to a time budget"):
        resume_config(RunConfig(time_budget=5), {"time_budget"}, step_run)
    constant = dataclasses.asdict(RunConfig(time_budget=10, lr_schedule="constant").resolved())  # no clock: either way
    assert resume_config(RunConfig(steps=5000), {"steps"}, constant).time_budget is None
    assert (
        resume_config(RunConfig(time_budget=3), {"time_budget"}, dataclasses.asdict(RunConfig().resolved())).time_budget
        == 3
    )


def test_a_time_budget_brings_its_own_defaults_and_the_user_s_settings_win():
    from jaxrnn.lm.config import BUDGET_DEFAULTS, STEP_DEFAULTS, RunConfig

    steps, budget = RunConfig().resolved(), RunConfig(time_budget=10).resolved()
    assert (steps.lr_schedule, steps.layers, steps.dropout) == ("constant", 1, 0.0) == tuple(STEP_DEFAULTS.values())
    assert (budget.lr_schedule, budget.layers, budget.dropout) == ("cosine", 2, 0.4) == tuple(BUDGET_DEFAULTS.values())
    one = RunConfig(time_budget=10, layers=1).resolved()  # no dropout without a layer above
    assert (one.layers, one.dropout, one.lr_schedule) == (1, 0.0, "cosine")
    mine = RunConfig(time_budget=10, layers=3, dropout=0.1, lr_schedule="constant").resolved()
    assert (mine.layers, mine.dropout, mine.lr_schedule) == (3, 0.1, "constant")


def test_precision_bf16_trains_is_recorded_and_a_resumed_run_keeps_it(tmp_path, text_file, capsys):
    out = str(tmp_path / "bf16")
    flags = ["--data", text_file, "--out", out, *TINY]
    rc, err = run_main(["train", "--steps", "4", "--precision", "bf16", *flags], capsys)
    params, _, meta = load_model(out)
    assert rc == 0 and "precision bf16, method fused" in err[0] and meta["config"]["precision"] == "bf16"
    assert all(leaf.dtype == np.float32 for leaf in jax.tree.leaves(params))  # bfloat16 only in the products
    rc, err = run_main(["train", "--out", out, "--steps", "8", "--resume", "--precision", "f32", *TINY], capsys)
    assert rc == 2 and len(err) == 1 and "precision f32 differs from the checkpoint's bf16" in err[0]
    rc, err = run_main(["train", "--out", out, "--steps", "8", "--resume", *TINY], capsys)
    assert rc == 0 and "precision bf16" in err[0]
    assert main(["sample", "--out", out, "--length", "20", "--seed", "1"]) == 0
    assert len(capsys.readouterr().out.strip()) >= 20 - 1
