"""Training metrics on disk: one JSON object per line (JSONL), and a PNG of the loss curves."""

from __future__ import annotations

import json
import math
import os
from typing import Any


def append_metrics(path: str | os.PathLike[str], record: dict[str, Any]) -> None:
    """Append ``record`` as one JSON line (flushed, so a crash loses at most the line being written)."""
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(record, sort_keys=True) + "\n")


def read_metrics(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Every record of a JSONL file; a torn last line (a crash mid-write) is skipped."""
    if not os.path.exists(path):
        return []
    records = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return records


def truncate_after(path: str | os.PathLike[str], step: int) -> None:
    """Drop records of steps after ``step`` (resuming from a checkpoint older than the last log line)."""
    records = [r for r in read_metrics(path) if r.get("step", 0) <= step]
    tmp = f"{path}.tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.writelines(json.dumps(r, sort_keys=True) + "\n" for r in records)
    os.replace(tmp, path)


def plot_curves(records: list[dict[str, Any]], path: str | os.PathLike[str], *, title: str = "") -> None:
    """Train and validation loss (nats per character) against update step, saved as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from jaxrnn.results import write_figure

    fig, ax = plt.subplots(figsize=(6.4, 4.0), dpi=100)
    for key, label in (("train_loss", "train"), ("val_loss", "validation")):
        points = [
            (r["step"], r[key]) for r in records if isinstance(r.get(key), (int, float)) and math.isfinite(r[key])
        ]
        if points:
            ax.plot(*zip(*points), label=label, marker="o" if key == "val_loss" else None, markersize=3)
    ax.set_xlabel("update step")
    ax.set_ylabel("loss (nats / character)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    write_figure(path, fig, dpi=100)  # atomically: a failed write never leaves half a PNG
