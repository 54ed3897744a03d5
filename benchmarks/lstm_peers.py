"""Character-LSTM training step, tokens per second: jaxrnn versus Flax (linen, nnx) and PyTorch ``nn.LSTM``.

Command: ``python -m benchmarks.lstm_peers [--quick | --preset small|mid|large] [--device cpu|gpu|auto]``
Model everywhere: embedding ``E`` -> one LSTM layer ``H`` -> linear readout ``V``; mean cross-entropy; Adam
(lr 1e-3); zero initial state. All start from the same weights and must agree on the loss before and after one
step before they are timed. GFLOP/s counts the model's matmul FLOPs (3x the forward: forward, and the two
matmuls of the backward) and is compared with a large float32 matmul timed in turn with each shape's steps (one
more implementation in the rounds: the peak under the same load; the shared machine's peak moved by 2x within an
hour). jaxrnn's fused path and Flax linen are also timed running ``updates_per_call`` updates in one compiled call
(``update_loops``), reported per update. jaxrnn's paths: *scan* (``make_train_step``'s default, the plain step in a
``lax.scan``, the embedding looked up inside the loop), *fused* (``sequence_loss(..., method="fused")``: the
embedding and ``Wxh`` applied to all T steps before the loop, hand-written BPTT) and *fused, folded* (the embedding
folded into ``Wxh``, one ``(4H, V)`` table looked up inside the loop).
"""

from __future__ import annotations

import dataclasses
import functools
import os
import time
from typing import NamedTuple

from benchmarks import common


@dataclasses.dataclass(frozen=True)
class Config:
    shapes: tuple = ((1, 25, 100), (32, 64, 256), (64, 128, 512))  # (batch, T, hidden)
    embedding: int = 64
    vocab: int = 100
    learning_rate: float = 1e-3
    matmul_size: int = 2048
    min_seconds: float = 2.0
    updates_per_call: int = 8  # the loops of updates in one compiled call (update_loops)


PEAK = "float32 matmul (peak)"
PRESETS = {
    "full": Config(),
    "quick": Config(shapes=((2, 5, 8),), embedding=4, vocab=11, matmul_size=64, min_seconds=0.01, updates_per_call=2),
    # one shape of the full run each, to repeat a contested measurement quickly
    "small": Config(shapes=((1, 25, 100),)),
    "mid": Config(shapes=((32, 64, 256),)),
    "large": Config(shapes=((64, 128, 512),)),
}


class EmbeddedLSTMParams(NamedTuple):
    """An embedding ``Wemb (E, V)`` in front of ``jaxrnn.LSTMParams`` (``Wxh (4H, E)``)."""

    Wemb: object
    Wxh: object
    Whh: object
    Why: object
    bh: object
    by: object


def problem(B: int, T: int, H: int, E: int, V: int, seed: int = 0):
    """``(params, carry, xs, ys)``: an ``EmbeddedLSTMParams`` model, zero state, random ids ``(T, B)``."""
    import jax
    import jax.numpy as jnp

    import jaxrnn

    k = jax.random.split(jax.random.PRNGKey(seed), 4)
    p = EmbeddedLSTMParams(jax.random.normal(k[1], (E, V)), *jaxrnn.init_lstm(k[0], E, H, V))
    xs, ys = (jax.random.randint(kk, (T, B), 0, V) for kk in k[2:])
    return p, jaxrnn.LSTMCarry(jnp.zeros((B, H)), jnp.zeros((B, H))), xs, ys


def _lstm(p):
    import jaxrnn

    return jaxrnn.LSTMParams(p.Wxh, p.Whh, p.Why, p.bh, p.by)


SCAN, FUSED, FOLDED = "jaxrnn scan", "jaxrnn fused", "jaxrnn fused, folded"  # report.py maps older labels to these


def jaxrnn_fused_losses():
    """``{name: loss(p, carry, xs, ys, mask=None) -> (loss, carry_T)}`` for the fused paths, mean cross-entropy."""
    import jaxrnn

    def fused_loss(p, carry, xs, ys, mask=None):  # embedding for all T at once, then Wxh for all T at once
        return jaxrnn.sequence_loss(
            _lstm(p), carry, jaxrnn.embed(p.Wemb, xs), ys, mask=mask, reduction="mean", method="fused"
        )

    def folded_loss(p, carry, xs, ys, mask=None):  # Wxh (Wemb x) = (Wxh Wemb) x: one (4H, V) table to look up
        folded = _lstm(p)._replace(Wxh=p.Wxh @ p.Wemb)
        return jaxrnn.sequence_loss(folded, carry, xs, ys, mask=mask, reduction="mean", method="fused")

    return {FUSED: fused_loss, FOLDED: folded_loss}


def embedded_step(p, carry, x):
    """The scan path's step: the embedding looked up inside the time loop, then ``lstm_step``."""
    import jaxrnn

    return jaxrnn.lstm_step(_lstm(p), carry, jaxrnn.embed(p.Wemb, x))


def jaxrnn_impls(config, optimizer):
    """``{name: train_step}`` for the scan path and the fused paths, each ``(p, opt, carry, xs, ys)``."""
    import jaxrnn

    plain = jaxrnn.make_train_step(optimizer, step=embedded_step, reduction="mean")
    return {SCAN: plain} | {
        name: jaxrnn.make_train_step(optimizer, loss_fn=loss) for name, loss in jaxrnn_fused_losses().items()
    }


def flax_linen_impl(p, V, E, H, optimizer):
    import flax.linen as nn
    import jax
    import jax.numpy as jnp
    import optax

    class Model(nn.Module):
        @nn.compact
        def __call__(self, ids):  # (B, T)
            return nn.Dense(V)(nn.RNN(nn.OptimizedLSTMCell(H))(nn.Embed(V, E)(ids)))

    model = Model()
    blocks = lambda W: dict(zip("ifog", jnp.split(W, 4)))
    wx, wh, b = blocks(p.Wxh), blocks(p.Whh), blocks(p.bh)
    cell = {f"i{k}": {"kernel": wx[k].T} for k in "ifog"} | {f"h{k}": {"kernel": wh[k].T, "bias": b[k]} for k in "ifog"}
    variables = {
        "params": {
            "Embed_0": {"embedding": p.Wemb.T},
            "OptimizedLSTMCell_0": cell,
            "Dense_0": {"kernel": p.Why.T, "bias": p.by},
        }
    }
    expected = model.init(jax.random.PRNGKey(0), jnp.zeros((1, 2), int))
    assert jax.tree.map(jnp.shape, variables) == jax.tree.map(jnp.shape, expected), "Flax parameter layout changed"

    def loss_fn(variables, xs, ys):  # xs, ys (T, B) as jaxrnn's; Flax is batch-major
        logits = model.apply(variables, xs.T)
        return optax.softmax_cross_entropy_with_integer_labels(logits, ys.T).mean()

    @jax.jit
    def train_step(variables, opt_state, xs, ys):
        loss, grads = jax.value_and_grad(loss_fn)(variables, xs, ys)
        updates, opt_state = optimizer.update(grads, opt_state, variables)
        return optax.apply_updates(variables, updates), opt_state, loss

    return variables, train_step, loss_fn


def flax_nnx_impl(p, V, E, H, optimizer):
    import jax.numpy as jnp
    import optax
    from flax import nnx

    class Model(nnx.Module):
        def __init__(self, rngs):
            self.embed = nnx.Embed(V, E, rngs=rngs)
            self.rnn = nnx.RNN(nnx.OptimizedLSTMCell(E, H, rngs=rngs))
            self.out = nnx.Linear(H, V, rngs=rngs)

        def __call__(self, ids):
            return self.out(self.rnn(self.embed(ids)))

    model = Model(nnx.Rngs(0))
    to_ifgo = lambda W: jnp.concatenate([W[: 2 * H], W[3 * H :], W[2 * H : 3 * H]])  # i, f, o, g -> i, f, g, o
    model.embed.embedding.value = p.Wemb.T
    model.rnn.cell.dense_i.kernel.value = to_ifgo(p.Wxh).T
    model.rnn.cell.dense_h.kernel.value = to_ifgo(p.Whh).T
    model.rnn.cell.dense_h.bias.value = to_ifgo(p.bh)
    model.out.kernel.value, model.out.bias.value = p.Why.T, p.by
    opt = nnx.Optimizer(model, optimizer, wrt=nnx.Param)

    def loss_fn(model, xs, ys):
        return optax.softmax_cross_entropy_with_integer_labels(model(xs.T), ys.T).mean()

    @nnx.jit
    def train_step(model, opt, xs, ys):
        loss, grads = nnx.value_and_grad(loss_fn)(model, xs, ys)
        opt.update(model, grads)
        return loss

    return model, opt, train_step, loss_fn


def torch_impl(p, V, E, H, lr, device):
    import numpy as np
    import torch

    torch.set_num_threads(os.cpu_count())
    dev = "cuda" if device == "gpu" or (device == "auto" and torch.cuda.is_available()) else "cpu"

    class Model(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = torch.nn.Embedding(V, E)
            self.lstm = torch.nn.LSTM(E, H)  # time-major (T, B, E), gates i, f, g, o
            self.out = torch.nn.Linear(H, V)

        def forward(self, ids):
            return self.out(self.lstm(self.embed(ids))[0])

    model = Model().to(dev)
    t = lambda a: torch.tensor(np.asarray(a), dtype=torch.float32, device=dev)
    to_ifgo = lambda W: np.concatenate([W[: 2 * H], W[3 * H :], W[2 * H : 3 * H]])
    with torch.no_grad():
        model.embed.weight.copy_(t(np.asarray(p.Wemb).T))
        model.lstm.weight_ih_l0.copy_(t(to_ifgo(np.asarray(p.Wxh))))
        model.lstm.weight_hh_l0.copy_(t(to_ifgo(np.asarray(p.Whh))))
        model.lstm.bias_ih_l0.copy_(t(to_ifgo(np.asarray(p.bh))))
        model.lstm.bias_hh_l0.zero_()
        model.out.weight.copy_(t(p.Why))
        model.out.bias.copy_(t(p.by))
    model.lstm.bias_hh_l0.requires_grad_(False)  # one bias vector, as in jaxrnn and Flax (Adam would move both)
    opt = torch.optim.Adam([q for q in model.parameters() if q.requires_grad], lr=lr)

    def loss_of(xs, ys):
        return torch.nn.functional.cross_entropy(model(xs).reshape(-1, V), ys.reshape(-1))

    def train_step(xs, ys):
        opt.zero_grad(set_to_none=True)
        loss = loss_of(xs, ys)
        loss.backward()
        opt.step()
        return loss.item()  # .item() waits for the step to finish

    to_ids = lambda a: torch.tensor(np.asarray(a), dtype=torch.long, device=dev)
    return train_step, loss_of, to_ids


def update_loops(k: int, p, carry, chunks, jaxrnn_steps: dict, flax_step, variables, optimizer) -> dict:
    """``{name: (call, compile_s, first_loss)}``: ``k`` updates in one compiled call, for jaxrnn and Flax linen.

    jaxrnn's are ``make_train_step(..., updates_per_call=k)`` over each fused loss (``jaxrnn_fused_losses``;
    update ``n`` starts from the carry update ``n - 1`` left, as the character model's trainer runs), Flax linen's
    a ``lax.scan`` over its ``train_step``. One call trains on ``chunks = (xs (k, T, B), ys (k, T, B))``. Each
    loop's ``k`` losses must equal those of ``k`` calls of the same library's one-update step
    (``jaxrnn_steps[name](p, opt, carry, xs, ys)``, ``flax_step(variables, opt, xs, ys)``, both already checked
    against the scan path) before it is timed.
    Why this is faster per update at (64, 128, 512): XLA:CPU maps the step's ~200 MB of temporaries afresh each
    call (``investigations/huge_pages.py``); a loop maps them once.
    """
    import jax
    import jax.numpy as jnp

    import jaxrnn

    def checked(name, loop, state, step):  # the loop compiled, checked against k calls of step from state
        compiled, lower_s, compile_s = common.compile_timed(loop, *state, *chunks)
        expected, first = [], tuple(state)
        for xs, ys in zip(*chunks):
            *state, loss = step(*state, xs, ys)
            expected.append(loss)
        common.check_close(
            f"{name}: its {k} losses against {k} calls of its step",
            jnp.stack(expected),
            compiled(*first, *chunks)[-1],
            1e-5,
        )
        return functools.partial(compiled, *first, *chunks), lower_s + compile_s, float(expected[0])

    def flax_loop(variables, opt_state, xs_k, ys_k):
        def body(state, chunk):
            *state, loss = flax_step(*state, *chunk)
            return tuple(state), loss

        return jax.lax.scan(body, (variables, opt_state), (xs_k, ys_k))

    loops = {
        f"{name}, {k} updates/call": checked(
            f"{name}, {k} updates/call",
            jaxrnn.make_train_step(optimizer, loss_fn=loss, updates_per_call=k),
            (p, optimizer.init(p), carry),
            jaxrnn_steps[name],
        )
        for name, loss in jaxrnn_fused_losses().items()
    }
    name = f"flax linen nn.RNN(OptimizedLSTMCell), {k} updates/call"
    loops[name] = checked(name, flax_loop, (variables, optimizer.init(variables)), flax_step)
    return loops


def per_update(timing: dict, k: int) -> dict:
    """An ``interleaved_times`` entry of a call that runs ``k`` updates, as seconds per update."""
    return timing | {
        "median_s": timing["median_s"] / k,
        "min_s": timing["min_s"] / k,
        "round_s": [t / k for t in timing["round_s"]],
    }


def update_chunks(xs, ys, k: int, V: int, seed: int):
    """``(xs (k, T, B), ys (k, T, B))``: ``xs, ys`` then ``k - 1`` random chunks of ids below ``V``."""
    import jax
    import jax.numpy as jnp

    keys = jax.random.split(jax.random.PRNGKey(seed), 2)
    rest = [jax.random.randint(key, (k - 1, *xs.shape), 0, V) for key in keys]
    return jnp.concatenate([xs[None], rest[0]]), jnp.concatenate([ys[None], rest[1]])


def matmul_call(n: int):
    """``(call, flops)``: a compiled float32 ``(n, n) @ (n, n)`` matmul, the yardstick of the machine's peak."""
    import jax
    import jax.numpy as jnp

    a = jax.random.normal(jax.random.PRNGKey(0), (n, n), jnp.float32)
    compiled, _, _ = common.compile_timed(lambda a, b: a @ b, a, a)
    return functools.partial(compiled, a, a), 2 * n**3


def main(config: Config, device: str = "auto") -> dict:
    import optax

    peak_call, peak_flops = matmul_call(config.matmul_size)  # timed alone here, then in turn with each shape
    peak = peak_flops / common.median_time(peak_call, min_seconds=config.min_seconds)["median_s"] / 1e9
    print(f"float32 matmul {config.matmul_size}^2: {peak:.1f} GFLOP/s", flush=True)
    V, E = config.vocab, config.embedding
    optimizer = optax.adam(config.learning_rate)
    rows = []
    for B, T, H in config.shapes:
        p, carry, xs, ys = problem(B, T, H, E, V, seed=B * T + H)
        flops = 3 * 2 * (4 * H * E + 4 * H * H + V * H) * B * T
        results, calls = {}, {}  # name -> (loss before, loss after one step, compile_s); name -> timed call

        opt0, steps = optimizer.init(p), {}
        for name, step in jaxrnn_impls(config, optimizer).items():
            compiled, lower_s, compile_s = common.compile_timed(step, p, opt0, carry, xs, ys)
            steps[name] = compiled
            p1, _, _, loss0 = compiled(p, opt0, carry, xs, ys)
            results[name] = (float(loss0), float(compiled(p1, opt0, carry, xs, ys)[3]), lower_s + compile_s)
            calls[name] = functools.partial(compiled, p, opt0, carry, xs, ys)

        variables, step, _ = flax_linen_impl(p, V, E, H, optimizer)
        vopt = optimizer.init(variables)
        compiled, lower_s, compile_s = common.compile_timed(step, variables, vopt, xs, ys)
        v1, _, loss0 = compiled(variables, vopt, xs, ys)
        name = "flax linen nn.RNN(OptimizedLSTMCell)"
        results[name] = (float(loss0), float(compiled(v1, vopt, xs, ys)[2]), lower_s + compile_s)
        calls[name] = functools.partial(compiled, variables, vopt, xs, ys)
        k = config.updates_per_call
        loops = update_loops(
            k, p, carry, update_chunks(xs, ys, k, V, seed=B * T + H + 1), steps, step, variables, optimizer
        )

        model, opt, step, loss_fn = flax_nnx_impl(p, V, E, H, optimizer)
        t0 = time.perf_counter()
        loss0 = float(step(model, opt, xs, ys))  # the first call traces and compiles (nnx.jit)
        name = "flax nnx RNN(OptimizedLSTMCell)"
        results[name] = (loss0, float(loss_fn(model, xs, ys)), time.perf_counter() - t0)
        calls[name] = functools.partial(step, model, opt, xs, ys)

        try:
            import torch
        except ImportError:
            print("torch not installed: skipping PyTorch (pip install torch==2.13.0)", flush=True)
        else:
            step, loss_of, to_ids = torch_impl(p, V, E, H, config.learning_rate, device)
            txs, tys = to_ids(xs), to_ids(ys)
            loss0 = step(txs, tys)
            with torch.no_grad():
                loss1 = loss_of(txs, tys).item()
            name = f"pytorch nn.LSTM ({torch.get_num_threads()} threads)"
            results[name] = (loss0, loss1, 0.0)
            calls[name] = functools.partial(step, txs, tys)

        for name, (call, compile_s, loss0) in loops.items():  # the rest checked against their steps in update_loops
            results[name], calls[name] = (loss0, None, compile_s), call
        base0, base1 = results[SCAN][:2]
        for name, (loss0, loss1, compile_s) in results.items():
            for a, b in ((loss0, base0), (loss1, base1)):
                if a is not None and not abs(a - b) <= 2e-4 * abs(b):  # a loop has no loss after one step
                    raise AssertionError(f"B{B} T{T} H{H} {name}: loss {a} disagrees with jaxrnn's {b}")
        timings = common.interleaved_times({**calls, PEAK: peak_call}, min_seconds=config.min_seconds)
        timings |= {name: per_update(timings[name], k) for name in loops}
        shape_peak = peak_flops / timings.pop(PEAK)["median_s"] / 1e9  # the peak under this shape's load
        ref = {n: t["median_s"] for n, t in timings.items()}
        for name, (loss0, loss1, compile_s) in results.items():
            timing = timings[name]
            gflops = flops / timing["median_s"] / 1e9
            row = dict(
                B=B,
                T=T,
                H=H,
                impl=name,
                tokens_per_s=B * T / timing["median_s"],
                gflops=gflops,
                matmul_peak_gflops=shape_peak,
                fraction_of_matmul_peak=gflops / shape_peak,
                compile_s=compile_s,
                updates_per_call=k if name in loops else 1,
                loss_before=loss0,
                loss_after_one_step=loss1,
                **timing,
                speedup_vs={n: t / timing["median_s"] for n, t in ref.items() if n != name},
                paired_speedup_vs=common.paired_speedups(timings, name),
            )
            rows.append(row)
            print(
                f"B{B:<3d} T{T:<4d} H{H:<4d} {name:54s} {row['tokens_per_s']:10.0f} tok/s {gflops:6.1f} GFLOP/s "
                f"({100 * gflops / shape_peak:4.1f}% of {shape_peak:.0f}) compile {compile_s:.2f}s",
                flush=True,
            )
    return {"matmul_peak_gflops": peak, "rows": rows}


def run(args) -> dict:
    return common.run_benchmark(args, "lstm_peers", PRESETS, main, pass_device=True)


if __name__ == "__main__":
    common.script_main(__doc__, run)
