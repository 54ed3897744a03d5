"""Scan versus Python-loop unrolling: compile time and steady-state time of forward+backward against T.

Command: ``python -m benchmarks.scan_vs_loop [--quick | --preset scan] [--device cpu|gpu|auto]``
(``--preset scan``: scan with unroll 1 and 4 only, each compiled three times, to ``scan_vs_loop_scan.json``.)
"""

from __future__ import annotations

import dataclasses
import functools
import time

from benchmarks import common


@dataclasses.dataclass(frozen=True)
class Config:
    cells: tuple = ("rnn", "lstm")
    batches: tuple = (1, 32)
    lengths: tuple = (25, 50, 100, 200, 400, 800)
    unrolls: tuple = (1, 2, 4, 8)
    hidden: int = 128
    vocab: int = 65
    loop_compile_cap_s: float = 60.0  # stop growing T for the jitted loop once one compile takes longer
    eager_max_T: int = 400  # eager dispatch of fwd+bwd takes seconds per call beyond this
    min_seconds: float = 0.5
    loops: bool = True  # False: scan only (the Python-loop parts take most of the full run's half hour)
    compile_repeats: int = 1  # compile each scan variant this often and keep every time (a shared machine is noisy)


PRESETS = {
    "full": Config(),
    "quick": Config(
        cells=("rnn",),
        batches=(2,),
        lengths=(5,),
        unrolls=(2,),
        hidden=8,
        vocab=11,
        loop_compile_cap_s=10.0,
        eager_max_T=5,
        min_seconds=0.01,
    ),
    "scan": Config(unrolls=(1, 4), loops=False, compile_repeats=3),
}


def main(config: Config) -> dict:
    import jax

    import jaxrnn

    rows = []
    for cell in config.cells:
        init = jaxrnn.init_rnn if cell == "rnn" else jaxrnn.init_lstm
        params = init(jax.random.PRNGKey(0), config.vocab, config.hidden, config.vocab)
        for batch in config.batches:
            carry = jaxrnn.initial_carry(params, (batch,))
            loop_compile, loop_stopped = [], None
            for T in config.lengths:
                keys = jax.random.split(jax.random.PRNGKey(T), 2)
                xs, ys = (jax.random.randint(k, (T, batch), 0, config.vocab) for k in keys)

                def loss_and_grad(method, unroll=1):
                    loss = lambda p: jaxrnn.sequence_loss(p, carry, xs, ys, method=method, unroll=unroll)[0]
                    return lambda p: jax.value_and_grad(loss)(p)

                reference = jax.jit(loss_and_grad("scan"))(params)
                variants = [(f"scan_unroll{u}", functools.partial(loss_and_grad, "scan", u)) for u in config.unrolls]
                if loop_stopped is None and config.loops:
                    variants.append(("loop_jit", functools.partial(loss_and_grad, "loop")))
                for name, make in variants:
                    repeats = config.compile_repeats if name.startswith("scan") else 1
                    # a fresh function each time: jax.jit caches the compilation of the same function object
                    timed = [common.compile_timed(make(), params) for _ in range(repeats)]
                    compiled, lower_s, compile_s = min(timed, key=lambda c: c[1] + c[2])
                    all_s = [c[1] + c[2] for c in timed]
                    err = common.check_close(f"{cell} B{batch} T{T} {name}", reference, compiled(params), 1e-4)
                    timing = common.median_time(lambda: compiled(params), min_seconds=config.min_seconds)
                    rows.append(
                        dict(
                            cell=cell,
                            batch=batch,
                            T=T,
                            method=name,
                            lower_s=lower_s,
                            compile_s=compile_s,
                            trace_and_compile_all_s=all_s,
                            rel_diff_vs_scan=err,
                            **timing,
                        )
                    )
                    print(
                        f"{cell:4s} B{batch:<3d} T{T:<4d} {name:13s} lower {lower_s:6.2f}s compile "
                        f"{compile_s:7.2f}s run {timing['median_s'] * 1e3:9.3f} ms",
                        flush=True,
                    )
                    if name == "loop_jit":
                        loop_compile.append(lower_s + compile_s)
                        if loop_compile[-1] > config.loop_compile_cap_s:
                            loop_stopped = (
                                f"stopped after T={T}: trace+compile took {loop_compile[-1]:.0f} s > "
                                f"{config.loop_compile_cap_s:.0f} s"
                            )
                if T <= config.eager_max_T and config.loops:
                    eager = loss_and_grad("loop")
                    common.check_close(f"{cell} B{batch} T{T} eager", reference, eager(params), 1e-4)
                    t0 = time.perf_counter()
                    common.block(eager(params))
                    first = time.perf_counter() - t0
                    timing = common.median_time(
                        lambda: eager(params), min_repeats=3, min_seconds=config.min_seconds, warmup=0
                    )
                    rows.append(
                        dict(
                            cell=cell,
                            batch=batch,
                            T=T,
                            method="loop_eager",
                            lower_s=0.0,
                            compile_s=0.0,
                            first_call_s=first,
                            **timing,
                        )
                    )
                    print(
                        f"{cell:4s} B{batch:<3d} T{T:<4d} loop_eager    run {timing['median_s'] * 1e3:9.3f} ms",
                        flush=True,
                    )
            if loop_stopped:
                rows.append(dict(cell=cell, batch=batch, method="loop_jit", stopped=loop_stopped))
    return {"rows": rows}


def plot(results: dict, path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in results["rows"] if "T" in r]
    panels = sorted({(r["cell"], r["batch"]) for r in rows})
    fig, axes = plt.subplots(2, len(panels), figsize=(4 * len(panels), 7), squeeze=False)
    methods = sorted({r["method"] for r in rows})
    colors = dict(zip(methods, plt.rcParams["axes.prop_cycle"].by_key()["color"]))  # same colour in every panel
    for j, (cell, batch) in enumerate(panels):
        for method in methods:
            pts = sorted(
                (r["T"], r["lower_s"] + r["compile_s"], r["median_s"])
                for r in rows
                if (r["cell"], r["batch"], r["method"]) == (cell, batch, method)
            )
            if not pts:
                continue
            Ts, comp, run = zip(*pts)
            if method != "loop_eager":
                axes[0, j].plot(Ts, comp, "o-", color=colors[method], label=method)
            axes[1, j].plot(Ts, [1e3 * r for r in run], "o-", color=colors[method], label=method)
        axes[0, j].set_title(f"{cell.upper()} batch {batch}: trace+compile (s)")
        axes[1, j].set_title(f"{cell.upper()} batch {batch}: fwd+bwd (ms)")
        for ax in axes[:, j]:
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.set_xlabel("T")
            ax.set_xticks(sorted({r["T"] for r in rows}), [str(t) for t in sorted({r["T"] for r in rows})])
            ax.minorticks_off()
    axes[1, 0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def run(args) -> dict:
    return common.run_benchmark(args, "scan_vs_loop", PRESETS, main, plot=plot)


if __name__ == "__main__":
    common.script_main(__doc__, run)
