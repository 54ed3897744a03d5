"""Where one LSTM training step's time goes, part by part: jaxrnn's fused path beside Flax linen.

Command: ``python -m benchmarks.investigations.step_parts [--quick | --preset mid] [--device cpu|gpu|auto]``
For ``lstm_peers``' model at (B, T, H) = (1, 25, 100) (``--preset mid``: (32, 64, 256)), each compiled on its
own and all timed in turn in one run: the loss alone (forward), the loss with its gradient, the optimiser update
alone (Adam, as in ``lstm_peers``), and the whole training step, at ``T`` and at ``2T``; the training step twice:
called on the same arrays every time, which leaves them intact and writes its results into fresh buffers, and
donating its parameters and optimiser state, each call on the state the last one returned; and, last, the same
step run ``updates_per_call`` times inside one compiled call (``lax.scan`` over as many copies of the chunk), per
step. The difference between a step and a step in the loop is what the call itself costs (dispatch, copying the
state in and out, the work XLA:CPU does per kernel outside a loop). The difference between
the two lengths gives the cost of one more time step (both time loops, and the per-step share of the matmuls over
all steps); the rest of a step at ``T`` is the part that does not grow with ``T``. Unlike ``profile_step.py`` this
needs no profiler, so nothing is hidden or inflated; it cannot split the parts further.
"""

from __future__ import annotations

import dataclasses
import functools


from benchmarks import common
from benchmarks import lstm_peers, peers
from benchmarks.investigations import paths


@dataclasses.dataclass(frozen=True)
class Config:
    shape: tuple = (1, 25, 100)  # (batch, T, hidden)
    embedding: int = 64
    vocab: int = 100
    learning_rate: float = 1e-3
    min_seconds: float = 3.0
    updates_per_call: int = 8  # the last part: this many training steps in one compiled call


PRESETS = {
    "full": Config(),
    "mid": Config(shape=(32, 64, 256)),
    "quick": Config(shape=(2, 5, 8), embedding=4, vocab=11, min_seconds=0.01),
}
LOOP = "training step, in a loop (per step)"
PARTS = ("forward (loss)", "loss and gradient", "optimizer update", "training step", "training step, donated", LOOP)
JAXRNN, FLAX = paths.FUSED, "flax linen nn.RNN(OptimizedLSTMCell)"


def _parts(loss, step, params, opt_state, args, optimizer, updates_per_call):
    """``{part: call}`` for one implementation: ``loss(params, *args) -> scalar``, ``step(params, opt_state,
    *args) -> (params, opt_state, ...)`` its training step (not donating)."""
    import jax
    import jax.numpy as jnp
    import optax

    grads = jax.grad(loss)(params, *args)

    def update(grads, opt_state, params):  # what the training step does after the gradient
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state

    calls = {
        "forward (loss)": (jax.jit(loss), (params, *args)),
        "loss and gradient": (jax.jit(jax.value_and_grad(loss)), (params, *args)),
        "optimizer update": (jax.jit(update), (grads, opt_state, params)),
        "training step": (step, (params, opt_state, *args)),
    }
    parts = {part: functools.partial(common.compile_timed(fn, *a)[0], *a) for part, (fn, a) in calls.items()}
    state = jax.tree.map(jnp.copy, (params, opt_state))  # arrays of its own: the donating step deletes them
    donating, _, _ = common.compile_timed(jax.jit(step, donate_argnums=(0, 1)), *state, *args)

    def loop(params, opt_state, *chunks):  # the same step on each of K chunks, in one compiled call
        def body(state, chunk):
            out = step(*state, *chunk)
            return tuple(out[:2]), out[-1]

        return jax.lax.scan(body, (params, opt_state), chunks)

    chunks = tuple(jnp.stack([a] * updates_per_call) for a in args)
    looped, _, _ = common.compile_timed(loop, params, opt_state, *chunks)
    return parts | {
        "training step, donated": common.threaded_call(donating, state, *args),
        LOOP: functools.partial(looped, params, opt_state, *chunks),
    }


def main(config: Config) -> dict:
    import optax

    import jaxrnn

    B, T0, H = config.shape
    E, V = config.embedding, config.vocab
    optimizer = optax.adam(config.learning_rate)
    fused_loss = paths.losses()[JAXRNN]
    jaxrnn_step = jaxrnn.make_train_step(optimizer, loss_fn=fused_loss)  # lstm_peers' "jaxrnn fused"
    calls, first_loss = {}, {}
    for T in (T0, 2 * T0):
        params, carry, xs, ys = lstm_peers.problem(B, T, H, E, V)
        jaxrnn_parts = _parts(
            lambda p, xs, ys, carry=carry: fused_loss(p, carry, xs, ys)[0],
            lambda p, s, xs, ys, carry=carry: jaxrnn_step(p, s, carry, xs, ys),
            params,
            optimizer.init(params),
            (xs, ys),
            optimizer,
            config.updates_per_call,
        )
        variables, flax_step, flax_loss = peers.flax_linen_impl(params, optimizer)
        flax_parts = _parts(
            flax_loss, flax_step, variables, optimizer.init(variables), (xs, ys), optimizer, config.updates_per_call
        )
        first_loss[T] = (float(jaxrnn_parts["forward (loss)"]()), float(flax_parts["forward (loss)"]()))
        common.check_close(f"loss at T={T}, jaxrnn against Flax", *first_loss[T], 1e-4)
        for impl, parts in ((JAXRNN, jaxrnn_parts), (FLAX, flax_parts)):
            calls |= {(impl, T, part): call for part, call in parts.items()}
    timings = common.interleaved_times(
        {f"{i} | T={t} | {p}": c for (i, t, p), c in calls.items()}, min_seconds=config.min_seconds
    )
    ms = {
        key: timings[f"{key[0]} | T={key[1]} | {key[2]}"]["median_s"]
        * 1e3
        / (config.updates_per_call if key[2] == LOOP else 1)
        for key in calls
    }
    rows = [dict(impl=i, B=B, T=t, H=H, part=p, median_ms=ms[i, t, p]) for (i, t, p) in calls]
    summary = {}
    for impl in (JAXRNN, FLAX):
        step, update = ms[impl, T0, "training step"], ms[impl, T0, "optimizer update"]
        per_time_step = (ms[impl, 2 * T0, "training step"] - step) / T0
        summary[impl] = dict(
            step_ms=step,
            donated_step_ms=ms[impl, T0, "training step, donated"],
            looped_step_ms=ms[impl, T0, LOOP],
            per_call_ms=step - ms[impl, T0, LOOP],
            per_time_step_us=per_time_step * 1e3,
            growing_with_T_ms=per_time_step * T0,
            fixed_ms=step - per_time_step * T0,
            optimizer_update_ms=update,
            optimizer_fraction=update / step,
            backward_ms=ms[impl, T0, "loss and gradient"] - ms[impl, T0, "forward (loss)"],
        )
    print(f"B {B} T {T0} H {H} (and T {2 * T0}), milliseconds (median of interleaved rounds):", flush=True)
    print(f"{'':36s}" + "".join(f"{p:>24s}" for p in PARTS), flush=True)
    for impl in (JAXRNN, FLAX):
        for T in (T0, 2 * T0):
            print(f"{impl[:28] + f' T={T}':36s}" + "".join(f"{ms[impl, T, p]:24.3f}" for p in PARTS), flush=True)
    for impl, s in summary.items():
        print(
            f"{impl}: {s['per_time_step_us']:.1f} us per extra time step ({s['growing_with_T_ms']:.3f} ms of the "
            f"step at T={T0}), {s['fixed_ms']:.3f} ms not growing with T; optimizer update "
            f"{s['optimizer_update_ms']:.3f} ms ({100 * s['optimizer_fraction']:.0f}% of the step); donated step "
            f"{s['donated_step_ms']:.3f} ms; {s['looped_step_ms']:.3f} ms per step in a loop of "
            f"{config.updates_per_call}, so {s['per_call_ms']:.3f} ms of a step is the call itself",
            flush=True,
        )
    j, f = summary[JAXRNN], summary[FLAX]
    ratios = {
        "step": f["step_ms"] / j["step_ms"],
        "per_time_step": f["per_time_step_us"] / j["per_time_step_us"],
        "fixed": f["fixed_ms"] / j["fixed_ms"],
        "step, donated": f["donated_step_ms"] / j["donated_step_ms"],
        "step in a loop": f["looped_step_ms"] / j["looped_step_ms"],
    }
    print("Flax / jaxrnn: " + ", ".join(f"{k} {v:.2f}x" for k, v in ratios.items()), flush=True)
    return {
        "rows": rows,
        "summary": summary,
        "flax_over_jaxrnn": ratios,
        "first_loss": {str(t): v for t, v in first_loss.items()},
    }


def run(args) -> dict:
    return common.run_benchmark(args, "step_parts", PRESETS, main)


if __name__ == "__main__":
    common.script_main(__doc__, run)
