"""The examples in the main entry points' docstrings run and print what they show."""

import doctest
import importlib

import pytest

MODULES = ["jaxrnn.unrolling", "jaxrnn.losses", "jaxrnn.training", "jaxrnn.sampling", "jaxrnn.newton"]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name):
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0, f"{name} has no example"
    assert result.failed == 0
