"""min-char-rnn in JAX: the lecture's character-level vanilla RNN, one jitted update per 25-character chunk.

The same model, data walk and optimiser as the classic NumPy script (hidden 100, sequence 25, one-hot inputs,
``randn * 0.01`` weights, elementwise clip at 5, Adagrad with lr 0.1 and ``sqrt(mem + 1e-8)``): the hidden
state is carried from chunk to chunk and reset when the walk wraps to the start of the text. Every
``sample_every`` iterations it prints the smoothed loss and 200 sampled characters.

    python experiments/min_char_rnn.py                      # built-in corpus (pydoc_data.topics)
    python experiments/min_char_rnn.py --data input.txt --iterations 100000
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from dataclasses import dataclass

import jax
import numpy as np

import jaxrnn
from jaxrnn.data import DataError, Vocabulary, load_corpus, load_text


@dataclass(frozen=True)
class Config:
    hidden_size: int = 100
    seq_length: int = 25
    learning_rate: float = 0.1
    clip: float = 5.0
    iterations: int = 20_000
    sample_every: int = 100
    sample_length: int = 200
    seed: int = 0
    data: str | None = None  # a UTF-8 text file; None for the built-in corpus
    corpus: str = "pydoc_topics"


PRESETS = {"lecture": Config(), "tiny": Config(hidden_size=32, iterations=300, sample_length=50)}


def main(config: Config, log=print) -> dict:
    """Train as min-char-rnn does; returns the smoothed-loss curve and the samples."""
    for name in ("hidden_size", "seq_length", "iterations", "sample_every"):
        if getattr(config, name) <= 0:
            raise DataError(f"{name} must be positive, got {getattr(config, name)}")
    text = load_text(config.data) if config.data else load_corpus(config.corpus)
    if len(text) < config.seq_length + 2:
        raise DataError(f"the text has {len(text)} characters; need at least seq_length + 2 = "
                        f"{config.seq_length + 2}")
    vocab = Vocabulary.from_text(text)
    data = vocab.encode(text)
    V, T = vocab.size, config.seq_length
    log(f"data has {len(data)} characters, {V} unique.")

    key = jax.random.PRNGKey(config.seed)
    params = jaxrnn.init_rnn(key, V, config.hidden_size, V, init="lecture")
    optimizer = jaxrnn.lecture_optimizer(config.learning_rate, config.clip)
    opt_state = optimizer.init(params)
    train_step = jaxrnn.make_train_step(optimizer)

    smooth_loss = -np.log(1.0 / V) * T  # loss at iteration 0
    curve, samples = [], []
    p, start = 0, time.perf_counter()
    for n in range(config.iterations):
        if p + T + 1 >= len(data) or n == 0:  # wrap: back to the start with a fresh memory
            hprev = jaxrnn.initial_carry(params)
            p = 0
        inputs, targets = data[p:p + T], data[p + 1:p + T + 1]
        if n % config.sample_every == 0:
            key, k_sample = jax.random.split(key)
            ids, _ = jaxrnn.sample(k_sample, params, hprev, inputs[0], config.sample_length)
            samples.append(vocab.decode(ids))
            log(f"----\n {samples[-1]} \n----")
        params, opt_state, hprev, loss = train_step(params, opt_state, hprev, inputs, targets)
        smooth_loss = smooth_loss * 0.999 + float(loss) * 0.001
        if not np.isfinite(smooth_loss):
            raise FloatingPointError(f"the loss became {float(loss)} at iteration {n}")
        if n % config.sample_every == 0:
            curve.append((n, smooth_loss))
            log(f"iter {n}, loss: {smooth_loss:f}")
        p += T
    seconds = time.perf_counter() - start
    return {"config": dataclasses.asdict(config), "vocab_size": V, "smooth_loss": curve,
            "final_smooth_loss": smooth_loss, "samples": samples, "seconds": seconds,
            "iterations_per_second": config.iterations / seconds}


def parse_args(argv=None) -> Config:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--preset", choices=sorted(PRESETS), default="lecture", help="starting configuration")
    for field in dataclasses.fields(Config):
        parser.add_argument("--" + field.name.replace("_", "-"), type=str if field.name in ("data", "corpus")
                            else type(field.default), default=None, help="(preset's value if omitted)")
    args = parser.parse_args(argv)
    overrides = {f.name: getattr(args, f.name) for f in dataclasses.fields(Config)
                 if getattr(args, f.name) is not None}
    return dataclasses.replace(PRESETS[args.preset], **overrides)


if __name__ == "__main__":
    try:
        main(parse_args())
    except (DataError, FloatingPointError) as error:
        print(f"min_char_rnn: error: {error}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        sys.exit(130)
