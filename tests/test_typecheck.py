"""The public API as type checkers see it: a correct program passes mypy and pyright with no error, and every
deliberate mistake in ``tests/typecheck/bad_usage.py`` is reported on its own marked line, and nothing else.

The checkers run with the project's configuration (``pyproject.toml``) from the repository root, so they check
this checkout's ``jaxrnn`` and not an installed copy. They take tens of seconds each: those tests are ``slow``.
"""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
GOOD = Path("tests/typecheck/good_usage.py")
BAD = Path("tests/typecheck/bad_usage.py")
MARK = "# expect-error"
CHECKERS = ("mypy", "pyright")
_MYPY_LINE = re.compile(r"^(?P<path>[^:\n]+):(?P<line>\d+):(?:\d+:)? error: (?P<message>.*)$")


def _expected_lines(path: Path) -> dict[int, str]:
    """The lines of ``path`` that end with the mark, by 1-based number."""
    lines = (ROOT / path).read_text(encoding="utf-8").splitlines()
    return {n: line.strip() for n, line in enumerate(lines, 1) if line.rstrip().endswith(MARK)}


def _mypy_errors(path: Path) -> dict[int, list[str]]:
    if importlib.util.find_spec("mypy") is None:
        pytest.skip("mypy is not installed (the test extra installs it)")
    command = [sys.executable, "-m", "mypy", "--config-file", "pyproject.toml", "--no-pretty", "--no-error-summary"]
    proc = subprocess.run([*command, str(path)], cwd=ROOT, capture_output=True, text=True, timeout=600)
    if proc.returncode not in (0, 1):  # 2: mypy itself failed (bad configuration, crash)
        pytest.fail(f"mypy failed with status {proc.returncode}:\n{proc.stdout}\n{proc.stderr}")
    errors: dict[int, list[str]] = {}
    for line in proc.stdout.splitlines():
        match = _MYPY_LINE.match(line)
        if match and Path(match["path"]) == path:  # errors in the library's own modules are not this file's
            errors.setdefault(int(match["line"]), []).append(match["message"])
    return errors


def _pyright_errors(path: Path) -> dict[int, list[str]]:
    pyright = Path(sys.executable).with_name("pyright")
    if not pyright.exists():
        pytest.skip(f"pyright is not installed next to {sys.executable} (the test extra installs it)")
    command = [str(pyright), "--outputjson", "--project", "pyproject.toml", "--pythonpath", sys.executable]
    proc = subprocess.run([*command, str(path)], cwd=ROOT, capture_output=True, text=True, timeout=600)
    try:
        report = json.loads(proc.stdout)
    except json.JSONDecodeError:
        pytest.fail(f"pyright gave no report (status {proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    errors: dict[int, list[str]] = {}
    for diagnostic in report["generalDiagnostics"]:
        if diagnostic["severity"] == "error" and Path(diagnostic["file"]) == ROOT / path:
            line = diagnostic["range"]["start"]["line"] + 1  # pyright counts lines from 0
            errors.setdefault(line, []).append(diagnostic["message"].splitlines()[0])
    return errors


def _errors(checker: str, path: Path) -> dict[int, list[str]]:
    return _mypy_errors(path) if checker == "mypy" else _pyright_errors(path)


def _describe(errors: dict[int, list[str]]) -> str:
    return "\n".join(f"  line {n}: {message}" for n in sorted(errors) for message in errors[n])


@pytest.mark.slow
@pytest.mark.parametrize("checker", CHECKERS)
def test_a_correct_program_type_checks(checker):
    errors = _errors(checker, GOOD)
    assert not errors, f"{checker} rejects correct use of jaxrnn in {GOOD}:\n{_describe(errors)}"


@pytest.mark.slow
@pytest.mark.parametrize("checker", CHECKERS)
def test_each_marked_mistake_and_only_it_is_reported(checker):
    expected = _expected_lines(BAD)
    assert len(expected) >= 5, f"{BAD} lost its marked lines"
    errors = _errors(checker, BAD)
    missed = {n: text for n, text in expected.items() if n not in errors}
    unexpected = {n: messages for n, messages in errors.items() if n not in expected}
    assert not missed and not unexpected, (
        f"{checker} on {BAD}:\n"
        + "".join(f"  line {n} not reported: {text}\n" for n, text in sorted(missed.items()))
        + (f"  reported on unmarked lines:\n{_describe(unexpected)}" if unexpected else "")
    )


def test_the_correct_program_runs_and_its_paths_agree():
    spec = importlib.util.spec_from_file_location("good_usage", ROOT / GOOD)
    assert spec is not None and spec.loader is not None
    good_usage = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(good_usage)
    results = good_usage.main()
    assert results["largest_gap_to_fused"] < 1e-5  # the scan, the loop and the fused recurrence agree
    # the train step's first loss is the value_and_grad loss of the same parameters, carry and chunk
    assert results["first_train_loss"] == pytest.approx(results["loss"], rel=1e-6)
    assert results["last_train_loss"] < results["first_train_loss"]
    assert 0 <= results["sampled_max_id"] < results["score_columns"] == results["sequence_score_columns"] == 11
    assert results["stack_h_top_rows"] == 2 and results["grad_norm"] > 0
