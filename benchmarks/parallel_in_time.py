"""Newton's method over time (DEER, quasi-DEER) against lax.scan: forward wall time, iterations, memory.

Command: ``python -m benchmarks.parallel_in_time [--quick | --preset large] [--device cpu|gpu|auto]``

For each (cell, batch, H, T, Jacobian): the GRU's forward pass ``(carry_T, hs)`` by ``jaxrnn.unroll`` (the
sequential ``lax.scan``) and by ``jaxrnn.newton.newton_unroll`` from zeros, checked equal before timing; the
iterations it took; the compiled programs' temporary memory (``memory_analysis``); and the cost of *one* Newton
iteration as a multiple of one whole sequential scan, measured as ``(t(max_iter=k) - t(max_iter=0)) / k`` with
``k = probe_iterations`` (both with ``tol=0``, so neither stops early). With ``k`` iterations Newton beats the
scan when ``k * ratio + overhead < 1``: the ratio is what to measure on other hardware to predict the break-even.

Sizes whose Jacobians would not fit ``max_jacobian_bytes`` or whose Jacobian flops exceed ``max_newton_flops``
(or the scan's ``max_scan_flops``) are skipped and listed with the reason: on this CPU the full sweep would take
hours. ``--preset large`` raises the caps for an accelerator.
"""

from __future__ import annotations

import dataclasses

from benchmarks import common


@dataclasses.dataclass(frozen=True)
class Config:
    cells: tuple = ("gru",)
    batches: tuple = (1, 32)
    hiddens: tuple = (16, 64, 256)
    lengths: tuple = (1_000, 10_000, 100_000)
    jacobians: tuple = ("full", "diagonal")
    input_size: int = 4
    max_iter: int = 50
    max_scan_flops: float = 2e10  # 2 B T (3H)(H + D) per scan; beyond this the scan alone takes > ~10 s here
    max_newton_flops: float = 2e10  # B T n^2 (3H) flops per Jacobian evaluation (n jvps); per iteration
    max_jacobian_bytes: float = 1e9  # B T n^2 * 4 bytes for "full" (the scan keeps a few copies)
    min_seconds: float = 0.3
    check_tol: float = 1e-4  # relative agreement of hs with the scan (float32, T up to 1e5)
    probe_iterations: int = 5  # iterations timed to measure the cost of one


PRESETS = {
    "full": Config(),
    "quick": Config(batches=(2,), hiddens=(8,), lengths=(100,), max_iter=30, min_seconds=0.02, probe_iterations=2),
    "large": Config(max_scan_flops=1e13, max_newton_flops=1e13, max_jacobian_bytes=4e10),
}


def _skip_reason(config, cell, batch, H, T, jacobian):
    rows = {"rnn": 1, "gru": 3, "lstm": 4}[cell]
    n = 2 * H if cell == "lstm" else H
    scan_flops = 2 * batch * T * rows * H * (H + config.input_size)
    if jacobian is None:
        return f"scan flops {scan_flops:.1e} > max_scan_flops" if scan_flops > config.max_scan_flops else None
    jac_flops = batch * T * n * 2 * rows * H * H
    if jac_flops > config.max_newton_flops:
        return f"Jacobian flops per iteration {jac_flops:.1e} > max_newton_flops"
    if jacobian == "full" and 4 * batch * T * n * n > config.max_jacobian_bytes:
        return f"Jacobians {4 * batch * T * n * n:.1e} bytes > max_jacobian_bytes"
    return None


def main(config: Config) -> dict:
    import jax

    import jaxrnn
    from jaxrnn.newton import newton_unroll

    inits = {"rnn": jaxrnn.init_rnn, "gru": jaxrnn.init_gru, "lstm": jaxrnn.init_lstm}
    rows, skipped = [], []
    for cell in config.cells:
        for H in config.hiddens:
            params = inits[cell](jax.random.PRNGKey(H), config.input_size, H, 1)
            step = jaxrnn.step_for(params)
            for batch in config.batches:
                carry = jaxrnn.initial_carry(params, (batch,))
                for T in config.lengths:
                    where = dict(cell=cell, batch=batch, H=H, T=T)
                    reason = _skip_reason(config, cell, batch, H, T, None)
                    if reason:
                        skipped.append(dict(where, method="scan", reason=reason))
                        continue
                    xs = jax.random.normal(jax.random.PRNGKey(T), (T, batch, config.input_size))
                    scan = jax.jit(lambda p, c, x: jaxrnn.unroll(step, p, c, x))
                    compiled, lower_s, compile_s = common.compile_timed(scan, params, carry, xs)
                    reference = compiled(params, carry, xs)
                    timing = common.median_time(
                        lambda: compiled(params, carry, xs), min_repeats=3, min_seconds=config.min_seconds
                    )
                    scan_s = timing["median_s"]
                    rows.append(
                        dict(
                            where,
                            method="scan",
                            lower_s=lower_s,
                            compile_s=compile_s,
                            temp_bytes=compiled.memory_analysis().temp_size_in_bytes,
                            **timing,
                        )
                    )
                    print(f"{cell} B{batch:<3d} H{H:<4d} T{T:<7d} scan          {scan_s * 1e3:10.2f} ms", flush=True)
                    for jacobian in config.jacobians:
                        reason = _skip_reason(config, cell, batch, H, T, jacobian)
                        if reason:
                            skipped.append(dict(where, method=f"newton_{jacobian}", reason=reason))
                            continue
                        rows.append(
                            _newton_row(
                                config, where, step, params, carry, xs, jacobian, reference, scan_s, newton_unroll
                            )
                        )
                        r = rows[-1]
                        print(
                            f"{cell} B{batch:<3d} H{H:<4d} T{T:<7d} newton {jacobian:8s} {r['median_s'] * 1e3:10.2f}"
                            f" ms  x{r['speedup_vs_scan']:.3g}  iters {r['iterations']:3d}  one iteration = "
                            f"{r['iteration_over_scan']:.3g} scans",
                            flush=True,
                        )
    return {"rows": rows, "skipped": skipped}


def _newton_row(config, where, step, params, carry, xs, jacobian, reference, scan_s, newton_unroll):
    import jax
    import numpy as np

    def make(max_iter, tol=None):
        return jax.jit(lambda p, c, x: newton_unroll(step, p, c, x, jacobian=jacobian, max_iter=max_iter, tol=tol))

    name = f"{where['cell']} B{where['batch']} H{where['H']} T{where['T']} newton_{jacobian}"
    compiled, lower_s, compile_s = common.compile_timed(make(config.max_iter), params, carry, xs)
    result = compiled(params, carry, xs)
    converged = bool(np.all(np.asarray(result.converged)))
    err = common.check_close(name, reference, (result.carry, result.hs), config.check_tol) if converged else None
    timing = common.median_time(lambda: compiled(params, carry, xs), min_repeats=3, min_seconds=config.min_seconds)
    fixed, k_probe = {}, config.probe_iterations
    for k in (0, k_probe):  # tol=0: exactly k iterations
        c = make(k, 0.0).lower(params, carry, xs).compile()
        fixed[k] = common.median_time(lambda: c(params, carry, xs), min_repeats=3, min_seconds=config.min_seconds)[
            "median_s"
        ]
    iteration_s = max(fixed[k_probe] - fixed[0], 0.0) / k_probe
    return dict(
        where,
        method=f"newton_{jacobian}",
        lower_s=lower_s,
        compile_s=compile_s,
        temp_bytes=compiled.memory_analysis().temp_size_in_bytes,
        **timing,
        iterations=int(np.max(np.asarray(result.iterations))),
        converged=converged,
        residual=float(np.max(np.asarray(result.residual))),
        rel_diff_vs_scan=err,
        speedup_vs_scan=scan_s / timing["median_s"],
        setup_s=fixed[0],
        iteration_s=iteration_s,
        iteration_over_scan=iteration_s / scan_s,
        setup_over_scan=fixed[0] / scan_s,
    )


def plot(results: dict, path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = results["rows"]
    panels = sorted({(r["batch"], r["H"]) for r in rows if r["method"] != "scan"})  # sizes Newton ran at
    fig, axes = plt.subplots(2, len(panels), figsize=(3.6 * len(panels), 6.5), squeeze=False)
    styles = {"scan": "ko-", "newton_full": "s-", "newton_diagonal": "^-"}
    for j, (batch, H) in enumerate(panels):
        for method, style in styles.items():
            pts = sorted(
                (r["T"], r["median_s"], r.get("iteration_over_scan"))
                for r in rows
                if (r["batch"], r["H"], r["method"]) == (batch, H, method)
            )
            if not pts:
                continue
            Ts, secs, per_iter = zip(*pts)
            axes[0, j].plot(Ts, [1e3 * s for s in secs], style, label=method)
            if method != "scan":
                axes[1, j].plot(Ts, per_iter, style, label=method)
        axes[0, j].set_title(f"B{batch} H{H}: forward (ms)", fontsize=9)
        axes[1, j].set_title(f"B{batch} H{H}: one iteration / one scan", fontsize=9)
        axes[1, j].axhline(1.0, color="k", lw=0.6, ls=":")
        for ax in axes[:, j]:
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.set_xlabel("T")
    axes[0, 0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def run(args) -> dict:
    return common.run_benchmark(args, "parallel_in_time", PRESETS, main, plot=plot)


if __name__ == "__main__":
    common.script_main(__doc__, run)
