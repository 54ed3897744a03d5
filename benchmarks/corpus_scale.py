"""Training on large texts: peak resident memory and seconds from launch to the first update of
``jaxrnn train --steps 10`` on texts of 10 MB, 100 MB and 1 GB, for a first run (the text is encoded into
``ids.bin``, compilation cache cold) and a ``--resume`` of 10 more updates (``ids.bin`` mapped, cache warm).

Each run is a fresh ``python -m jaxrnn`` process with the command line's default model (LSTM, H = 256, 32
streams x 64 characters); "first update" is the moment its first metrics record (10 updates, one compiled call)
appears in ``metrics.jsonl``; peak memory is the child's ``ru_maxrss``. The texts are made deterministically
from the ``pydoc_topics`` corpus (its lines in a seeded random order, 2% of them replaced by lines with
multibyte characters), so the runs are reproducible offline. ``--baseline PATH`` runs the same commands on
another checkout (e.g. one that reads and encodes the text on every start) for comparison.

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
    """Run ``python -m jaxrnn *argv``: seconds to its first metrics record past ``after_step``, seconds in all, and
    its peak resident memory (MB, the child's ``ru_maxrss``)."""
    log = metrics.parent.parent / "stderr.txt"
    start = time.perf_counter()
    with open(log, "wb") as err:
        proc = subprocess.Popen([sys.executable, "-m", "jaxrnn", *argv], cwd=cwd, env=env, stdout=err, stderr=err)
        first = ready = None
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)  # wait4 keeps the rusage that Popen.wait drops
            if ready is None and b"training a " in log.read_bytes():  # the loop's first line: data and state ready
                ready = time.perf_counter() - start
            if first is None and _has_update(metrics, after_step):
                first = time.perf_counter() - start
            if pid:
                break
            time.sleep(0.02)
    total = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode:
        raise RuntimeError(f"jaxrnn {' '.join(argv)} failed:\n{log.read_text()[-2000:]}")
    return {
        "ready_s": ready,
        "first_update_s": first if first is not None else total,
        "total_s": total,
        "peak_rss_mb": usage.ru_maxrss / 1024,
        "load_average": os.getloadavg()[0],
    }


def _has_update(metrics: Path, after_step: int) -> bool:
    try:
        text = metrics.read_text()
    except OSError:
        return False
    for line in text.splitlines():
        try:
            record = json.loads(line)
        except ValueError:  # a line being written
            continue
        if "train_loss" in record and record["step"] > after_step:
            return True
    return False


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
