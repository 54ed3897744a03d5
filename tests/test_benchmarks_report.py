"""``benchmarks.report``: the markdown tables of the README, read from results files."""

import dataclasses
import json


from benchmark_scripts import environment_of_this_run
from benchmarks import common


def test_written_results_carry_the_library_environment_and_the_report_tables_parallel_in_time(tmp_path):
    """``common.write_json`` writes ``jaxrnn.results.environment()`` with the benchmark's fields on top; the report
    reads it (and the older record above) and prints one row per (batch, H, T, method) and the skipped sizes."""
    from benchmarks import report
    from jaxrnn import results as results_io

    where = dict(cell="gru", batch=2, H=8, T=100)
    rows = [
        dict(where, method="scan", median_s=0.002),
        dict(
            where,
            method="newton_full",
            median_s=0.008,
            speedup_vs_scan=0.25,
            iterations=4,
            converged=True,
            iteration_over_scan=1.5,
            setup_over_scan=2.0,
        ),
        dict(
            where,
            method="newton_diagonal",
            median_s=0.02,
            speedup_vs_scan=0.1,
            iterations=50,
            converged=False,
            iteration_over_scan=0.4,
            setup_over_scan=1.0,
        ),
    ]
    skipped = [dict(where, T=10**6, method="scan", reason="scan flops 1e+11 > max_scan_flops")]
    path = common.write_json(
        tmp_path,
        "parallel_in_time",
        dataclasses.make_dataclass("C", [("n", int)])(3),
        {"rows": rows, "skipped": skipped, "nan": float("nan")},
    )
    result = json.loads(path.read_text())
    assert result["config"] == {"n": 3} and result["nan"] == "nan"
    assert result["environment"].items() >= results_io.environment().items()
    assert {"command", "date", "torch", "xla_flags", "device_kind"} <= set(result["environment"])
    environment_of_this_run(result)
    table = report.parallel_in_time(report.load(tmp_path, "parallel_in_time"))
    assert "| gru | 2 | 8 | 100 | scan | 2.00 | 1.00 | - | - | - |" in table
    assert "| gru | 2 | 8 | 100 | newton_full | 8.00 | 0.25 | 4 | 1.5 | 2 |" in table
    assert "| newton_diagonal | 20.00 | 0.1 | 50 (not converged) | 0.4 | 1 |" in table
    assert table.endswith("- gru B2 H8 T1000000 scan: scan flops 1e+11 > max_scan_flops")
    assert "parallel_in_time" in report.SUITE
