"""Training on large texts: peak resident memory and seconds from launch to the first update of
``jaxrnn train --steps 10`` on texts of 10 MB, 100 MB and 1 GB, for a first run (the text is encoded into
``ids.bin``, compilation cache cold) and a ``--resume`` of 10 more updates (``ids.bin`` mapped, cache warm).

Each run is a fresh ``python -m jaxrnn`` process with the command line's default model (LSTM, H = 256, 32
streams x 64 characters). "Ready" is the moment the training loop logs its first line (text, state and
evaluation sample in place); "first update" adds the first compiled call of 10 updates (its ``train_seconds``
in ``metrics.jsonl``; compilation included when the cache is cold). Peak memory is the child's ``ru_maxrss``.
The texts are made deterministically from the ``pydoc_topics`` corpus (its lines in a seeded random order, 2%
of them replaced by lines with multibyte characters), so the runs are reproducible offline. ``--baseline PATH``
runs the same commands on another checkout (e.g. one that reads and encodes the text on every start).
``--data-only`` times ``load_splits`` alone, in process, and adds it to the results.

Command: ``python -m benchmarks.corpus_scale [--quick] [--sizes-mb 10 100 1000] [--baseline PATH]``
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path
from collections.abc import Callable
from typing import Any

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
MULTIBYTE_LINES = (
    "naïve café façade — “quoted” déjà vu, Ærø, smørrebrød",
    "λ → ∞ ≤ ≥ ≠ ± × ÷ √ ∑ ∫ ∂ ∇ ∈ ∉ ⊂ ∪ ∩",
    "日本語のテキスト、中文文本 and a € or £ or ¥ price",
)
MB = 1_000_000


def make_text(path: Path, n_bytes: int, *, seed: int = 0) -> None:
    """Write about ``n_bytes`` (at least) of UTF-8 text to ``path``, the same for the same seed and Python."""
    import numpy as np

    from jaxrnn.data import load_corpus

    lines = [line for line in load_corpus("pydoc_topics").split("\n")] + list(MULTIBYTE_LINES)
    encoded = [(line + "\n").encode("utf-8") for line in lines]
    plain, special = len(lines) - len(MULTIBYTE_LINES), np.arange(len(lines) - len(MULTIBYTE_LINES), len(lines))
    rng = np.random.default_rng(seed)
    written = 0
    tmp = path.with_suffix(".tmp")
    with open(tmp, "wb") as f:
        while written < n_bytes:
            count = min(50_000, max(100, (n_bytes - written) // 40))
            picks = rng.integers(0, plain, count)
            swap = rng.random(count) < 0.02
            picks[swap] = rng.choice(special, int(swap.sum()))
            block = b"".join(encoded[i] for i in picks)
            f.write(block)
            written += len(block)
    os.replace(tmp, path)


def launch(argv: list[str], *, cwd: Path, env: dict[str, str], metrics: Path, after_step: int) -> dict[str, Any]:
    """Run ``python -m jaxrnn *argv``: seconds to the training loop's first line (data and state ready), to the end
    of its first compiled call of updates past ``after_step`` (that line plus the call's ``train_seconds``), in
    all, and its peak resident memory (MB, the child's ``ru_maxrss``)."""
    log = metrics.parent.parent / "stderr.txt"
    before = _training_records(metrics)
    trained_before = before[-1]["train_seconds"] if before else 0.0
    start = time.perf_counter()
    with open(log, "wb") as err:
        proc = subprocess.Popen([sys.executable, "-m", "jaxrnn", *argv], cwd=cwd, env=env, stdout=err, stderr=err)
        ready = None
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)  # wait4 keeps the rusage that Popen.wait drops
            if ready is None and b"training a " in log.read_bytes():
                ready = time.perf_counter() - start
            if pid:
                break
            time.sleep(0.02)
    total = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode or ready is None:
        raise RuntimeError(f"jaxrnn {' '.join(argv)} failed:\n{log.read_text()[-2000:]}")
    first = next(r for r in _training_records(metrics) if r["step"] > after_step)
    return {
        "ready_s": ready,
        "first_call_s": first["train_seconds"] - trained_before,
        "first_update_s": ready + first["train_seconds"] - trained_before,
        "total_s": total,
        "peak_rss_mb": usage.ru_maxrss / 1024,
        "load_average": os.getloadavg()[0],
    }


def _training_records(metrics: Path) -> list[dict[str, Any]]:
    if not metrics.exists():
        return []
    records = [json.loads(line) for line in metrics.read_text().splitlines()]
    return [r for r in records if "train_loss" in r]


def measure(text: Path, folder: Path, checkout: Path, steps: int, model: list[str]) -> dict:
    """A first run (cold compilation cache) and a resume of ``steps`` more updates (warm) on ``text``."""
    out, cache = folder / "run", folder / "cache"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    env = {**os.environ, "JAXRNN_CACHE_DIR": str(cache), "PYTHONPATH": str(checkout), "PYTHONUNBUFFERED": "1"}
    env.pop("JAXRNN_NO_COMPILE_CACHE", None)
    common = ["--out", str(out), "--no-progress", "--sample-length", "0"]
    metrics = out / "metrics.jsonl"
    first = launch(
        ["train", "--data", str(text), "--steps", str(steps), *common, *model],
        cwd=checkout,
        env=env,
        metrics=metrics,
        after_step=0,
    )
    resume = launch(
        ["train", "--resume", "--steps", str(2 * steps), *common],
        cwd=checkout,
        env=env,
        metrics=metrics,
        after_step=steps,
    )
    records = [json.loads(line) for line in metrics.read_text().splitlines()]
    val = [r["val_tokens"] for r in records if "val_tokens" in r]
    ids = out / "ids.bin"
    result = {"first_run": first, "resume": resume, "val_tokens": val[-1] if val else None}
    result["ids_bytes"] = ids.stat().st_size if ids.exists() else None
    shutil.rmtree(folder, ignore_errors=True)
    return result


def data_seconds(text: Path, folder: Path) -> dict[str, float]:
    """In this process: seconds for ``load_splits`` to encode ``text`` into an id file, to map it again (size and
    time unchanged), and to map it after a ``touch`` (the text is hashed again)."""
    from jaxrnn.data import load_splits

    shutil.rmtree(folder, ignore_errors=True)
    seconds = {}
    for name in ("encode_s", "reuse_s", "rehash_s"):
        if name == "rehash_s":
            os.utime(text)
        t0 = time.perf_counter()
        load_splits(path=text, cache_dir=folder)
        seconds[name] = time.perf_counter() - t0
    shutil.rmtree(folder, ignore_errors=True)
    return seconds


def environment(checkout: Path) -> dict:
    import jax
    import numpy as np

    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=checkout, capture_output=True, text=True).stdout.strip()
    return {
        "python": platform.python_version(),
        "jax": jax.__version__,
        "numpy": np.__version__,
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "commit": commit,
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def main(
    sizes_mb: list[float],
    *,
    workdir: Path,
    steps: int,
    model: list[str],
    baseline: Path | None = None,
    baseline_sizes: list[float] | None = None,
    save: Callable[[dict], object] = lambda result: None,
) -> dict:
    """Measure every size, then the baseline's sizes; ``save(result)`` after each measurement."""
    workdir.mkdir(parents=True, exist_ok=True)
    result: dict[str, Any] = {"steps": steps, "model": model or "default", "rows": []}
    result["environment"] = environment(REPO)
    if baseline is not None:
        result["baseline"] = {"checkout": str(baseline), "commit": environment(baseline)["commit"]}
    texts = {}
    for size in sizes_mb:
        text = texts[size] = workdir / f"text_{size:g}MB.txt"
        if not text.exists():
            t0 = time.perf_counter()
            make_text(text, int(size * MB))
            print(f"made {text} in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
        row: dict[str, Any] = {"size_mb": size, "text_bytes": text.stat().st_size}
        row.update(measure(text, workdir / "run", REPO, steps, model))
        print(json.dumps(row), file=sys.stderr)
        result["rows"].append(row)
        save(result)
    for row in result["rows"]:
        if baseline is not None and (baseline_sizes is None or row["size_mb"] in baseline_sizes):
            row["baseline"] = measure(texts[row["size_mb"]], workdir / "run", baseline, steps, model)
            print(json.dumps(row["baseline"]), file=sys.stderr)
            save(result)
    return result


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="one 1 MB text and a tiny model: a smoke run in seconds")
    p.add_argument(
        "--sizes-mb", type=float, nargs="+", default=[10, 100, 1000], help="text sizes (default: %(default)s)"
    )
    p.add_argument("--steps", type=int, default=10, help="updates of the first run and of the resume (default: 10)")
    p.add_argument("--baseline", type=Path, default=None, help="another checkout to run the same commands on")
    p.add_argument("--baseline-sizes-mb", type=float, nargs="+", default=None, help="sizes for --baseline (all)")
    p.add_argument(
        "--data-only", action="store_true", help="time load_splits in process and add it to the existing results"
    )
    p.add_argument("--workdir", type=Path, default=Path("/tmp/jaxrnn_corpus_scale"), help="texts and runs")
    p.add_argument("--out", type=Path, default=None, help="results folder (default: benchmarks/results[/quick])")
    return p.parse_args(argv)


if __name__ == "__main__":
    args = parse_args()
    sizes = [1.0] if args.quick else args.sizes_mb
    model = ["--hidden", "16", "--batch-size", "4", "--seq-length", "16", "--steps-per-call", "2"] if args.quick else []
    folder = args.out or (RESULTS / "quick" if args.quick else RESULTS)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "corpus_scale.json"
    if args.data_only:
        result = json.loads(path.read_text())
        for row in result["rows"]:
            row["load_splits"] = data_seconds(args.workdir / f"text_{row['size_mb']:g}MB.txt", args.workdir / "ids")
            print(json.dumps(row["load_splits"]), file=sys.stderr)
            path.write_text(json.dumps(result, indent=1) + "\n")
        sys.exit(0)
    main(
        sizes,
        workdir=args.workdir,
        steps=2 if args.quick else args.steps,
        model=model,
        baseline=args.baseline,
        baseline_sizes=args.baseline_sizes_mb,
        save=lambda result: path.write_text(json.dumps(result, indent=1) + "\n"),
    )
    print(f"wrote {path}", file=sys.stderr)
