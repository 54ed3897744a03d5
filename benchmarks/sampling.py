"""Sampling characters per second: jitted ``jaxrnn.sample`` versus min-char-rnn's NumPy loop.

Command: ``python -m benchmarks.sampling [--quick] [--device cpu|gpu|auto]``
"""

from __future__ import annotations

import dataclasses

from benchmarks import common


@dataclasses.dataclass(frozen=True)
class Config:
    hidden: int = 100
    vocab: int = 65
    length: int = 1000
    streams: tuple = (1, 32)  # jaxrnn samples a batch of independent streams in the same call
    min_seconds: float = 2.0


PRESETS = {"full": Config(), "quick": Config(hidden=8, vocab=11, length=20, streams=(1,), min_seconds=0.01)}


def main(config: Config) -> dict:
    import jax
    import jax.numpy as jnp
    import numpy as np

    import jaxrnn
    from jaxrnn import reference

    params = jaxrnn.init_rnn(jax.random.PRNGKey(0), config.vocab, config.hidden, config.vocab)
    np_params = [np.asarray(p, np.float64) for p in params]
    timing = common.median_time(
        lambda: reference.sample(np.zeros(config.hidden), 0, config.length, np_params, np.random.default_rng(0)),
        min_repeats=3,
        min_seconds=config.min_seconds,
        warmup=0,
    )
    numpy_cps = config.length / timing["median_s"]
    rows = [dict(impl="numpy reference.sample", streams=1, chars_per_s=numpy_cps, ratio_vs_numpy=1.0, **timing)]
    print(f"numpy: {numpy_cps:.0f} chars/s", flush=True)
    # agreement: greedy decoding (temperature 0) must pick the same ids as an argmax NumPy loop
    ids, _ = jaxrnn.sample(
        jax.random.PRNGKey(0), params, jnp.zeros(config.hidden), jnp.asarray(0), config.length, temperature=0.0
    )
    h, x, greedy = np.zeros(config.hidden), 0, []
    for _ in range(config.length):
        h = np.tanh(np_params[0][:, x] + np_params[1] @ h + np_params[3])
        x = int(np.argmax(np_params[2] @ h + np_params[4]))
        greedy.append(x)
    agree = float(np.mean(np.asarray(ids) == np.asarray(greedy)))
    if agree < 0.99:
        raise AssertionError(f"greedy samples agree on only {agree:.0%} of positions")
    for streams in config.streams:
        carry, x = jnp.zeros((streams, config.hidden)), jnp.zeros((streams,), jnp.int32)
        key = jax.random.PRNGKey(1)
        compiled, lower_s, compile_s = common.compile_timed(
            lambda k, p, c, x: jaxrnn.sample(k, p, c, x, config.length), key, params, carry, x
        )
        timing = common.median_time(lambda: compiled(key, params, carry, x), min_seconds=config.min_seconds)
        cps = streams * config.length / timing["median_s"]
        rows.append(
            dict(
                impl="jaxrnn.sample (jit, lax.scan)",
                streams=streams,
                chars_per_s=cps,
                ratio_vs_numpy=cps / numpy_cps,
                compile_s=lower_s + compile_s,
                **timing,
            )
        )
        print(
            f"jaxrnn.sample x{streams}: {cps:.0f} chars/s ({cps / numpy_cps:.1f}x numpy), "
            f"compile {lower_s + compile_s:.2f}s",
            flush=True,
        )
    return {"greedy_agreement": agree, "rows": rows}


def run(args) -> dict:
    return common.run_benchmark(args, "sampling", PRESETS, main)


if __name__ == "__main__":
    common.script_main(__doc__, run)
