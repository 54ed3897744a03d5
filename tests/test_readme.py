"""The README's library page runs as written."""

import pathlib
import re

import jax.numpy as jnp

README = pathlib.Path(__file__).resolve().parents[1] / "README.md"


def test_the_library_page_runs_verbatim():
    text = README.read_text()
    section = text[text.index("## The library in one page") :]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    namespace: dict = {}
    exec(compile(code, str(README), "exec"), namespace)  # noqa: S102
    assert namespace["hs"].shape == (26, 32, 128)
    assert bool(jnp.isfinite(namespace["loss"])) and namespace["loss"].shape == ()
    assert namespace["grads"].Whh.shape == (4 * 128, 128)
