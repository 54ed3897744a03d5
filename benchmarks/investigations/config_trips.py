"""How often a training run's config goes back to a file of ``jaxrnn/lm`` that it has left.

Traces a tiny ``run_training`` with ``sys.setprofile`` and collects the calls from a function of one file of
``jaxrnn/lm/`` to a function of another, where both hold a ``RunConfig``, ``OptimizerSettings``, ``ModelConfig`` or
``Plan`` among their locals (frames outside ``jaxrnn/lm/`` between the two, such as a dataclass's generated
``__init__`` or ``jax.eval_shape``, are looked through). Each distinct (caller, callee) edge counts once, however
often it runs: its return is one trip back to a file already left. Prints the edges and their number.

    python -m benchmarks.investigations.config_trips
"""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Callable
from types import FrameType

LM = os.sep + os.path.join("jaxrnn", "lm") + os.sep
HELD = ("RunConfig", "OptimizerSettings", "ModelConfig", "Plan")
TEXT = "".join(f"line {i}: the quick brown fox jumps over the lazy dog.\n" for i in range(60))


def _holds_config(frame: FrameType) -> bool:
    return any(
        type(value).__name__ in HELD and type(value).__module__.startswith("jaxrnn.lm")
        for value in frame.f_locals.values()
    )


def _name(frame: FrameType) -> str:
    return f"{os.path.basename(frame.f_code.co_filename)}:{frame.f_code.co_qualname}"


def trips(run: Callable[[], object]) -> list[tuple[str, str]]:
    """The distinct (caller, callee) edges between ``jaxrnn/lm`` files that ``run()`` follows, in first-call order."""
    edges: dict[tuple[str, str], None] = {}

    def profile(frame: FrameType, event: str, arg: object) -> None:
        if event != "call" or LM not in frame.f_code.co_filename or not _holds_config(frame):
            return
        caller = frame.f_back
        while caller is not None and LM not in caller.f_code.co_filename:
            caller = caller.f_back
        if caller is None or caller.f_code.co_filename == frame.f_code.co_filename:
            return
        if _holds_config(caller):
            edges.setdefault((_name(caller), _name(frame)), None)

    sys.setprofile(profile)
    try:
        run()
    finally:
        sys.setprofile(None)
    return list(edges)


def main() -> int:
    os.environ.setdefault("JAX_PLATFORMS", "cpu")
    from jaxrnn.lm import RunConfig, run_training

    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "text.txt")
        with open(path, "w") as f:
            f.write(TEXT)
        config = RunConfig(
            data=path, hidden_size=8, layers=1, batch_size=2, seq_length=8, steps=4, eval_every=2, sample_length=0
        )
        edges = trips(lambda: run_training(config, os.path.join(tmp, "out"), progress=False))
    for caller, callee in edges:
        print(f"{caller} -> {callee}")
    print(f"{len(edges)} returns to a file already left")
    return 0


if __name__ == "__main__":
    sys.exit(main())
