"""The time-budget sweep script: its English text, and one short candidate end to end."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from experiments import trainer_defaults
from jaxrnn.data import load_corpus

ROOT = Path(__file__).resolve().parents[1]


def test_the_english_text_is_a_million_characters_of_topics_then_docstrings():
    text = trainer_defaults.english_text()
    topics = load_corpus("pydoc_topics")
    assert len(text) == trainer_defaults.ENGLISH_SIZE and text.startswith(topics)
    assert text == trainer_defaults.english_text()  # the same text on every call
    paragraphs = text[len(topics) :].split("\n\n")
    assert len(paragraphs) > 1000 and " the " in text[len(topics) :]


@pytest.mark.slow
def test_one_candidate_runs_and_merges_into_the_previous_results(tmp_path):
    run = lambda *only: subprocess.run(
        [
            sys.executable,
            "-m",
            "experiments.trainer_defaults",
            "--corpus",
            "pydoc_topics",
            "--minutes",
            "0.2",
            "--out",
            str(tmp_path),
            "--only",
            *only,
        ],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=ROOT,
    )
    assert run("constant").returncode == 0
    proc = run("cosine")
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads((tmp_path / "trainer_defaults_pydoc_topics.json").read_text())
    assert [r["name"] for r in result["runs"]] == ["constant", "cosine"] and len(result["command"]) == 2
    for r in result["runs"]:
        assert r["steps"] > 0 and r["best_val_loss"] <= r["end_val_loss"] < 4.7  # below ln 103 = 4.63 + noise
        assert r["end_above_best"] == pytest.approx(r["end_val_loss"] / r["best_val_loss"] - 1)
    assert (tmp_path / "trainer_defaults_pydoc_topics.png").stat().st_size > 10_000
    bad = subprocess.run(
        [sys.executable, "-m", "experiments.trainer_defaults", "--minutes", "0"],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1
