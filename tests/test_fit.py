"""Training as a function: ``jaxrnn.lm.fit`` equals ``run_training`` to the bit, continues exactly from a state,
and stops when the caller, the budget, a non-finite loss or a diverging loss says so. Tiny models: seconds each."""

import dataclasses
import math

import jax
import numpy as np
import pytest

from jaxrnn.data import DataError, Splits, load_splits
from jaxrnn.lm import RunConfig, fit, load_model, run_training

TEXT = "".join(f"line {i}: the quick brown fox jumps over the lazy dog.\n" for i in range(60))
TINY = RunConfig(
    hidden_size=8,
    layers=2,
    dropout=0.3,
    batch_size=2,
    seq_length=4,
    steps=10,
    eval_every=4,
    steps_per_call=3,
    sample_length=0,
)
TIMES = ("chars_per_sec", "train_seconds", "elapsed_seconds")


def _same_leaves(a, b):
    return all(np.array_equal(np.asarray(x), np.asarray(y)) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


def _numbers(records):
    """The records without their timings: what two runs of the same settings must share to the bit."""
    return [{k: v for k, v in r.items() if k not in TIMES} for r in records]


def test_fit_equals_run_training_bit_for_bit(tmp_path):
    """The same settings through ``fit`` (text in memory) and ``run_training`` (a file, checkpoints, metrics):
    identical parameters, optimiser state and every loss; the metrics file holds fit's history."""
    path = tmp_path / "text.txt"
    path.write_text(TEXT)
    summary = run_training(dataclasses.replace(TINY, data=str(path)), str(tmp_path / "run"), progress=False)
    result = fit(TINY, TEXT)
    assert result.status == "done" == summary["status"] and int(result.state.step) == 10
    assert _same_leaves(result.state.params, summary["params"])
    params, _, meta = load_model(str(tmp_path / "run"))
    assert meta["step"] == 10 and _same_leaves(result.state.params, params)
    assert _numbers(result.history) == _numbers(summary["records"])
    steps = [(r["step"], "val_loss" in r, "test_loss" in r) for r in result.history]
    assert steps == [(3, False, False), (4, True, False), (7, False, False), (8, True, False), (10, True, False)] + [
        (10, False, True)
    ]  # K = 3 updates a call, cut short at each evaluation and at the last step
    assert summary["val_loss"] == result.val_loss == result.history[-2]["val_loss"]
    assert summary["test_loss"] == result.history[-1]["test_loss"]
    assert result.history[-1]["test_bpc"] == result.history[-1]["test_loss"] / math.log(2)


def test_text_splits_and_ids_in_memory_train_the_same_model():
    splits = load_splits(text=TEXT)
    ids = Splits(splits.vocab, splits.train.copy(), splits.val.copy(), splits.test.copy(), "ids")
    a, b = fit(TINY, TEXT), fit(dataclasses.replace(TINY, corpus="stdlib_source"), ids)  # corpus is not read
    assert _same_leaves(a.state, b.state) and _numbers(a.history) == _numbers(b.history)


def test_continuing_from_a_state_equals_one_run():
    """5 updates, then 5 more from the returned state (with its time), equal 10 in one call, to the bit."""
    whole = fit(TINY, TEXT)
    first = fit(dataclasses.replace(TINY, steps=5), TEXT)
    rest = fit(TINY, TEXT, state=first.state, train_seconds=first.train_seconds)
    assert int(first.state.step) == 5 and _same_leaves(whole.state, rest.state)
    assert [r["step"] for r in rest.history if "train_loss" in r] == [8, 10]  # 5 -> 8 (an evaluation), 8 -> 10
    assert rest.train_seconds > first.train_seconds


def test_a_plan_holds_what_the_config_derives_and_equal_settings_share_one_optimizer():
    """``RunConfig.plan`` computes at once what ``fit`` reads; runs that differ only in what the optimiser does not
    see (here the step count) get the same optimiser object, which ``fit`` keys its compiled step by."""
    config, plan = TINY.resolved(), TINY.plan(40)
    assert plan.config == config and plan.model == config.model(40)
    assert plan.optimizer_settings == config.optimizer_settings and plan.compute_dtype == config.compute_dtype
    assert dataclasses.replace(TINY, steps=5).plan(40).optimizer is plan.optimizer


def test_the_caller_stops_the_run_with_should_stop_or_a_callback():
    calls = []
    stopped = fit(TINY, TEXT, should_stop=lambda: len(calls) >= 2, callbacks=[lambda s, r: calls.append(r)])
    assert stopped.status == "stopped" and int(stopped.state.step) == 4  # two compiled calls: 3, then 1 to step 4
    assert [r["step"] for r in stopped.history] == [3, 4]  # evaluated at 4 already: no test loss, no extra record
    by_callback = fit(TINY, TEXT, callbacks=[lambda state, record: int(state.step) >= 3])
    assert by_callback.status == "stopped" and int(by_callback.state.step) == 3
    assert [sorted(r) for r in by_callback.history][-1] == [  # a stop is not evaluated: its caller saves at once
        "chars_per_sec",
        "elapsed_seconds",
        "step",
        "train_loss",
        "train_seconds",
    ]
    assert by_callback.val_loss is None and by_callback.stop == 1 and stopped.stop == 1
    by_number = fit(TINY, TEXT, should_stop=lambda: 15)  # a signal's number, as jaxrnn train passes it
    assert by_number.status == "stopped" and by_number.stop == 15 and by_number.history == []


def test_a_time_budget_follows_the_given_clock():
    """A clock that advances 1 s a reading (4 readings a call: the budget check, the call's start and end, the
    record): a 0.25-minute budget (15 s) ends the run after the call that starts at 13 s, whatever the machine;
    each call's learning rate is the cosine at the time spent when it started."""
    ticks = iter(range(10_000))
    config = dataclasses.replace(TINY, steps=2000, time_budget=0.25, lr_schedule="cosine")
    result = fit(config, TEXT, clock=lambda: float(next(ticks)))
    trained = [r for r in result.history if "train_loss" in r]
    assert result.status == "done" and [r["step"] for r in trained] == [3, 4, 7, 8]
    assert [r["elapsed_seconds"] for r in trained] == [4.0, 8.0, 12.0, 16.0]
    resolved = config.resolved()
    assert [r["learning_rate"] for r in trained] == [resolved.learning_rate_at(t / 15) for t in (1, 5, 9, 13)]
    assert "test_loss" in result.history[-1] and result.val_loss == trained[-1]["val_loss"]


def test_a_non_finite_loss_returns_the_last_good_state():
    config = dataclasses.replace(
        TINY, layers=1, dropout=0.0, optimizer="sgd", clip=0.0, learning_rate=1e38, steps=12, steps_per_call=1
    )
    result = fit(config, TEXT)
    assert result.status == "nan" and result.reason.startswith("loss became ")
    step = int(result.state.step)
    assert 1 <= step < 12 and result.reason.endswith(f"at step {step + 1}")
    assert all(np.isfinite(np.asarray(x)).all() for x in jax.tree.leaves(result.state.params))
    assert result.val_loss is not None and result.val_loss > math.log(40)  # evaluated: far worse than guessing
    assert [r["step"] for r in result.history] == list(range(1, step + 1))  # no record of the failed update


def test_a_diverging_loss_stops_after_three_evaluations():
    config = dataclasses.replace(
        TINY, layers=1, dropout=0.0, optimizer="sgd", clip=0.0, learning_rate=1e12, steps=40, eval_every=2
    )
    result = fit(config, TEXT)
    assert result.status == "diverged" and "worse than guessing) for 3 evaluations" in result.reason
    assert [r["step"] for r in result.history if "val_loss" in r] == [2, 4, 6]
    assert min(r["val_loss"] for r in result.history if "val_loss" in r) > 2 * math.log(len(set(TEXT)))


def test_bad_data_is_refused_by_name():
    splits = load_splits(text=TEXT)
    with pytest.raises(DataError, match=r"^data.val: token ids must lie in \[0, 40\)"):
        fit(TINY, dataclasses.replace(splits, val=splits.val + 100))
    with pytest.raises(TypeError, match="data must be a text"):
        fit(TINY, splits.train)
    with pytest.raises(DataError, match="the training split of text is too short"):
        fit(TINY, "abc")


def test_the_command_line_s_ctrl_c_is_a_stop_request_and_a_second_one_stops_at_once():
    import os
    import signal

    from jaxrnn.cli import stop_requests

    before = signal.getsignal(signal.SIGINT)
    with stop_requests() as should_stop:
        assert should_stop() == 0
        os.kill(os.getpid(), signal.SIGINT)
        assert should_stop() == signal.SIGINT
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
    assert signal.getsignal(signal.SIGINT) is before


def test_run_training_prints_nothing_without_log(tmp_path, capsys):
    path = tmp_path / "text.txt"
    path.write_text(TEXT)
    config = dataclasses.replace(TINY, data=str(path), steps=2, eval_every=2)
    summary = run_training(config, str(tmp_path / "run"), progress=False)
    captured = capsys.readouterr()
    assert summary["status"] == "done" and captured.out == captured.err == ""
    assert [r["step"] for r in summary["records"]] == [2, 2]  # the training record (evaluated) and the test loss
