"""Character-LSTM training step, tokens per second: jaxrnn versus Flax (linen, nnx) and PyTorch, float32 and bfloat16.

Command: ``python -m benchmarks.lstm_peers [--quick | --preset small|mid|large] [--device cpu|gpu|auto]``
Model everywhere: embedding ``E`` -> one LSTM layer ``H`` -> linear readout ``V``; mean cross-entropy; Adam
(lr 1e-3); zero initial state; all from one ``jaxrnn.init_stack(..., embed_size=E)`` (``benchmarks.peers``). Every
implementation must agree with jaxrnn's float32 loss before and after one update before anything is timed
(bfloat16 rows within bfloat16's rounding).

Rows, each timed in the same shuffled rounds (``common.interleaved_times``), one update per compiled call:
jaxrnn (``make_train_step``'s default), Flax linen ``nn.RNN(OptimizedLSTMCell)``, Flax nnx, PyTorch ``nn.LSTM``; in
bfloat16: jaxrnn ``compute_dtype=bfloat16`` (``jaxrnn.precision``), Flax linen ``dtype=bfloat16,
param_dtype=float32``, PyTorch under ``torch.autocast(dtype=bfloat16)``. Separate rows run ``updates_per_call``
updates in one compiled call (jaxrnn's ``updates_per_call``, a ``lax.scan`` of linen's step), reported per update.

The same rounds time this machine's matmul (``benchmarks.matmul_rate``) at the sizes of one time step of the
model and at a large square, in float32 and bfloat16-in/float32-accumulate; each row's GFLOP/s (the matmul FLOPs
of forward and backward) is reported as a fraction of the rate those matmuls reach alone, at its precision.
Writes ``lstm_peers.json`` and ``lstm_peers.md`` (the table of ``benchmarks/README.md``).
"""

from __future__ import annotations

import dataclasses
import functools
import time

from benchmarks import common, lstm_table, matmul_rate, peers

F32, BF16 = "float32", "bfloat16"


@dataclasses.dataclass(frozen=True)
class Config:
    shapes: tuple = ((1, 25, 100), (32, 64, 256), (64, 128, 512))  # (batch, T, hidden)
    embedding: int = 64
    vocab: int = 100
    learning_rate: float = 1e-3
    matmul_size: int = 2048
    min_seconds: float = 2.0
    updates_per_call: int = 8  # the rows that run this many updates in one compiled call
    bf16_tolerance: float = 2e-2  # relative loss difference of a bfloat16 row from jaxrnn's float32


PRESETS = {
    "full": Config(),
    "quick": Config(shapes=((2, 5, 8),), embedding=4, vocab=11, matmul_size=64, min_seconds=0.01, updates_per_call=2),
    # one shape of the full run each, to repeat a contested measurement quickly
    "small": Config(shapes=((1, 25, 100),)),
    "mid": Config(shapes=((32, 64, 256),)),
    "large": Config(shapes=((64, 128, 512),)),
}


def problem(B: int, T: int, H: int, E: int, V: int, seed: int = 0):
    """``(params, carry, xs, ys)``: a one-layer LSTM ``StackParams`` with an embedding, zero state, ids ``(T, B)``."""
    import jax

    import jaxrnn

    k = jax.random.split(jax.random.PRNGKey(seed), 3)
    p = jaxrnn.init_stack(k[0], V, (H,), V, cell="lstm", embed_size=E)
    xs, ys = (jax.random.randint(kk, (T, B), 0, V) for kk in k[1:])
    return p, jaxrnn.initial_carry(p, (B,)), xs, ys


def jaxrnn_step(optimizer, precision: str, k: int = 1):
    """``make_train_step`` as its defaults give it (mean loss), in ``precision``, ``k`` updates per call."""
    import jax.numpy as jnp

    import jaxrnn

    compute_dtype = jnp.bfloat16 if precision == BF16 else None
    return jaxrnn.make_train_step(optimizer, reduction="mean", compute_dtype=compute_dtype, updates_per_call=k)


def flops_per_update(B: int, T: int, H: int, E: int, V: int) -> dict:
    """Matmul FLOPs of one update by part: input projection, recurrent matmul, readout; backward = 2x forward."""
    forward = {"input projection": 4 * H * E, "recurrent": 4 * H * H, "readout": V * H}
    return {part: 3 * 2 * B * T * n for part, n in forward.items()}


def checked_loop(name: str, loop, state: tuple, step, chunks, tol: float):
    """``(call, compile_s, first_loss)`` of ``loop`` (``k`` updates per call), its losses checked against ``k``
    calls of the same library's one-update ``step`` from the same state."""
    import jax.numpy as jnp

    compiled, lower_s, compile_s = common.compile_timed(loop, *state, *chunks)
    expected, first = [], tuple(state)
    for xs, ys in zip(*chunks):
        *state, loss = step(*state, xs, ys)
        expected.append(loss)
    got = compiled(*first, *chunks)[-1]
    common.check_close(f"{name}: its losses against calls of its step", jnp.stack(expected), got, tol)
    return functools.partial(compiled, *first, *chunks), lower_s + compile_s, float(expected[0])


def flax_loop(flax_step):
    """``k`` updates of Flax linen's ``train_step`` in one ``lax.scan`` over ``(xs (k, T, B), ys (k, T, B))``."""
    import jax

    def loop(variables, opt_state, xs_k, ys_k):
        def body(state, chunk):
            *state, loss = flax_step(*state, *chunk)
            return tuple(state), loss

        return jax.lax.scan(body, (variables, opt_state), (xs_k, ys_k))

    return loop


def update_chunks(xs, ys, k: int, V: int, seed: int):
    """``(xs (k, T, B), ys (k, T, B))``: ``xs, ys`` then ``k - 1`` random chunks of ids below ``V``."""
    import jax
    import jax.numpy as jnp

    keys = jax.random.split(jax.random.PRNGKey(seed), 2)
    rest = [jax.random.randint(key, (k - 1, *xs.shape), 0, V) for key in keys]
    return jnp.concatenate([xs[None], rest[0]]), jnp.concatenate([ys[None], rest[1]])


def implementations(config: Config, shape: tuple, device: str, skipped: list) -> dict:
    """``{(impl, precision): (call, compile_s, loss_before, loss_after_one_step or None, updates_per_call)}`` at one
    shape, every loss checked; a loop's ``loss_after_one_step`` is ``None``. An implementation that cannot run
    here (PyTorch not installed, or its bfloat16 LSTM without bfloat16 instructions) is appended to ``skipped`` with
    the reason."""
    import jax.numpy as jnp
    import optax

    B, T, H = shape
    V, E, k = config.vocab, config.embedding, config.updates_per_call
    p, carry, xs, ys = problem(B, T, H, E, V, seed=B * T + H)
    optimizer = optax.adam(config.learning_rate)
    chunks = update_chunks(xs, ys, k, V, seed=B * T + H + 1)
    out = {}
    for precision in (F32, BF16):
        tol = 1e-5 if precision == F32 else config.bf16_tolerance
        opt0 = optimizer.init(p)
        step, lower_s, compile_s = common.compile_timed(jaxrnn_step(optimizer, precision), p, opt0, carry, xs, ys)
        p1, _, _, loss0 = step(p, opt0, carry, xs, ys)
        call = functools.partial(step, p, opt0, carry, xs, ys)
        out["jaxrnn", precision] = (call, lower_s + compile_s, float(loss0), float(step(p1, opt0, carry, xs, ys)[3]), 1)
        loop = jaxrnn_step(optimizer, precision, k)
        out[f"jaxrnn, {k} updates/call", precision] = (
            *checked_loop("jaxrnn", loop, (p, opt0, carry), step, chunks, tol),
            None,
            k,
        )

        dtype = None if precision == F32 else jnp.bfloat16
        variables, flax_step, _ = peers.flax_linen_impl(p, optimizer, dtype=dtype)
        vopt = optimizer.init(variables)
        compiled, lower_s, compile_s = common.compile_timed(flax_step, variables, vopt, xs, ys)
        v1, _, loss0 = compiled(variables, vopt, xs, ys)
        name = "flax linen nn.RNN(OptimizedLSTMCell)"
        loss1 = float(compiled(v1, vopt, xs, ys)[2])
        out[name, precision] = (
            functools.partial(compiled, variables, vopt, xs, ys),
            lower_s + compile_s,
            float(loss0),
            loss1,
            1,
        )
        looped = checked_loop(name, flax_loop(flax_step), (variables, vopt), compiled, chunks, tol)
        out[f"{name}, {k} updates/call", precision] = (*looped, None, k)

        try:
            import torch
        except ImportError:
            name = "pytorch nn.LSTM (not installed)" + (", autocast" if precision == BF16 else "")
            skipped.append(dict(B=B, T=T, H=H, impl=name, precision=precision, reason="torch is not installed"))
            print(f"{name} ({precision}) skipped: torch is not installed (pip install torch)", flush=True)
        else:
            torch_step, loss_of, to_ids = peers.torch_impl(p, config.learning_rate, device, autocast=precision == BF16)
            txs, tys = to_ids(xs), to_ids(ys)
            name = f"pytorch nn.LSTM ({torch.get_num_threads()} threads)" + (", autocast" if precision == BF16 else "")
            try:
                loss0 = torch_step(txs, tys)
            except RuntimeError as error:  # oneDNN has no bfloat16 LSTM on a CPU without bfloat16 instructions
                skipped.append(dict(B=B, T=T, H=H, impl=name, precision=precision, reason=str(error).split("\n")[0]))
                print(f"{name} ({precision}) skipped: {skipped[-1]['reason']}", flush=True)
            else:
                with torch.no_grad():
                    loss1 = loss_of(txs, tys).item()
                out[name, precision] = (functools.partial(torch_step, txs, tys), 0.0, loss0, loss1, 1)

    model, opt, nnx_step, loss_fn = peers.flax_nnx_impl(p, optimizer)
    t0 = time.perf_counter()
    loss0 = float(nnx_step(model, opt, xs, ys))  # the first call traces and compiles (nnx.jit)
    loss1 = float(loss_fn(model, xs, ys))
    out["flax nnx RNN(OptimizedLSTMCell)", F32] = (
        functools.partial(nnx_step, model, opt, xs, ys),
        time.perf_counter() - t0,
        loss0,
        loss1,
        1,
    )

    base = out["jaxrnn", F32]
    for (name, precision), (_, _, loss0, loss1, _) in out.items():
        tol = 2e-4 if precision == F32 else config.bf16_tolerance
        for a, b in ((loss0, base[2]), (loss1, base[3])):
            if a is not None and not abs(a - b) <= tol * abs(b):
                raise AssertionError(f"B{B} T{T} H{H} {name} ({precision}): loss {a} disagrees with jaxrnn's {b}")
    return out


def main(config: Config, device: str = "auto") -> dict:
    rows, rates, skipped = [], [], []
    for B, T, H in config.shapes:
        impls = implementations(config, (B, T, H), device, skipped)
        matmuls = matmul_rate.calls(B, T, H, config.embedding, config.vocab, config.matmul_size, (F32, BF16))
        calls = {f"{n} [{p}]": impl[0] for (n, p), impl in impls.items()}
        calls |= {f"matmul {m['part']} [{m['precision']}]": m["call"] for m in matmuls}
        timings = common.interleaved_times(calls, min_seconds=config.min_seconds)
        shape_rates = [
            matmul_rate.rate(m, timings.pop(f"matmul {m['part']} [{m['precision']}]"), B=B, T=T, H=H) for m in matmuls
        ]
        rates += shape_rates
        flops = flops_per_update(B, T, H, config.embedding, config.vocab)
        for (name, precision), (_, compile_s, loss0, loss1, k) in impls.items():
            timing = timings[f"{name} [{precision}]"]
            per_update = [t / k for t in timing["round_s"]]
            row = dict(
                B=B,
                T=T,
                H=H,
                impl=name,
                precision=precision,
                updates_per_call=k,
                compile_s=compile_s,
                loss_before=loss0,
                loss_after_one_step=loss1,
                repeats=timing["repeats"],
                round_s=per_update,
                **lstm_table.quartiles("s_per_update", per_update),
                **lstm_table.quartiles("tokens_per_s", [B * T / t for t in per_update]),
                **matmul_rate.fractions(flops, per_update, [r for r in shape_rates if r["precision"] == precision]),
                paired_speedup_vs_jaxrnn_float32=common.paired_speedups(
                    {"self": {"round_s": per_update}, "base": timings["jaxrnn [float32]"]}, "self"
                )["base"],
            )
            rows.append(row)
            print(lstm_table.line(row), flush=True)
    return {"rows": rows, "matmul": rates, "skipped": skipped}


def run(args) -> dict:
    results = common.run_benchmark(args, "lstm_peers", PRESETS, main, pass_device=True)
    stem = (
        "lstm_peers" if (getattr(args, "preset", None) or "full") in ("full", "quick") else f"lstm_peers_{args.preset}"
    )
    lstm_table.write(common.out_dir(args) / f"{stem}.md", results)
    return results


if __name__ == "__main__":
    common.script_main(__doc__, run)
