"""One-to-many: caption images of two or three handwritten digits in words (``"three one four"``).

Images: scikit-learn's 8x8 digits (1797 scans, pixel values 0..16), split once into training and held-out scans;
an image is two or three scans side by side (``8 x 24``, blank where there is no third digit), so held-out
images are made only of scans that training never saw. A small learned feature extractor
``f = relu(W1 x + b1)`` (``x`` the 192 pixels / 16) stands in for the CNN, and an LSTM writes the caption, one
word id per step, trained by teacher forcing. Two ways to give the LSTM the image, both compared:

- ``init`` (the course): the features set the initial state, ``h_0 = tanh(Wimg f + bimg)``, ``c_0 = 0``; the
  LSTM reads ``GO w_1 .. w_n`` and predicts ``w_1 .. w_n END``.
- ``first_input`` (Show and Tell, Vinyals et al. 2015): the state starts at zero and the first input is the image
  projected into the word-embedding space, ``x_{-1} = Wimg f + bimg``; then ``GO w_1 .. w_n`` as above (the
  output at the image step is not scored).

Decoding: greedy (each step's argmax fed back) and sampled (a draw from ``softmax(y)``, temperature 1).
Metrics on held-out images: exact match (every word and the END) and per-word accuracy (position by position
over the true caption's words; chance is 10%).

Needs scikit-learn (for the data set only).

    python experiments/captioning.py --preset cpu --out experiments/results
"""
from __future__ import annotations

import dataclasses
import os
import sys
import time
from typing import NamedTuple

if __package__ in (None, ""):
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax
import jax.numpy as jnp
import numpy as np
import optax

import jaxrnn
from experiments import common

WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
END, GO = 10, 11
VOCAB = 12
MAX_DIGITS = 3
MODES = ("init", "first_input")
NEEDS_SKLEARN = "captioning: needs scikit-learn for its 8x8 digits (pip install scikit-learn)"


@dataclasses.dataclass(frozen=True)
class Config:
    modes: tuple = MODES
    feature_size: int = 256          # F: the feature extractor's width
    embed_size: int = 64             # E: word embedding (and, for first_input, the projected image)
    hidden_size: int = 128
    batch: int = 128
    learning_rate: float = 3e-3
    clip: float = 1.0
    steps: int = 3000
    eval_every: int = 250
    eval_size: int = 1000            # held-out composed images
    held_out_fraction: float = 0.3   # of the 1797 scans
    seed: int = 0


PRESETS = {
    "cpu": Config(),
    "tiny": Config(feature_size=64, embed_size=16, hidden_size=32, batch=64, learning_rate=1e-2, steps=300,
                   eval_every=100, eval_size=300),
}


def load_digits():
    """scikit-learn's digits as ``images (N, 8, 8)`` in [0, 1] and ``labels (N,)``; a one-line error without it."""
    try:
        from sklearn.datasets import load_digits as sklearn_digits
    except ImportError:
        raise ImportError(NEEDS_SKLEARN) from None
    data = sklearn_digits()
    return data.images.astype(np.float32) / 16.0, data.target.astype(np.int32)


def split_scans(images, labels, fraction: float, seed: int):
    """Training and held-out scans: ``((images, labels), (images, labels))``."""
    order = np.random.default_rng(seed).permutation(len(labels))
    n_test = int(round(fraction * len(labels)))
    test, train = order[:n_test], order[n_test:]
    return (jnp.asarray(images[train]), jnp.asarray(labels[train])), (jnp.asarray(images[test]),
                                                                       jnp.asarray(labels[test]))


def compose(key, scans, B: int):
    """``B`` images of 2 or 3 random scans side by side.

    Returns: ``images (B, 8, 24)``; ``inputs (4, B)`` = GO, w_1, w_2, w_3 (END-padded) and ``targets (4, B)`` =
    w_1 .. w_n, END (END-padded), time-major; ``mask (4, B)`` true up to and including the END; ``n (B,)``.
    """
    images, labels = scans
    k_n, k_i = jax.random.split(key)
    n = jax.random.randint(k_n, (B,), 2, MAX_DIGITS + 1)
    idx = jax.random.randint(k_i, (B, MAX_DIGITS), 0, labels.shape[0])
    present = jnp.arange(MAX_DIGITS) < n[:, None]                       # (B, 3)
    tiles = images[idx] * present[:, :, None, None]                      # (B, 3, 8, 8)
    picture = jnp.concatenate([tiles[:, j] for j in range(MAX_DIGITS)], axis=-1)
    words = jnp.where(present, labels[idx], END).T                       # (3, B)
    targets = jnp.concatenate([words, jnp.full((1, B), END, words.dtype)])
    inputs = jnp.concatenate([jnp.full((1, B), GO, words.dtype), words])
    return picture, inputs, targets, jnp.arange(MAX_DIGITS + 1)[:, None] <= n, n


def caption_text(ids) -> str:
    out = []
    for i in np.asarray(ids).tolist():
        if i == END:
            break
        out.append(WORDS[i] if i < len(WORDS) else "<go>")
    return " ".join(out)


# ------------------------------------------------------------------------------------------- the model


class CaptionParams(NamedTuple):
    """Features ``W1 (F, 192)``, ``b1 (F,)``; image projection ``Wimg (H or E, F)``, ``bimg``; word embedding
    ``embedding (E, V)``; the decoder ``LSTMParams`` reading ``E``-vectors, read out to ``V`` word ids."""

    W1: jax.Array
    b1: jax.Array
    Wimg: jax.Array
    bimg: jax.Array
    embedding: jax.Array
    decoder: jaxrnn.LSTMParams


def init_captioner(key, cfg: Config, mode: str) -> CaptionParams:
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}; expected one of {MODES}")
    k1, k2, k3, k4 = jax.random.split(key, 4)
    P, F, E, H = 8 * 8 * MAX_DIGITS, cfg.feature_size, cfg.embed_size, cfg.hidden_size
    out = H if mode == "init" else E
    return CaptionParams(jax.random.normal(k1, (F, P)) * jnp.sqrt(2.0 / P), jnp.zeros(F),
                         jax.random.normal(k2, (out, F)) / jnp.sqrt(F), jnp.zeros(out),
                         jax.random.normal(k3, (E, VOCAB)), jaxrnn.init_lstm(k4, E, H, VOCAB))


def features(params: CaptionParams, images):
    """``images (B, 8, 24)`` -> ``Wimg f + bimg (B, H or E)`` with ``f = relu(W1 x + b1)``."""
    f = jax.nn.relu(images.reshape(images.shape[0], -1) @ params.W1.T + params.b1)
    return f @ params.Wimg.T + params.bimg


def start(params: CaptionParams, images, mode: str):
    """The decoder's state just before it reads ``GO``: the image in ``h_0`` (``init``), or the state after
    reading the image as its first input (``first_input``)."""
    v = features(params, images)
    zeros = jaxrnn.initial_carry(params.decoder, (images.shape[0],))
    if mode == "init":
        return jaxrnn.LSTMCarry(jnp.tanh(v), zeros.c)
    carry, _ = jaxrnn.lstm_step(params.decoder, zeros, v)
    return carry


def loss_fn(params: CaptionParams, batch, mode: str):
    """Teacher forcing: mean cross-entropy per word (and END)."""
    images, inputs, targets, mask, _ = batch
    xs = jaxrnn.embed(params.embedding, inputs)
    loss, _ = jaxrnn.sequence_loss(params.decoder, start(params, images, mode), xs, targets, mask=mask,
                                   reduction="mean")
    return loss


def decode(params: CaptionParams, images, mode: str, key, *, temperature=0.0, length: int = MAX_DIGITS + 1):
    """Feed GO, then each drawn word back in: ids ``(length, B)``. ``temperature`` 0 is greedy."""

    def body(state, key_t):
        carry, word = state
        carry, h = jaxrnn.lstm_step(params.decoder, carry, jaxrnn.embed(params.embedding, word))
        word = jaxrnn.next_token(key_t, jaxrnn.readout(params.decoder, h), temperature).astype(word.dtype)
        return (carry, word), word

    go = jnp.full((images.shape[0],), GO, jnp.int32)
    _, ids = jax.lax.scan(body, (start(params, images, mode), go), jax.random.split(key, length))
    return ids


def scores(ids, targets, mask, n):
    """``exact_match``: every word and the END right; ``word_accuracy``: right words at the true words' places."""
    right = ids == targets
    exact = jnp.mean(jnp.all(right | ~mask, axis=0))
    words = jnp.arange(targets.shape[0])[:, None] < n
    return {"exact_match": exact, "word_accuracy": jnp.sum(right & words) / jnp.sum(words)}


# ---------------------------------------------------------------------------------------------- runs


def run_one(cfg: Config, mode: str, train_scans, test) -> dict:
    params = init_captioner(jax.random.PRNGKey(cfg.seed), cfg, mode)
    opt = optax.chain(optax.clip_by_global_norm(cfg.clip), optax.adam(cfg.learning_rate))

    @jax.jit
    def evaluate(p, key, temperature):
        return scores(decode(p, test[0], mode, key, temperature=temperature), *test[2:])

    curve = []

    def track(p):  # greedy scores after every chunk; train() keeps 1 - exact match
        curve.append(evaluate(p, jax.random.PRNGKey(0), 0.0))
        return 1.0 - float(curve[-1]["exact_match"])

    start_time = time.perf_counter()
    params, hist = common.train(lambda p, b: loss_fn(p, b, mode), params, opt,
                                lambda k: compose(k, train_scans, cfg.batch), jax.random.PRNGKey(cfg.seed + 1),
                                cfg.steps, chunk=cfg.eval_every, evaluate=track)
    seconds = time.perf_counter() - start_time
    greedy = {k: float(v) for k, v in evaluate(params, jax.random.PRNGKey(0), 0.0).items()}
    sampled = {k: float(v) for k, v in evaluate(params, jax.random.PRNGKey(1), 1.0).items()}
    ids = np.asarray(jax.jit(decode, static_argnums=2)(params, test[0][:12], mode, jax.random.PRNGKey(0)))
    sampled_ids = np.asarray(jax.jit(decode, static_argnums=2)(params, test[0][:12], mode, jax.random.PRNGKey(2),
                                                               temperature=1.0))
    return {"mode": mode, "greedy": greedy, "sampled": sampled, "eval_step": hist["eval_step"],
            "exact_match_curve": [float(c["exact_match"]) for c in curve],
            "word_accuracy_curve": [float(c["word_accuracy"]) for c in curve],
            "train_loss_last_100": float(np.mean(hist["losses"][-100:])), "seconds": seconds,
            "greedy_captions": [caption_text(ids[:, j]) for j in range(ids.shape[1])],
            "sampled_captions": [caption_text(sampled_ids[:, j]) for j in range(ids.shape[1])]}


def main(cfg: Config) -> dict:
    images, labels = load_digits()
    train_scans, test_scans = split_scans(images, labels, cfg.held_out_fraction, cfg.seed)
    test = compose(jax.random.PRNGKey(10_000 + cfg.seed), test_scans, cfg.eval_size)
    runs = [run_one(cfg, mode, train_scans, test) for mode in cfg.modes]
    summary = {}
    for r in runs:
        for how in ("greedy", "sampled"):
            for k, v in r[how].items():
                summary[f"{r['mode']}_{how}_{k}"] = v
        summary[f"{r['mode']}_seconds"] = r["seconds"]
    truth = [caption_text(np.asarray(test[2])[:, j]) for j in range(12)]
    return {"config": cfg, "summary": summary, "runs": runs, "scans": {"train": int(train_scans[1].shape[0]),
            "held_out": int(test_scans[1].shape[0])}, "examples": {"truth": truth,
                                                                   "images": np.asarray(test[0][:12]).round(3)}}


def make_figure(results: dict):
    images = np.asarray(results["examples"]["images"], dtype=float)
    truth = results["examples"]["truth"]
    fig, ax = common.new_figure(4, 4, size=(3.0, 1.7))
    for j in range(12):
        a = ax[j // 4, j % 4]
        a.imshow(images[j], cmap="gray_r", vmin=0, vmax=1)
        lines = []
        for r in results["runs"]:
            cap = r["greedy_captions"][j]
            lines.append(f"{'init' if r['mode'] == 'init' else 'first'}: {cap}" + ("" if cap == truth[j] else " X"))
        a.set_title("\n".join(lines), fontsize=7)
        a.axis("off")
    for k, r in enumerate(results["runs"]):
        a = ax[3, k * 2]
        a.plot(r["eval_step"], r["exact_match_curve"], "o-", ms=3, label="exact match")
        a.plot(r["eval_step"], r["word_accuracy_curve"], "s--", ms=3, label="per word")
        a.set(title=f"{r['mode']}: held-out, greedy", xlabel="step", ylim=(0, 1.02))
        a.legend(fontsize=6)
        a.grid(alpha=0.3)
        ax[3, k * 2 + 1].axis("off")
        ax[3, k * 2 + 1].text(0, 0.5, f"{r['mode']}\ngreedy: exact {r['greedy']['exact_match']:.3f}, "
                              f"word {r['greedy']['word_accuracy']:.3f}\nsampled: exact "
                              f"{r['sampled']['exact_match']:.3f}, word {r['sampled']['word_accuracy']:.3f}",
                              fontsize=7, va="center")
    fig.suptitle("held-out images, greedy captions (X: wrong)", fontsize=9)
    fig.tight_layout()
    return fig


if __name__ == "__main__":
    try:
        import sklearn  # noqa: F401  (checked before any work: a one-line message, exit status 2)
    except ImportError:
        print(NEEDS_SKLEARN, file=sys.stderr)
        sys.exit(2)
    sys.exit(common.cli("captioning", PRESETS, main, make_figure))
