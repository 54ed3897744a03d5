"""min-char-rnn training iterations per second: the NumPy reference versus jaxrnn.

Command: ``python -m benchmarks.minchar [--quick] [--device cpu|gpu|auto]``
The text is this repository's own ``jaxrnn/*.py`` source (no download); hidden 100, sequence 25, clipped Adagrad.
Every implementation, the NumPy loop included, is timed in turn, round after round (``common.interleaved_times``).
"""

from __future__ import annotations

import dataclasses
import functools
import time
from pathlib import Path

from benchmarks import common


@dataclasses.dataclass(frozen=True)
class Config:
    hidden: int = 100
    seq_length: int = 25
    learning_rate: float = 0.1
    numpy_iterations: int = 300
    updates_per_call: tuple = (100, 1000)
    min_seconds: float = 2.0


CHECKED = 5  # updates whose losses must agree with the reference before timing
METHODS = ("scan", "fused")  # make_train_step's method=: the plain step in a lax.scan, or jaxrnn.recurrence

PRESETS = {
    "full": Config(),
    "quick": Config(hidden=8, seq_length=5, numpy_iterations=5, updates_per_call=(4,), min_seconds=0.01),
}


def corpus() -> str:
    return "".join(p.read_text() for p in sorted((Path(__file__).resolve().parents[1] / "jaxrnn").glob("*.py")))


def _check_against_reference(name, np_losses, losses):
    """float32 JAX against the float64 reference: the first loss (no update yet) to 1e-5, the next ones to 5e-3.

    Later losses of a float32 and a float64 run drift apart however correct both are: Adagrad's first steps move
    each parameter by about lr * sign(g), and the signs of tiny gradients differ between precisions (see the
    README on min-char-rnn's chaos; the float64 step-by-step agreement is pinned by tests/test_core_training.py).
    """
    import numpy as np

    losses = np.asarray([float(l) for l in losses])
    common.check_close(name + " (first loss)", np.array(np_losses[:1]), losses[:1], 1e-5)
    return common.check_close(name, np.array(np_losses[: len(losses)]), losses, 5e-3)


def main(config: Config) -> dict:
    import jax
    import jax.numpy as jnp
    import numpy as np

    import jaxrnn
    from jaxrnn import reference

    text = corpus()
    chars = sorted(set(text))
    V, H, T = len(chars), config.hidden, config.seq_length
    ids = np.array([chars.index(c) for c in text], np.int32)
    n_chunks = (len(ids) - 1) // T
    xs_all = ids[: n_chunks * T].reshape(n_chunks, T)
    ys_all = ids[1 : n_chunks * T + 1].reshape(n_chunks, T)
    params0 = jaxrnn.init_rnn(jax.random.PRNGKey(0), V, H, V, init="lecture")
    optimizer = jaxrnn.lecture_optimizer(config.learning_rate)

    # NumPy reference: min-char-rnn's loop, float64
    def numpy_run(n):
        params = [np.array(p, np.float64) for p in params0]
        mem = [np.zeros_like(p) for p in params]
        h = np.zeros(H)
        losses = []
        for i in range(n):
            loss, *grads, h = reference.rnn_loss_fun(xs_all[i % n_chunks], ys_all[i % n_chunks], h, params)
            reference.adagrad_update(params, grads, mem, config.learning_rate)
            losses.append(loss)
        return params, losses

    _, np_losses = numpy_run(CHECKED)
    n = config.numpy_iterations
    calls = {"numpy reference": (lambda: numpy_run(n), n, 0.0, 0.0)}  # name -> (call, updates per call, compile_s, err)
    carry0 = jnp.zeros(H)
    xs, ys = list(jnp.asarray(xs_all)), list(jnp.asarray(ys_all))  # one device array per chunk
    for method in METHODS:
        name, train_step = f"jaxrnn {method}, 1 update/call", jaxrnn.make_train_step(optimizer, method=method)
        opt0 = optimizer.init(params0)
        t0 = time.perf_counter()
        common.block(train_step(params0, opt0, carry0, xs[0], ys[0]))
        compile_s = time.perf_counter() - t0

        def run(n, train_step=train_step, opt0=opt0):  # min-char-rnn's loop: one jitted call per update
            params, opt_state, carry, losses = params0, opt0, carry0, []
            for i in range(n):
                params, opt_state, carry, loss = train_step(
                    params, opt_state, carry, xs[i % n_chunks], ys[i % n_chunks]
                )
                losses.append(loss)
            return losses

        err = _check_against_reference(f"minchar {name}", np_losses, common.block(run(CHECKED)))
        calls[name] = (functools.partial(run, n), n, compile_s, err)

    for per_call in config.updates_per_call:
        for method in METHODS:
            train_loop = jaxrnn.make_train_step(optimizer, method=method, updates_per_call=per_call)
            reps = -(-per_call // n_chunks)
            chunks = (
                jnp.asarray(np.tile(xs_all, (reps, 1))[:per_call]),
                jnp.asarray(np.tile(ys_all, (reps, 1))[:per_call]),
            )
            opt0 = optimizer.init(params0)
            compiled, lower_s, compile_s = common.compile_timed(train_loop, params0, opt0, carry0, *chunks)
            losses = compiled(params0, opt0, carry0, *chunks)[3]
            name = f"jaxrnn {method}, {per_call} updates/call"
            err = _check_against_reference(f"minchar {name}", np_losses, losses[:CHECKED])
            calls[name] = (
                functools.partial(compiled, params0, opt0, carry0, *chunks),
                per_call,
                lower_s + compile_s,
                err,
            )

    timings = common.interleaved_times({name: c[0] for name, c in calls.items()}, min_seconds=config.min_seconds)
    numpy_its = n / timings["numpy reference"]["median_s"]
    rows = []
    for name, (_, updates, compile_s, err) in calls.items():
        its = updates / timings[name]["median_s"]
        rows.append(
            dict(
                impl=name,
                iterations_per_s=its,
                ratio_vs_numpy=its / numpy_its,
                compile_s=compile_s,
                rel_diff_vs_numpy=err,
                **timings[name],
            )
        )
        print(f"{name}: {its:.0f} it/s ({its / numpy_its:.1f}x numpy), compile {compile_s:.2f}s", flush=True)
    return {"vocab": V, "rows": rows}


def run(args) -> dict:
    return common.run_benchmark(args, "minchar", PRESETS, main)


if __name__ == "__main__":
    common.script_main(__doc__, run)
