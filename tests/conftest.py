"""Shared fixtures: float64 scoped to a test (library code never flips the global flag)."""
import jax
import pytest


@pytest.fixture
def x64():
    """Run the test body with float64 enabled, and only the test body."""
    with jax.enable_x64(True):
        yield
