"""Truncated backpropagation through time on the character language model: how far back must gradients go?

1. **Truncation sweep.** The same LSTM character model (``jaxrnn.lm``) trained with truncation length ``k`` in
   {5, 10, 25, 50, 100}: ``B`` parallel streams cut into chunks of ``k`` characters, the state carried from one
   chunk to the next (so the forward pass sees the whole past) but gradients stopped at the chunk boundary. Every
   ``k`` gets the same number of training characters (``k = 5`` makes 20 times as many updates as ``k = 100``);
   validation loss (nats per character, the held-out text read with the state carried) is compared at equal
   characters seen.
2. **Memory as the sequence grows.** One gradient of the loss over ``T`` characters, compiled by XLA, whose own
   accounting (``compiled.memory_analysis()``: arguments + outputs + temporaries - aliased) gives the bytes the
   program needs, nothing allocated. Full BPTT stores every step's activations, ``O(T)``; rematerialised BPTT
   (``remat=True``: ``jax.checkpoint`` around the step) stores only each step's carry and recomputes the rest,
   still ``O(T)`` but smaller; truncated BPTT (``T / k`` chunks of ``k``, one gradient each, accumulated, the
   state carried without gradient) stores one chunk's activations, ``O(k)``: only the ``T`` input ids grow.

    python experiments/truncated_bptt.py --preset cpu --out experiments/results
"""
from __future__ import annotations

import dataclasses
import os
import sys
import time

if __package__ in (None, ""):
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax
import jax.numpy as jnp
import numpy as np

import jaxrnn
from experiments import common
from jaxrnn import lm
from jaxrnn.data import DEFAULT_CORPUS, Vocabulary, load_corpus, split_ids
from jaxrnn.optim import make_optimizer
from jaxrnn.streams import Streams, evaluation_streams


@dataclasses.dataclass(frozen=True)
class Config:
    truncations: tuple = (5, 10, 25, 50, 100)
    corpus: str = DEFAULT_CORPUS
    hidden_size: int = 128
    batch: int = 32                  # parallel streams
    learning_rate: float = 2e-3      # Adam, global-norm clipping at ``clip``
    clip: float = 5.0
    characters: int = 800_000        # training characters per truncation length
    evaluations: int = 8             # validation points along the way (equal characters for every k)
    eval_seq_length: int = 100
    validation_characters: int = 40_000
    memory_lengths: tuple = (100, 200, 400, 800, 1600, 3200)
    memory_truncation: int = 50
    memory_batch: int = 32
    memory_hidden: int = 256
    seed: int = 0


PRESETS = {
    "cpu": Config(),
    "tiny": Config(truncations=(5, 50), hidden_size=32, batch=8, learning_rate=1e-2, characters=20_000,
                   evaluations=2, validation_characters=4_000, eval_seq_length=50, memory_lengths=(50, 200),
                   memory_truncation=10, memory_batch=4, memory_hidden=16),
}


# ----------------------------------------------------------------------------------- 1. truncation sweep


def load_pieces(cfg: Config):
    """Vocabulary size and the training and validation ids (the corpus's first 90% and next 5%)."""
    text = load_corpus(cfg.corpus)
    vocab = Vocabulary.from_text(text)
    train, validation, _ = split_ids(vocab.encode(text))
    return vocab.size, train, validation[: cfg.validation_characters + 1]


def run_one(cfg: Config, k: int, vocab_size: int, train_ids, validation) -> dict:
    """Train with truncation ``k`` for ``cfg.characters`` characters; validation loss at equal characters."""
    streams = Streams.from_ids(train_ids, cfg.batch, k)
    optimizer = make_optimizer("adam", cfg.learning_rate, clip=cfg.clip, clip_mode="global_norm")
    model = lm.ModelConfig(vocab_size, cell="lstm", hidden_size=cfg.hidden_size)
    state = lm.init_train_state(jax.random.PRNGKey(cfg.seed), model, optimizer, cfg.batch)
    train_chunks = lm.make_train_chunks(optimizer, max(cfg.characters // (cfg.batch * k) // cfg.evaluations, 1))
    updates = cfg.characters // (cfg.batch * k)
    per_call = max(updates // cfg.evaluations, 1)
    start, points, losses = 0, [], []
    t0 = time.perf_counter()
    while start < updates:
        count = min(per_call, updates - start)
        xs, targets, reset = streams.chunks(start, per_call)
        active = np.arange(per_call) < count   # one compiled shape for every call
        state, chunk_losses = train_chunks(state, xs, targets, reset, active)
        losses += np.asarray(chunk_losses)[:count].tolist()
        start += count
        points.append({"characters": start * cfg.batch * k, "updates": start,
                       "validation_loss": float(lm.evaluate(state.params, *validation.epoch()))})
    return {"k": k, "updates": updates, "characters": updates * cfg.batch * k,
            "validation_loss": points[-1]["validation_loss"], "curve": points,
            "train_loss_last_10pct": float(np.mean(losses[-max(len(losses) // 10, 1):])),
            "seconds": time.perf_counter() - t0}


# ------------------------------------------------------------------------------------------- 2. memory


def program_bytes(compiled) -> dict:
    """XLA's accounting of a compiled program: ``arguments + outputs + temporaries - aliased`` and its parts."""
    m = compiled.memory_analysis()
    total = m.argument_size_in_bytes + m.output_size_in_bytes + m.temp_size_in_bytes - m.alias_size_in_bytes
    return {"total_bytes": int(total), "temp_bytes": int(m.temp_size_in_bytes),
            "argument_bytes": int(m.argument_size_in_bytes)}


def truncated_gradient(params, carry, xs, targets, k: int):
    """The truncated-BPTT gradient over ``T = len(xs)`` characters: ``T / k`` chunks, each differentiated on its
    own from the carried state (no gradient through it), gradients summed. Returns ``(loss, grads)``."""
    T = xs.shape[0]
    chunks = lambda a: a.reshape(T // k, k, *a.shape[1:])
    grad = jax.value_and_grad(jaxrnn.sequence_loss, has_aux=True)

    def body(state, chunk):
        carry, loss, grads = state
        (chunk_loss, carry), chunk_grads = grad(params, jax.lax.stop_gradient(carry), *chunk)
        return (carry, loss + chunk_loss, jax.tree.map(jnp.add, grads, chunk_grads)), None

    zeros = jax.tree.map(jnp.zeros_like, params)
    (_, loss, grads), _ = jax.lax.scan(body, (carry, jnp.zeros(()), zeros), (chunks(xs), chunks(targets)))
    return loss, grads


def memory_row(cfg: Config, vocab_size: int, T: int, method: str) -> dict:
    params = jax.eval_shape(lambda: jaxrnn.init_lstm(jax.random.PRNGKey(0), vocab_size, cfg.memory_hidden,
                                                     vocab_size))
    carry = jax.eval_shape(lambda: jaxrnn.initial_carry(jaxrnn.init_lstm(jax.random.PRNGKey(0), 1,
                                                                         cfg.memory_hidden, 1), (cfg.memory_batch,)))
    ids = jax.ShapeDtypeStruct((T, cfg.memory_batch), jnp.int32)
    if method == "truncated":
        f = lambda p, c, x, y: truncated_gradient(p, c, x, y, cfg.memory_truncation)
    else:
        f = lambda p, c, x, y: jax.value_and_grad(lambda p: jaxrnn.sequence_loss(
            p, c, x, y, remat=method == "remat")[0])(p)
    return {"T": T, "method": method, **program_bytes(jax.jit(f).lower(params, carry, ids, ids).compile())}


# ---------------------------------------------------------------------------------------------- main


def main(cfg: Config) -> dict:
    vocab_size, train_ids, validation_ids = load_pieces(cfg)
    validation = evaluation_streams(validation_ids, cfg.batch, cfg.eval_seq_length, what="the validation text")
    sweep = [run_one(cfg, k, vocab_size, train_ids, validation) for k in cfg.truncations]
    memory = [memory_row(cfg, vocab_size, T, method) for T in cfg.memory_lengths
              for method in ("full", "remat", "truncated")]
    summary = {f"k{r['k']}_validation_loss": r["validation_loss"] for r in sweep}
    summary["uniform_loss"] = float(np.log(vocab_size))
    by = {(r["method"], r["T"]): r["total_bytes"] for r in memory}
    T0, T1 = cfg.memory_lengths[0], cfg.memory_lengths[-1]
    for method in ("full", "remat", "truncated"):
        summary[f"{method}_MiB_T{T1}"] = by[(method, T1)] / 2 ** 20
        summary[f"{method}_growth_T{T0}_to_T{T1}"] = by[(method, T1)] / by[(method, T0)]
    return {"config": cfg, "summary": summary, "vocab_size": vocab_size, "sweep": sweep, "memory": memory}


def make_figure(results: dict):
    fig, ax = common.new_figure(1, 2)
    for r in results["sweep"]:
        ax[0, 0].plot([p["characters"] for p in r["curve"]], [p["validation_loss"] for p in r["curve"]], "o-",
                      ms=3, label=f"k = {r['k']}")
    ax[0, 0].set(title="validation loss at equal characters seen", xlabel="training characters",
                 ylabel="nats per character")
    ax[0, 0].legend()
    ax[0, 0].grid(alpha=0.3)
    for method, style in (("full", "o-"), ("remat", "s--"), ("truncated", "^:")):
        rows = [r for r in results["memory"] if r["method"] == method]
        ax[0, 1].loglog([r["T"] for r in rows], [r["total_bytes"] / 2 ** 20 for r in rows], style, label=method)
    ax[0, 1].set(title="one gradient's compiled memory (XLA)", xlabel="sequence length T", ylabel="MiB")
    ax[0, 1].legend()
    ax[0, 1].grid(alpha=0.3, which="both")
    fig.tight_layout()
    return fig


if __name__ == "__main__":
    sys.exit(common.cli("truncated_bptt", PRESETS, main, make_figure))
