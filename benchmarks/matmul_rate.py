"""This machine's matmul rate, the yardstick of a training step's GFLOP/s.

A jitted ``jnp.dot`` at the sizes of one time step of the character LSTM (input projection ``(B, E) @ (E, 4H)``,
recurrent ``(B, H) @ (H, 4H)``, readout ``(B, H) @ (H, V)``; ``T`` of them in a ``lax.scan``, so that one call's
dispatch is shared by ``T`` products, as in the step) and at a large square ``(n, n) @ (n, n)``, in float32 and in
bfloat16 with float32 accumulation (``preferred_element_type``). The calls are timed by the caller, in the same
rounds as the steps they measure.
"""

from __future__ import annotations

import functools
import statistics

PARTS = ("input projection", "recurrent", "readout")


def _call(m: int, k: int, n: int, repeats: int, precision: str):
    import jax
    import jax.numpy as jnp

    dtype = jnp.bfloat16 if precision == "bfloat16" else jnp.float32
    a = jax.random.normal(jax.random.PRNGKey(0), (repeats, m, k)).astype(dtype)
    w = jax.random.normal(jax.random.PRNGKey(1), (k, n)).astype(dtype)

    def products(a, w):  # one product per scan step: what a time loop does
        return jax.lax.scan(lambda _, x: (None, jnp.dot(x, w, preferred_element_type=jnp.float32)), None, a)[1]

    compiled = jax.jit(products).lower(a, w).compile()
    return functools.partial(compiled, a, w)


def calls(B: int, T: int, H: int, E: int, V: int, large: int, precisions) -> list[dict]:
    """``[{part, precision, shape (m, k, n), repeats, flops, call}]``: the step's sizes and the large square."""
    sizes = {"input projection": (B, E, 4 * H), "recurrent": (B, H, 4 * H), "readout": (B, H, V)}
    out = []
    for precision in precisions:
        for part, (m, k, n) in sizes.items():
            call = _call(m, k, n, T, precision)
            out.append(
                dict(part=part, precision=precision, shape=(m, k, n), repeats=T, flops=2 * m * k * n * T, call=call)
            )
        call = _call(large, large, large, 1, precision)
        out.append(
            dict(part="large", precision=precision, shape=(large,) * 3, repeats=1, flops=2 * large**3, call=call)
        )
    return out


def quartiles(values) -> tuple[float, float, float]:
    """``(q25, median, q75)``; one value gives itself three times."""
    values = list(values)
    if len(values) == 1:
        return values[0], values[0], values[0]
    q25, q50, q75 = statistics.quantiles(values, n=4, method="inclusive")
    return q25, q50, q75


def rate(matmul: dict, timing: dict, **where) -> dict:
    """A ``calls`` entry with its timing (``common.interleaved_times``): GFLOP/s, median and quartiles over rounds."""
    q25, q50, q75 = quartiles(matmul["flops"] / t / 1e9 for t in timing["round_s"])
    fields = {k: v for k, v in matmul.items() if k != "call"}
    return {**where, **fields, "gflops": q50, "gflops_q25": q25, "gflops_q75": q75}


def fractions(flops: dict, round_s: list, rates: list) -> dict:
    """A step's GFLOP/s (``flops`` by part per update, ``round_s`` seconds per update by round) against the rates
    of one precision: ``matmul_rate_gflops`` is what the step's matmuls reach alone, each at its measured rate
    (total FLOPs over the sum of each part's FLOPs / its rate), ``large_matmul_gflops`` the large square's."""
    total = sum(flops.values())
    by_part = {r["part"]: r["gflops"] for r in rates}
    q25, q50, q75 = quartiles(total / t / 1e9 for t in round_s)
    at_sizes = total / sum(flops[part] / by_part[part] for part in PARTS)
    return {
        "flops_per_update": total,
        "gflops": q50,
        "gflops_q25": q25,
        "gflops_q75": q75,
        "matmul_rate_gflops": at_sizes,
        "fraction_of_matmul_rate": q50 / at_sizes,
        "large_matmul_gflops": by_part["large"],
        "fraction_of_large_matmul": q50 / by_part["large"],
    }
