"""One-to-many: caption images of two or three handwritten digits in words (``"three one four"``).

Images: scikit-learn's 8x8 digits (1797 scans, pixel values 0..16), split at random (one split per seed) into
training and held-out scans; an image is two or three scans side by side (``8 x 24``, blank where there is no
third digit), so held-out images are made only of scans that training never saw. They are not new writers:
scikit-learn's 1797 scans are the test part of the UCI set, written by 13 people (the other 30 of its 43 wrote
the UCI training part, which scikit-learn does not ship), so every held-out scan comes from a writer whose other
scans were trained on. A small learned feature extractor
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

The baseline without recurrence: a tile classifier, ``relu(W1 x + b1)`` (the same feature layer form, on one
8x8 tile) read out to the ten digits or "blank", trained on the tiles of the same training images; its caption is
the tiles' words up to the first blank. What the decoder adds (or costs) is the difference between the two.

Needs scikit-learn (for the data set only).

    python -m experiments.captioning --preset cpu --out experiments/results
"""

from __future__ import annotations

import dataclasses
import time
from typing import NamedTuple


import jax
import jax.numpy as jnp
import numpy as np
import optax

import jaxrnn
from experiments import common, stats
from experiments.captioning.data import (  # noqa: F401 (the task's names, read here and by the tests)
    END,
    GO,
    MAX_DIGITS,
    MODES,
    NEEDS_SKLEARN,
    VOCAB,
    WORDS,
    caption_text,
    compose,
    load_digits,
    split_scans,
)
from experiments.captioning.baseline import TileParams, init_tiles, tile_caption, tile_loss_fn  # noqa: F401


@dataclasses.dataclass(frozen=True)
class Config:
    modes: tuple = MODES
    feature_size: int = 256  # F: the feature extractor's width
    embed_size: int = 64  # E: word embedding (and, for first_input, the projected image)
    hidden_size: int = 128
    batch: int = 128
    learning_rate: float = 3e-3
    clip: float = 1.0
    steps: int = 2000
    eval_every: int = 250
    eval_size: int = 1000  # held-out composed images
    held_out_fraction: float = 0.3  # of the 1797 scans
    seeds: tuple = (0, 1, 2, 3, 4)  # each: its own split of the scans, held-out images, weights and batches


PRESETS = {
    "cpu": Config(),
    "tiny": Config(
        feature_size=64,
        embed_size=16,
        hidden_size=32,
        batch=64,
        learning_rate=1e-2,
        steps=300,
        eval_every=100,
        eval_size=300,
        seeds=(0, 1),
    ),
}
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
    return CaptionParams(
        jax.random.normal(k1, (F, P)) * jnp.sqrt(2.0 / P),
        jnp.zeros(F),
        jax.random.normal(k2, (out, F)) / jnp.sqrt(F),
        jnp.zeros(out),
        jax.random.normal(k3, (E, VOCAB)),
        jaxrnn.init_lstm(k4, E, H, VOCAB),
    )


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
    loss, _ = jaxrnn.sequence_loss(
        params.decoder, start(params, images, mode), xs, targets, mask=mask, reduction="mean"
    )
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


# ------------------------------------------------------------------------------ the baseline: no recurrence
# ---------------------------------------------------------------------------------------------- runs


def optimizer(cfg: Config):
    return optax.chain(optax.clip_by_global_norm(cfg.clip), optax.adam(cfg.learning_rate))


def run_one(cfg: Config, mode: str, seed: int, train_scans, test) -> dict:
    params = init_captioner(jax.random.PRNGKey(seed), cfg, mode)

    @jax.jit
    def evaluate(p, key, temperature):
        return scores(decode(p, test[0], mode, key, temperature=temperature), *test[2:])

    curve = []

    def track(p):  # greedy scores after every chunk; train() keeps 1 - exact match
        curve.append(evaluate(p, jax.random.PRNGKey(0), 0.0))
        return 1.0 - float(curve[-1]["exact_match"])

    start_time = time.perf_counter()
    params, hist = common.train(
        lambda p, b: loss_fn(p, b, mode),
        params,
        optimizer(cfg),
        lambda k: compose(k, train_scans, cfg.batch),
        jax.random.PRNGKey(seed + 1),
        cfg.steps,
        chunk=cfg.eval_every,
        evaluate=track,
    )
    seconds = time.perf_counter() - start_time
    greedy = {k: float(v) for k, v in evaluate(params, jax.random.PRNGKey(0), 0.0).items()}
    sampled = {k: float(v) for k, v in evaluate(params, jax.random.PRNGKey(1), 1.0).items()}
    ids = np.asarray(jax.jit(decode, static_argnums=2)(params, test[0][:8], mode, jax.random.PRNGKey(0)))
    return {
        "mode": mode,
        "seed": seed,
        "greedy": greedy,
        "sampled": sampled,
        "eval_step": hist["eval_step"],
        "exact_match_curve": [float(c["exact_match"]) for c in curve],
        "word_accuracy_curve": [float(c["word_accuracy"]) for c in curve],
        "train_loss_last_100": float(np.mean(hist["losses"][-100:])),
        "seconds": seconds,
        "greedy_captions": [caption_text(ids[:, j]) for j in range(ids.shape[1])],
    }


def run_tiles(cfg: Config, seed: int, train_scans, test) -> dict:
    """The baseline, trained like the captioners (same batches of composed images, steps and optimiser)."""
    evaluate = jax.jit(lambda p: scores(tile_caption(p, test[0]), *test[2:]))
    curve = []

    def track(p):
        curve.append(evaluate(p))
        return 1.0 - float(curve[-1]["exact_match"])

    start_time = time.perf_counter()
    params, hist = common.train(
        tile_loss_fn,
        init_tiles(jax.random.PRNGKey(seed), cfg),
        optimizer(cfg),
        lambda k: compose(k, train_scans, cfg.batch),
        jax.random.PRNGKey(seed + 1),
        cfg.steps,
        chunk=cfg.eval_every,
        evaluate=track,
    )
    seconds = time.perf_counter() - start_time
    ids = np.asarray(tile_caption(params, test[0][:8]))
    return {
        "mode": "tiles",
        "seed": seed,
        "greedy": {k: float(v) for k, v in evaluate(params).items()},
        "eval_step": hist["eval_step"],
        "exact_match_curve": [float(c["exact_match"]) for c in curve],
        "word_accuracy_curve": [float(c["word_accuracy"]) for c in curve],
        "seconds": seconds,
        "greedy_captions": [caption_text(ids[:, j]) for j in range(ids.shape[1])],
    }


def main(cfg: Config, runs: common.Runs | None = None) -> dict:
    kept = runs or common.Runs()
    images, labels = load_digits()
    runs, scans, examples = [], [], None
    for seed in cfg.seeds:
        train_scans, test_scans = split_scans(images, labels, cfg.held_out_fraction, seed)
        test = compose(jax.random.PRNGKey(10_000 + seed), test_scans, cfg.eval_size)
        runs += [
            kept({"mode": m, "seed": seed}, lambda m=m: run_one(cfg, m, seed, train_scans, test)) for m in cfg.modes
        ]
        runs.append(kept({"mode": "tiles", "seed": seed}, lambda: run_tiles(cfg, seed, train_scans, test)))
        scans.append({"train": int(train_scans[1].shape[0]), "held_out": int(test_scans[1].shape[0])})
        if examples is None:  # the first seed's first eight held-out images, for the figure
            examples = {
                "seed": seed,
                "truth": [caption_text(np.asarray(test[2])[:, j]) for j in range(8)],
                "images": np.asarray(test[0][:8]).round(3),
            }
    summary = {}
    for mode in (*cfg.modes, "tiles"):
        mine = [r for r in runs if r["mode"] == mode]
        for how in ("greedy", "sampled") if mode != "tiles" else ("greedy",):
            for k in ("exact_match", "word_accuracy"):
                summary[f"{mode}_{how}_{k}"] = common.spread([r[how][k] for r in mine])
        summary[f"{mode}_seconds"] = common.spread([r["seconds"] for r in mine])
    comparisons = {}
    for k in ("exact_match", "word_accuracy"):
        pairs = [(a, b) for a in cfg.modes for b in (*cfg.modes, "tiles") if a < b or b == "tiles"]
        for a, b in pairs:
            comparisons[f"{a} vs {b}: {k}"] = stats.compare(
                summary[f"{a}_greedy_{k}"]["values"],
                summary[f"{b}_greedy_{k}"]["values"],
                (a, b),
                lower_is_better=False,
            )
    summary["comparisons"] = stats.decide(comparisons)
    return {"config": cfg, "summary": summary, "runs": runs, "scans": scans, "examples": examples}
