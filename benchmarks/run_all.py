"""Run the benchmark suite: each benchmark writes ``<name>.json`` (and a PNG where useful) to the results folder.

Command: ``python -m benchmarks.run_all [--quick] [--device cpu|gpu|auto] [--only NAME ...]``
The one-off investigations in ``benchmarks/investigations/`` are scripts of their own and are not run here.
"""

from __future__ import annotations

import importlib
import sys
import time

from benchmarks import common

BENCHMARKS = (
    "scan_vs_loop",
    "minchar",
    "lstm_peers",
    "memory",
    "sampling",
    "data_parallel",
    "parallel_in_time",
    "startup",
)


def main(argv=None) -> int:
    p = common.parser(__doc__.splitlines()[0])
    p.add_argument(
        "--only",
        nargs="+",
        choices=BENCHMARKS,
        default=list(BENCHMARKS),
        metavar="NAME",
        help=f"benchmarks to run (default: all of {', '.join(BENCHMARKS)})",
    )
    args = p.parse_args(argv)
    if args.preset is not None:  # fail before hours of runs, not at the first benchmark without the preset
        missing = [
            name for name in args.only if args.preset not in importlib.import_module(f"benchmarks.{name}").PRESETS
        ]
        if missing:
            print(f"error: --preset {args.preset}: not a preset of {', '.join(missing)}", file=sys.stderr)
            return 2
    common.select_device(args.device)
    print(common.environment(), flush=True)
    for name in args.only:
        t0 = time.perf_counter()
        print(f"== {name}", flush=True)
        importlib.import_module(f"benchmarks.{name}").run(args)
        print(f"== {name}: {time.perf_counter() - t0:.1f} s -> {common.out_dir(args)}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
