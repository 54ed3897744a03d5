"""min-char-rnn in JAX: the lecture's character-level vanilla RNN, one jitted update per 25-character chunk.

The same model, data walk and optimiser as the classic NumPy script (hidden 100, sequence 25, one-hot inputs,
``randn * 0.01`` weights, elementwise clip at 5, Adagrad with lr 0.1 and ``sqrt(mem + 1e-8)``): the hidden
state is carried from chunk to chunk and reset when the walk wraps to the start of the text. Every
``sample_every`` iterations it prints the smoothed loss and 200 sampled characters.

    python -m experiments.min_char_rnn                      # built-in corpus (pydoc_data.topics)
    python -m experiments.min_char_rnn --data input.txt --iterations 100000
    python -m experiments.min_char_rnn --preset tiny --out /tmp/results

Writes ``min_char_rnn.json`` (the smoothed loss; the samples, each with the iteration before whose update it was
drawn; the speed) and ``min_char_rnn.png`` (the smoothed loss per character against iteration) to ``--out``
(default ``experiments/results``).
"""

from __future__ import annotations

import dataclasses
import sys
import time
from dataclasses import dataclass


import jax
import numpy as np

import jaxrnn
from experiments import common
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
        raise DataError(f"the text has {len(text)} characters; need at least seq_length + 2 = {config.seq_length + 2}")
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
    curve, samples, smoothed, losses = [], [], [], []
    p, start = 0, time.perf_counter()
    for n in range(config.iterations):
        if p + T + 1 >= len(data) or n == 0:  # wrap: back to the start with a fresh memory
            hprev = jaxrnn.initial_carry(params)
            p = 0
        inputs, targets = data[p : p + T], data[p + 1 : p + T + 1]
        if n % config.sample_every == 0:
            key, k_sample = jax.random.split(key)
            ids, _ = jaxrnn.sample(k_sample, params, hprev, inputs[0], config.sample_length)
            samples.append(vocab.decode(ids))
            log(f"----\n {samples[-1]} \n----")
        params, opt_state, hprev, loss = train_step(params, opt_state, hprev, inputs, targets)
        smooth_loss = smooth_loss * 0.999 + float(loss) * 0.001
        smoothed.append(smooth_loss)
        losses.append(float(loss))
        if not np.isfinite(smooth_loss):
            raise FloatingPointError(f"the loss became {float(loss)} at iteration {n}")
        if n % config.sample_every == 0:
            curve.append((n, smooth_loss))
            log(f"iter {n}, loss: {smooth_loss:f}")
        p += T
    seconds = time.perf_counter() - start
    steps = common.thin(np.arange(config.iterations), 500)
    return {
        "config": dataclasses.asdict(config),
        "vocab_size": V,
        "smooth_loss": curve,
        "final_smooth_loss": smooth_loss,
        "samples": samples,
        "samples_as_it_trains": [
            {"iteration": n, "smooth_loss_per_char": loss / T, "text": text} for (n, loss), text in zip(curve, samples)
        ],
        "seconds": seconds,
        "iterations_per_second": config.iterations / seconds,
        "summary": {
            "uniform_loss_per_char": float(np.log(V)),
            "final_smooth_loss_per_char": smooth_loss / T,
            "loss_per_char_last_100": float(np.mean(losses[-100:])) / T,
            "iterations": config.iterations,
            "iterations_per_second": config.iterations / seconds,
        },
        "smooth_loss_curve": {"iteration": steps.tolist(), "loss": [smoothed[i] for i in steps]},
    }


def make_figure(results: dict):
    """The smoothed loss per character against iteration, with the uniform guess ln V."""
    fig, ax = common.new_figure(1, 1)
    T = results["config"]["seq_length"]
    curve = results["smooth_loss_curve"]
    ax[0, 0].plot(curve["iteration"], np.asarray(curve["loss"]) / T, label="smoothed loss (0.999)")
    ax[0, 0].axhline(
        results["summary"]["uniform_loss_per_char"],
        color="k",
        ls=":",
        lw=0.8,
        label=f"uniform guess ln {results['vocab_size']}",
    )
    ax[0, 0].set(title="min-char-rnn: loss per character", xlabel="iteration", ylabel="nats per character")
    ax[0, 0].legend()
    ax[0, 0].grid(alpha=0.3)
    fig.tight_layout()
    return fig


def cli(argv=None) -> int:
    fields = tuple(f.name for f in dataclasses.fields(Config))
    return common.cli(
        "min_char_rnn",
        PRESETS,
        main,
        make_figure,
        argv,
        default="lecture",
        fields=fields,
        errors=(DataError, FloatingPointError),
    )


if __name__ == "__main__":
    sys.exit(cli())
