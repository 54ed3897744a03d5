"""Shared set-up: float64 scoped to a test (library code never flips the global flag), and cheap compilation."""

import os

# The tests compile hundreds of small programs and run each a few times: LLVM's expensive passes cost more
# compile time than they save at these sizes (about 40% of the suite). Every comparison here is between programs
# compiled alike, and speed is measured by benchmarks/, not here. JAX_DISABLE_MOST_OPTIMIZATIONS=0 turns it off.
os.environ.setdefault("JAX_DISABLE_MOST_OPTIMIZATIONS", "1")
os.environ.setdefault("JAXRNN_NO_COMPILE_CACHE", "1")  # the command line run in-process must not change JAX's config

import jax  # noqa: E402
import pytest


@pytest.fixture
def x64():
    """Run the test body with float64 enabled, and only the test body."""
    with jax.enable_x64(True):
        yield


FOX_TEXT = "".join(f"line {i}: the quick brown fox jumps over the lazy dog.\n" for i in range(60))
"""The small training text of the command-line tests: 60 lines, a vocabulary of about 40 characters."""


@pytest.fixture(scope="module")
def text_file(tmp_path_factory):
    """``FOX_TEXT`` in a file: what ``jaxrnn train --data`` reads in the command-line and fault tests."""
    path = tmp_path_factory.mktemp("data") / "text.txt"
    path.write_text(FOX_TEXT)
    return str(path)
