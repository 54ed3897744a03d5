"""Print the markdown tables of ``benchmarks/README.md`` from the JSON files in a results folder.

Command: ``python -m benchmarks.report [results folder] [--only NAME ...]``
The suite's tables by default; the investigations' (``benchmarks/investigations/``) with ``--only``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from benchmarks import common, lstm_table


def load(folder: Path, name: str):
    """The results file ``NAME.json`` of ``folder``, or ``None`` if absent."""
    path = folder / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else None


def header(result) -> str:
    """One line: the command, device, machine, date and versions of the run. Reads both environment records:
    ``jaxrnn.results.environment()`` with the benchmark's fields on top, and the one written before it (versions
    in a ``versions`` dict, ``nproc``, ``cpu_model``)."""
    env = result["environment"]
    v = env.get("versions", env)
    device = env.get("device_kind", env["device"])
    nproc, cpu = env.get("cpu_count", env.get("nproc")), env.get("processor", env.get("cpu_model"))
    return (
        f"`{env['command']}` on {device}, {nproc} x {cpu}, {env['date']}; "
        f"jax {v['jax']}, flax {v['flax']}, optax {v['optax']}, numpy {v['numpy']}, torch {v['torch']}"
    )


def scan_vs_loop(r) -> str:
    lines = [header(r), "", "| cell | B | T | method | trace+compile s | fwd+bwd ms |", "|---|---|---|---|---|---|"]
    for row in r["rows"]:
        if "T" not in row:
            lines.append(f"| {row['cell']} | {row['batch']} | | {row['method']} | {row['stopped']} | |")
            continue
        comp = "-" if row["method"] == "loop_eager" else f"{row['lower_s'] + row['compile_s']:.2f}"
        lines.append(
            f"| {row['cell']} | {row['batch']} | {row['T']} | {row['method']} | {comp} | {row['median_s'] * 1e3:.3f} |"
        )
    return "\n".join(lines)


def scan_compile(r) -> str:
    rows = [row for row in r["rows"] if "T" in row]
    lengths = sorted({row["T"] for row in rows})
    lines = [
        header(r),
        "",
        "Trace+compile seconds, the fastest of three compiles (each a fresh function):",
        "",
        "| cell | B | method | " + " | ".join(f"T={T}" for T in lengths) + " | slowest / fastest |",
        "|---|---|---|" + "---|" * len(lengths) + "---|",
    ]
    for key in sorted({(row["cell"], row["batch"], row["method"]) for row in rows}):
        by_T = {
            row["T"]: row["lower_s"] + row["compile_s"]
            for row in rows
            if (row["cell"], row["batch"], row["method"]) == key
        }
        cells = " | ".join(f"{by_T[T]:.2f}" if T in by_T else "-" for T in lengths)
        lines.append(f"| {key[0]} | {key[1]} | {key[2]} | {cells} | {max(by_T.values()) / min(by_T.values()):.2f} |")
    return "\n".join(lines)


def simple_table(r, columns: dict) -> str:
    """The run's header, then one markdown row per result row: ``columns`` maps a heading to a row formatter."""
    lines = [header(r), "", "| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(row) for cell in columns.values()) + " |" for row in r["rows"]]
    return "\n".join(lines)


def minchar(r) -> str:
    return simple_table(
        r,
        {
            "implementation": lambda row: row["impl"],
            "iterations/s": lambda row: f"{row['iterations_per_s']:.0f}",
            "x NumPy": lambda row: f"{row['ratio_vs_numpy']:.2f}",
            "compile s": lambda row: f"{row['compile_s']:.2f}",
        },
    )


def lstm_peers(r) -> str:
    """``lstm_table.markdown``: the rows of both precisions and the matmul rates they are measured against."""
    if "matmul" not in r:
        return "(no matmul rates in lstm_peers.json: an older lstm_peers wrote it; rerun benchmarks.lstm_peers)"
    return header(r) + "\n\n" + lstm_table.markdown(r)


def step_layout(r) -> str:
    return simple_table(
        r,
        {
            "pattern": lambda row: row["case"],
            "variant": lambda row: row["variant"],
            "us per step": lambda row: f"{row['us_per_step']:.1f}",
            "speed-up over the first": lambda row: f"{row['speedup_vs_first']:.2f}",
        },
    )


def step_parts(r) -> str:
    ms = {(row["impl"], row["T"], row["part"]): row["median_ms"] for row in r["rows"]}
    parts = tuple(dict.fromkeys(p for _, _, p in ms))  # results from before the donated step have four parts
    lines = [header(r), "", "| implementation | T | " + " ms | ".join(parts) + " ms |", "|" + "---|" * (2 + len(parts))]
    for impl, T in sorted(dict.fromkeys((i, t) for i, t, _ in ms), key=lambda k: (k[0] != "jaxrnn fused", k[1])):
        lines.append(f"| {impl} | {T} | " + " | ".join(f"{ms[impl, T, p]:.3f}" for p in parts) + " |")
    lines.append("")
    for impl, s in r["summary"].items():
        lines.append(
            f"- {impl}: {s['per_time_step_us']:.1f} us per extra time step, {s['fixed_ms']:.3f} ms of the "
            f"step not growing with T; the optimizer update alone {s['optimizer_update_ms']:.3f} ms"
            + (f"; the step donating its state {s['donated_step_ms']:.3f} ms" if "donated_step_ms" in s else "")
            + (
                f"; a step in a loop of steps {s['looped_step_ms']:.3f} ms, so the call itself "
                f"{s['per_call_ms']:.3f} ms"
                if "looped_step_ms" in s
                else ""
            )
        )
    lines.append("- Flax / jaxrnn: " + ", ".join(f"{k} {v:.2f}x" for k, v in r["flax_over_jaxrnn"].items()))
    return "\n".join(lines)


def memory(r) -> str:
    headings = {
        "full": "full BPTT, scan MiB",
        "fused": "full BPTT, fused MiB",
        "remat": "remat per step MiB",
        "segmented": "segments of sqrt(T) MiB",
        "truncated": "truncated (100) MiB",
    }
    by_T = {}
    for row in r["rows"]:
        by_T.setdefault(row["T"], {})[row["method"]] = row["peak_bytes"] / 2**20
    methods = [m for m in headings if any(m in v for v in by_T.values())]  # runs before "fused" lack it
    lines = [
        header(r),
        "",
        "| T | " + " | ".join(headings[m] for m in methods) + " |",
        "|" + "---|" * (1 + len(methods)),
    ]
    for T, m in sorted(by_T.items()):
        lines.append(f"| {T} | " + " | ".join(f"{m[k]:.1f}" for k in methods) + " |")
    lines += [
        "",
        "Longest T within the budget: "
        + ", ".join(f"{k} {'> search limit' if v < 0 else v}" for k, v in r["longest_T_within_budget"].items()),
    ]
    return "\n".join(lines)


def sampling(r) -> str:
    return simple_table(
        r,
        {
            "implementation": lambda row: row["impl"],
            "streams": lambda row: str(row["streams"]),
            "chars/s": lambda row: f"{row['chars_per_s']:.0f}",
            "x NumPy": lambda row: f"{row['ratio_vs_numpy']:.1f}",
        },
    )


def data_parallel(r) -> str:
    return simple_table(
        r,
        {
            "devices": lambda row: str(row["devices"]),
            "tokens/s": lambda row: f"{row['tokens_per_s']:.0f}",
            "x 1 device": lambda row: f"{row['ratio_vs_1_device']:.2f}",
            "first loss": lambda row: f"{row['first_loss']:.6f}",
        },
    )


def huge_pages(r) -> str:
    return (
        f"{header(r)}\n\nTransparent huge pages: `{r['transparent_hugepage']}`; each setting in processes of its "
        f"own, {r['config']['rounds']} per shape, alternating.\n\n"
        + simple_table(
            r,
            {
                "B, T, H": lambda row: f"{row['B']}, {row['T']}, {row['H']}",
                "implementation": lambda row: row["impl"],
                "scratch MiB": lambda row: f"{row['temp_bytes'] / 2**20:.1f}",
                "page faults per call": lambda row: (
                    f"{row['faults_per_call_default']:.0f} -> {row['faults_per_call_hugetlb']:.0f}"
                ),
                "ms per step": lambda row: (
                    f"{row['median_s_default'] * 1e3:.2f} -> {row['median_s_hugetlb'] * 1e3:.2f}"
                ),
                "speed-up [pairs]": lambda row: (
                    f"{row['speedup']:.2f} [{min(row['paired_speedups']):.2f}-{max(row['paired_speedups']):.2f}]"
                ),
                "Flax / jaxrnn time": lambda row: (
                    f"{row['flax_over_jaxrnn_default']:.2f} -> {row['flax_over_jaxrnn_hugetlb']:.2f}"
                ),
            },
        ).split("\n", 2)[2]
    )


def parallel_in_time(r) -> str:
    def iterations(row):
        if "iterations" not in row:
            return "-"
        return str(row["iterations"]) + ("" if row["converged"] else " (not converged)")

    def per_scan(key):
        return lambda row: f"{row[key]:.3g}" if key in row else "-"

    table = simple_table(
        r,
        {
            "cell": lambda row: row["cell"],
            "B": lambda row: str(row["batch"]),
            "H": lambda row: str(row["H"]),
            "T": lambda row: str(row["T"]),
            "method": lambda row: row["method"],
            "forward ms": lambda row: f"{row['median_s'] * 1e3:.2f}",
            "x scan": lambda row: f"{row['speedup_vs_scan']:.3g}" if "speedup_vs_scan" in row else "1.00",
            "iterations": iterations,
            "one iteration / one scan": per_scan("iteration_over_scan"),
            "setup / one scan": per_scan("setup_over_scan"),
        },
    )
    skipped = [f"- {s['cell']} B{s['batch']} H{s['H']} T{s['T']} {s['method']}: {s['reason']}" for s in r["skipped"]]
    return table + ("\n\nSkipped:\n\n" + "\n".join(skipped) if skipped else "")


SUITE = {
    "scan_vs_loop": scan_vs_loop,
    "scan_vs_loop_scan": scan_compile,
    "minchar": minchar,
    "lstm_peers": lstm_peers,
    "memory": memory,
    "sampling": sampling,
    "data_parallel": data_parallel,
    "parallel_in_time": parallel_in_time,
}
INVESTIGATIONS = {
    "step_parts": step_parts,
    "step_parts_mid": step_parts,
    "step_layout": step_layout,
    "huge_pages": huge_pages,
}
TABLES = SUITE | INVESTIGATIONS


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("folder", nargs="?", type=Path, default=common.RESULTS, help="results folder")
    p.add_argument(
        "--only",
        nargs="+",
        choices=list(TABLES),
        default=list(SUITE),
        metavar="NAME",
        help=f"tables to print (default: the suite's, {', '.join(SUITE)}; "
        f"the investigations' on request: {', '.join(INVESTIGATIONS)})",
    )
    args = p.parse_args(argv)
    for name in args.only:
        result = load(args.folder, name)
        if result is not None:
            print(f"### {name}\n\n{TABLES[name](result)}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
