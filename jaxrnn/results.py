"""Result files of experiments, benchmarks and training runs: the machine they ran on, and the one way the library
writes a file: atomically (JSON, text, PNG), or one synced line appended.

A result is written to a temporary file beside its final path and renamed into place, so a run that fails or
is killed never leaves half a file and never replaces a good result with a broken one.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import platform
import tempfile
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def environment() -> dict[str, Any]:
    """Device, CPU count and package versions, recorded beside every result."""
    import jax
    import optax

    return {
        "device": str(jax.devices()[0]),
        "backend": jax.default_backend(),
        "device_count": jax.device_count(),
        "jax": jax.__version__,
        "jaxlib": _version("jaxlib"),
        "optax": optax.__version__,
        "flax": _version("flax"),
        "numpy": np.__version__,
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
        "machine": platform.machine(),
        "processor": _cpu_model(),
    }


def _version(package: str) -> str | None:
    from importlib import metadata

    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def to_jsonable(x: object) -> Any:
    """``x`` with dataclasses, tuples, NumPy and JAX values turned into JSON types; non-finite floats become
    the strings ``"nan"``, ``"inf"``, ``"-inf"`` (JSON has no such numbers)."""
    if dataclasses.is_dataclass(x) and not isinstance(x, type):
        return to_jsonable(dataclasses.asdict(x))
    if isinstance(x, dict):
        return {str(k): to_jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [to_jsonable(v) for v in x]
    if hasattr(x, "__array__") and not isinstance(x, (str, bytes)):
        return to_jsonable(np.asarray(x).tolist())
    if isinstance(x, (float, np.floating)):
        x = float(x)
        return x if math.isfinite(x) else str(x)
    if isinstance(x, np.integer):
        return int(x)
    if isinstance(x, np.bool_):
        return bool(x)
    return x


def write_atomic(path: str | os.PathLike[str], write: Callable[[str], object]) -> str:
    """Call ``write(tmp_path)`` and rename the file it wrote to ``path`` (made readable by all); returns ``path``.

    When anything fails (a full disk, a directory that vanished or turned read-only) the temporary file is
    removed where it still can be, ``path`` keeps its previous contents, and the first error is raised."""
    path = os.fspath(path)
    directory = os.path.dirname(path) or "."
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-", suffix=os.path.splitext(path)[1])
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):  # the directory may be gone: the first error is the one to report
            os.unlink(tmp)
        raise
    return path


def append_line(path: str | os.PathLike[str], line: str) -> None:
    """Append ``line`` and a newline to the text file at ``path`` (created if missing), synced to disk before
    returning: a crash loses at most the line being written, which readers of the file skip."""
    with open(path, "a", encoding="utf-8") as f:
        f.write(line + "\n")
        f.flush()
        os.fsync(f.fileno())


def write_text(path: str | os.PathLike[str], text: str) -> str:
    """``text`` as a UTF-8 file at ``path``, atomically."""

    def write(tmp: str) -> None:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)

    return write_atomic(path, write)


def write_json(path: str | os.PathLike[str], obj: object) -> str:
    """``obj`` (through ``to_jsonable``) as indented JSON at ``path``, atomically."""

    def write(tmp):
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(to_jsonable(obj), f, indent=1)
            f.write("\n")

    return write_atomic(path, write)


def write_figure(path: str | os.PathLike[str], figure: Figure, *, dpi: int = 120) -> str:
    """A matplotlib ``figure`` as a PNG at ``path``, atomically; the figure is closed afterwards."""
    try:
        return write_atomic(path, lambda tmp: figure.savefig(tmp, dpi=dpi, format="png"))
    finally:
        if figure.canvas.manager is not None:  # a pyplot figure: pyplot keeps it until closed
            import matplotlib.pyplot as plt

            plt.close(figure)
