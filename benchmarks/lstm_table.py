"""The tables of ``lstm_peers``: one printed line per row as it is measured, and the markdown of the README."""

from __future__ import annotations

from pathlib import Path

from benchmarks import matmul_rate


def quartiles(name: str, values) -> dict:
    """``{name: median, name_q25, name_q75}`` over rounds."""
    q25, q50, q75 = matmul_rate.quartiles(values)
    return {name: q50, f"{name}_q25": q25, f"{name}_q75": q75}


def line(row: dict) -> str:
    return (
        f"B{row['B']:<3d} T{row['T']:<4d} H{row['H']:<4d} {row['impl']:48s} {row['precision']:8s} "
        f"{row['tokens_per_s']:10.0f} tok/s {row['gflops']:6.1f} GFLOP/s "
        f"({100 * row['fraction_of_matmul_rate']:4.1f}% of {row['matmul_rate_gflops']:.1f} at its sizes) "
        f"compile {row['compile_s']:.2f}s"
    )


def _range(median: float, q25: float, q75: float, digits: int = 0) -> str:
    return f"{median:.{digits}f} [{q25:.{digits}f}-{q75:.{digits}f}]"


def markdown(results: dict) -> str:
    """Rows by shape, float32 then bfloat16; then the matmul rates they are measured against."""
    lines = [
        "| B, T, H | implementation | precision | tokens/s median [quartiles] | GFLOP/s | % of matmul at its sizes "
        "| % of large matmul | speed-up over jaxrnn float32, by round | compile s |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for row in results["rows"]:
        s = row["paired_speedup_vs_jaxrnn_float32"]
        lines.append(
            f"| {row['B']}, {row['T']}, {row['H']} | {row['impl']} | {row['precision']} | "
            f"{_range(row['tokens_per_s'], row['tokens_per_s_q25'], row['tokens_per_s_q75'])} | "
            f"{row['gflops']:.1f} | {100 * row['fraction_of_matmul_rate']:.0f}% | "
            f"{100 * row['fraction_of_large_matmul']:.0f}% | {_range(s['median'], s['q25'], s['q75'], 2)} | "
            f"{row['compile_s']:.2f} |"
        )
    lines += [""] + [
        f"- {s['B']}, {s['T']}, {s['H']} {s['impl']} ({s['precision']}): not run here: {s['reason']}"
        for s in results.get("skipped", [])
    ]
    lines += [
        "",
        "Rows ending in *K updates/call* run K updates in one compiled call, timed per update. GFLOP/s counts the "
        "matmuls of forward and backward (3x the forward); the matmul rates below were timed in the same rounds:",
        "",
        "| B, T, H | matmul | shape (m, k, n) | precision | GFLOP/s median [quartiles] |",
        "|---|---|---|---|---|",
    ]
    for r in results["matmul"]:
        m, k, n = r["shape"]
        lines.append(
            f"| {r['B']}, {r['T']}, {r['H']} | {r['part']} | ({m}, {k}, {n}) | {r['precision']} | "
            f"{_range(r['gflops'], r['gflops_q25'], r['gflops_q75'], 1)} |"
        )
    return "\n".join(lines)


def write(path: Path, results: dict) -> Path:
    from jaxrnn import results as results_io

    results_io.write_atomic(path, lambda tmp: Path(tmp).write_text(markdown(results) + "\n"))
    return path
