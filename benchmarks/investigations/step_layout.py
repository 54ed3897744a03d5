"""Why ``jaxrnn.recurrence`` lays out a time step as it does on XLA:CPU: the patterns it avoids, timed against the
ones it uses.

Command: ``python -m benchmarks.investigations.step_layout [--quick] [--device cpu|gpu|auto]``
Each case is a ``lax.scan`` of ``T`` steps at batch ``B``, hidden ``H`` (vocabulary ``V`` for the lookup; the
batch-1 cases at batch 1 and their own ``H``), or, for ``dWhh``, the one matmul over all ``T B`` rows that follows
the backward loop; its variants compute the same numbers (checked before timing) and are timed in turn in the same
process. Reported: microseconds per step (per time step for ``dWhh``: the whole matmul divided by ``T``) and each
variant's speed-up over the case's first variant. The findings are XLA:CPU's; on another backend they may not hold
(the library takes these layouts, ``recurrence._XLA_CPU``, only when compiled for the CPU). The variants call the
module's internals with a layout chosen here, whatever the backend.
"""

from __future__ import annotations

import dataclasses
import functools


from benchmarks import common


@dataclasses.dataclass(frozen=True)
class Config:
    batch: int = 32
    hidden: int = 256
    steps: int = 64
    vocab: int = 100
    single_row_hidden: tuple = (100, 104)  # H of the batch-1 cases: rows of Whh not a multiple of 8 floats, and one
    min_seconds: float = 2.0


PRESETS = {
    "full": Config(),
    "quick": Config(batch=2, hidden=8, steps=4, vocab=11, single_row_hidden=(6, 8), min_seconds=0.01),
}


def cases(B: int, H: int, T: int, V: int, single_row_hidden: tuple = ()) -> dict:
    """``{case: {variant: (fn, args)}}``; the first variant of a case is the one ``jaxrnn.recurrence`` avoids on
    XLA:CPU, except in the batch-1 cases of the two products with ``Whh`` (one per ``single_row_hidden``), where the
    variant it uses at that ``H`` is marked."""
    import jax
    import jax.numpy as jnp

    from jaxrnn import LSTMCarry, embed, recurrence

    cpu = recurrence._XLA_CPU

    k = jax.random.split(jax.random.PRNGKey(0), 5)
    zs = jax.random.normal(k[0], (T, B, 4 * H))
    h0 = jnp.tanh(jax.random.normal(k[1], (B, H)))
    Whh = jax.random.normal(k[2], (4 * H, H)) / jnp.sqrt(H)
    Wxh = jax.random.normal(k[3], (4 * H, V))
    ids = jax.random.randint(k[4], (T, B), 0, V)

    def scan(body, init, xs):
        return jax.lax.scan(body, init, xs)

    def product_of(split):  # tanh(z_i * z_g): two blocks of one buffer, or the same numbers in two buffers
        if split:
            return lambda a, b: scan(lambda acc, x: (acc + jnp.tanh(x[0] * x[1]), None), jnp.zeros((B, H)), (a, b))[0]
        return lambda zs, _: scan(
            lambda acc, z: (acc + jnp.tanh(z[:, :H] * z[:, 3 * H :]), None), jnp.zeros((B, H)), zs
        )[0]

    def matmul_loop(term):
        def run(Whh, h0):
            return jax.lax.fori_loop(0, T, lambda _, h: jnp.tanh(term(Whh, h)[:, :H]), h0)

        return run

    def lookup_loop(make_lookup):  # sum of the looked-up columns Wxh[:, id_t] over the steps
        def run(Wxh, ids):
            lookup = make_lookup(Wxh)
            return scan(lambda acc, i: (acc + lookup(i), None), jnp.zeros((B, 4 * H)), ids)[0]

        return run

    def both_matmuls_loop(matmuls):  # each step: z = h Whh^T, then h = tanh(tanh(z) Whh)
        def run(Whh, h0):
            term, back = matmuls(Whh)
            return jax.lax.fori_loop(0, T, lambda _, h: jnp.tanh(back(jnp.tanh(term(h)))), h0)

        return run

    def single_row_matmuls(transposed):  # the (term, back) pair for one row, from a copy of Whh^T or not
        # vector_lanes = G: the rule "H off the lane width, G on it" then holds, or (0) never, at any H
        return lambda Whh: recurrence._recurrent_matmuls(
            cpu._replace(vector_lanes=Whh.shape[0] if transposed else 0), Whh, 1
        )

    def single_row_case(H1):
        W1 = jax.random.normal(k[2], (4 * H1, H1)) / jnp.sqrt(H1)
        h1 = jnp.tanh(jax.random.normal(k[1], (1, H1)))
        transposed = recurrence._reads_transposed(cpu, 4 * H1, H1, 1)
        return {
            "Whh @ h^T, dz @ Whh (as batched)" + ("" if transposed else " (jaxrnn)"): (
                both_matmuls_loop(single_row_matmuls(False)),
                (W1, h1),
            ),
            "copy of Whh^T: h @ Whh^T, Whh^T @ dz^T" + (" (jaxrnn)" if transposed else ""): (
                both_matmuls_loop(single_row_matmuls(True)),
                (W1, h1),
            ),
        }

    def forward_case(H1):
        W1 = jax.random.normal(k[2], (4 * H1, H1)) / jnp.sqrt(H1)
        zxs1 = jax.random.normal(k[0], (T, 1, 4 * H1))
        carry1 = LSTMCarry(jnp.tanh(jax.random.normal(k[1], (1, H1))), jnp.zeros((1, H1)))

        def loop(single_row_kernels):  # the forward loop over precomputed projections (Wxh None)
            layout = cpu._replace(single_row_kernels=single_row_kernels)
            return lambda Whh, carry, zxs: recurrence._forward(layout, Whh, jnp.zeros(4 * H1), carry, zxs, None)

        return {
            "four gate arrays; h and c kept": (loop(False), (W1, carry1, zxs1)),
            "one gate array; c kept (jaxrnn)": (loop(True), (W1, carry1, zxs1)),
        }

    def recurrent_term(Whh, h):  # the forward loop's h Whh^T for B rows, as the XLA:CPU layout computes it
        return recurrence._recurrent_matmuls(cpu, Whh, B)[0](h)

    def weight_grad(h_rows, dz_rows):  # dWhh = dz^T h as the end of recurrence._backward computes it
        return recurrence._copy(cpu, recurrence._copy(cpu, h_rows.T) @ dz_rows).T

    zi, zg = zs[..., :H], zs[..., 3 * H :]
    dz_rows = zs.reshape(T * B, 4 * H)  # stand-ins for dz_t and h_{t-1}, all T B rows
    h_rows = jnp.tanh(zs[..., H : 2 * H]).reshape(T * B, H)
    return (
        {
            "a fusion reading two slices of one buffer vs one slice of each of two buffers": {
                "two slices of one (T, B, 4H) buffer": (product_of(False), (zs, None)),
                "two (T, B, H) buffers (jaxrnn)": (product_of(True), (zi, zg)),
            },
            "recurrent matmul h @ Whh^T vs Whh @ h^T transposed back": {
                "h @ Whh.T": (matmul_loop(lambda W, h: h @ W.T), (Whh, h0)),
                "Whh @ h^T (jaxrnn)": (matmul_loop(recurrent_term), (Whh, h0)),
            },
            "per-step lookup of token ids: columns of Wxh vs rows of Wxh^T copied before the loop": {
                "embed(Wxh, ids_t) in the loop": (lookup_loop(lambda W: functools.partial(embed, W)), (Wxh, ids)),
                "rows of Wxh^T (jaxrnn)": (lookup_loop(lambda W: recurrence._projector(cpu, W)), (Wxh, ids)),
            },
            "dWhh over all T B rows: dz^T @ h vs (h^T @ dz)^T with h^T copied first": {
                "dz_rows.T @ h_rows": (lambda h, dz: dz.T @ h, (h_rows, dz_rows)),
                "copy of h^T @ dz, .T (jaxrnn)": (weight_grad, (h_rows, dz_rows)),
            },
        }
        | {
            f"batch 1, LSTM H {H1}: the time loops' two products with Whh, "
            "as batched vs from a copy of Whh^T": single_row_case(H1)
            for H1 in single_row_hidden
        }
        | {
            f"batch 1, LSTM H {H1}: the forward loop, four gate arrays vs one "
            "(at H 100, 16 vs 8 kernels per step)": forward_case(H1)
            for H1 in single_row_hidden
        }
    )


def main(config: Config) -> dict:
    B, H, T = config.batch, config.hidden, config.steps
    rows = []
    for case, variants in cases(B, H, T, config.vocab, config.single_row_hidden).items():
        calls, outs = {}, {}
        for name, (fn, fn_args) in variants.items():
            compiled, _, _ = common.compile_timed(fn, *fn_args)
            outs[name] = compiled(*fn_args)
            calls[name] = functools.partial(compiled, *fn_args)
        first = next(iter(outs.values()))
        for name, out in outs.items():
            common.check_close(f"{case}: {name}", first, out, 1e-4)
        timings = common.interleaved_times(calls, min_seconds=config.min_seconds)
        base = next(iter(timings.values()))["median_s"]
        for name, t in timings.items():
            rows.append(
                dict(
                    case=case,
                    variant=name,
                    us_per_step=t["median_s"] / T * 1e6,
                    speedup_vs_first=base / t["median_s"],
                    **t,
                )
            )
            print(
                f"{case[:60]:60s} | {name:38s} {t['median_s'] / T * 1e6:8.1f} us/step x{base / t['median_s']:.2f}",
                flush=True,
            )
    return {"rows": rows}


def run(args) -> dict:
    return common.run_benchmark(args, "step_layout", PRESETS, main)


if __name__ == "__main__":
    common.script_main(__doc__, run)
