"""Peak memory of one LSTM gradient as T grows: full BPTT (scan and fused paths), per-step remat, segment
checkpointing, truncated BPTT.

Command: ``python -m benchmarks.memory [--quick] [--device cpu|gpu|auto]``
Numbers are XLA's own accounting of the compiled program (``compiled.memory_analysis()``: arguments + outputs +
temporaries - aliased; its ``peak_memory_in_bytes`` reads 0 on CPU), so nothing is allocated to measure them.
"""

from __future__ import annotations

import dataclasses
import math

from benchmarks import common


@dataclasses.dataclass(frozen=True)
class Config:
    batch: int = 32
    hidden: int = 256
    vocab: int = 100
    lengths: tuple = (100, 400, 1600, 6400, 25600)  # squares: segment length sqrt(T)
    truncation: int = 100
    budget_bytes: int = 2 * 2**30
    search_max_T: int = 2**24


METHODS = ("full", "fused", "remat", "segmented", "truncated")  # fused: jaxrnn.recurrence's BPTT (full BPTT too)
PRESETS = {
    "full": Config(),
    "quick": Config(batch=2, hidden=8, vocab=11, lengths=(16,), truncation=4, budget_bytes=2**16, search_max_T=2**6),
}


def peak_bytes(config: Config, method: str, T: int) -> dict:
    import jax
    import jax.numpy as jnp

    import jaxrnn

    params = jax.eval_shape(lambda: jaxrnn.init_lstm(jax.random.PRNGKey(0), config.vocab, config.hidden, config.vocab))
    carry = jax.eval_shape(
        lambda: jaxrnn.initial_carry(jaxrnn.init_lstm(jax.random.PRNGKey(0), 1, config.hidden, 1), (config.batch,))
    )
    length = config.truncation if method == "truncated" else T
    ids = jax.ShapeDtypeStruct((length, config.batch), jnp.int32)
    if method == "segmented":
        S = math.isqrt(T)
        loss = lambda p, c, x, y: jaxrnn.sequence_loss(p, c, x, y, segment_length=S)
    elif method == "fused":
        loss = lambda p, c, x, y: jaxrnn.sequence_loss(p, c, x, y, method="fused")
    else:
        loss = lambda p, c, x, y: jaxrnn.sequence_loss(p, c, x, y, remat=method == "remat")
    compiled = jax.jit(jax.value_and_grad(loss, has_aux=True)).lower(params, carry, ids, ids).compile()
    program = program_bytes(compiled)
    peak = program["total_bytes"]
    if method == "truncated":  # one chunk's program, plus the whole sequence of ids held as data
        peak += 2 * 4 * config.batch * (T - length)
    return {"peak_bytes": int(peak), "temp_bytes": program["temp_bytes"]}


def program_bytes(compiled) -> dict:
    """XLA's accounting of a compiled program: ``arguments + outputs + temporaries - aliased`` and its parts (the
    one definition, which ``experiments.truncated_bptt`` uses too)."""
    m = compiled.memory_analysis()
    total = m.argument_size_in_bytes + m.output_size_in_bytes + m.temp_size_in_bytes - m.alias_size_in_bytes
    return {
        "total_bytes": int(total),
        "temp_bytes": int(m.temp_size_in_bytes),
        "argument_bytes": int(m.argument_size_in_bytes),
    }


def longest_fitting(config: Config, method: str) -> int:
    """Largest T (a perfect square for ``segmented``) whose peak fits the budget: doubling, then bisection."""

    def fits(T):
        return peak_bytes(config, method, T * T if method == "segmented" else T)["peak_bytes"] <= config.budget_bytes

    lo, hi = 4, 8
    limit = math.isqrt(config.search_max_T) if method == "segmented" else config.search_max_T
    while hi <= limit and fits(hi):
        lo, hi = hi, hi * 2
    if hi > limit:
        return -1  # fits up to the search limit
    while hi - lo > max(1, lo // 64):  # within ~1.5%
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if fits(mid) else (lo, mid)
    return lo * lo if method == "segmented" else lo


def main(config: Config) -> dict:
    rows, longest = [], {}
    for T in config.lengths:
        for method in METHODS:
            row = dict(T=T, method=method, **peak_bytes(config, method, T))
            rows.append(row)
            print(f"T{T:<6d} {method:10s} peak {row['peak_bytes'] / 2**20:10.1f} MiB", flush=True)
    for method in METHODS[:-1]:
        longest[method] = longest_fitting(config, method)
        print(f"longest T within {config.budget_bytes / 2**30:.3g} GiB, {method}: {longest[method]}", flush=True)
    return {
        "rows": rows,
        "longest_T_within_budget": longest,
        "note": "-1: fits up to search_max_T; truncated BPTT fits any T whose ids fit",
    }


def plot(results: dict, path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 4))
    for method in METHODS:
        pts = sorted((r["T"], r["peak_bytes"] / 2**20) for r in results["rows"] if r["method"] == method)
        ax.plot(*zip(*pts), "o-", label=method)
    ax.set(
        xscale="log",
        yscale="log",
        xlabel="T",
        ylabel="peak MiB (compiled program)",
        title="LSTM gradient memory vs sequence length",
    )
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def run(args) -> dict:
    return common.run_benchmark(args, "memory", PRESETS, main, plot=plot)


if __name__ == "__main__":
    common.script_main(__doc__, run)
