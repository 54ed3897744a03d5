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
import importlib.util
import sys
import time
from typing import NamedTuple


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
    return (jnp.asarray(images[train]), jnp.asarray(labels[train])), (
        jnp.asarray(images[test]),
        jnp.asarray(labels[test]),
    )


def compose(key, scans, B: int):
    """``B`` images of 2 or 3 random scans side by side.

    Returns: ``images (B, 8, 24)``; ``inputs (4, B)`` = GO, w_1, w_2, w_3 (END-padded) and ``targets (4, B)`` =
    w_1 .. w_n, END (END-padded), time-major; ``mask (4, B)`` true up to and including the END; ``n (B,)``.
    """
    images, labels = scans
    k_n, k_i = jax.random.split(key)
    n = jax.random.randint(k_n, (B,), 2, MAX_DIGITS + 1)
    idx = jax.random.randint(k_i, (B, MAX_DIGITS), 0, labels.shape[0])
    present = jnp.arange(MAX_DIGITS) < n[:, None]  # (B, 3)
    tiles = images[idx] * present[:, :, None, None]  # (B, 3, 8, 8)
    picture = jnp.concatenate([tiles[:, j] for j in range(MAX_DIGITS)], axis=-1)
    words = jnp.where(present, labels[idx], END).T  # (3, B)
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


class TileParams(NamedTuple):
    """Per-tile classifier: features ``W1 (F, 64)``, ``b1 (F,)``; readout ``Wy (11, F)``, ``by (11,)`` to the ten
    digits and END (a blank tile)."""

    W1: jax.Array
    b1: jax.Array
    Wy: jax.Array
    by: jax.Array


def init_tiles(key, cfg: Config) -> TileParams:
    k1, k2 = jax.random.split(key)
    F = cfg.feature_size
    return TileParams(
        jax.random.normal(k1, (F, 64)) * jnp.sqrt(2.0 / 64),
        jnp.zeros(F),
        jax.random.normal(k2, (END + 1, F)) / jnp.sqrt(F),
        jnp.zeros(END + 1),
    )


def tile_logits(params: TileParams, images):
    """``images (B, 8, 24)`` -> ``(3, B, 11)``: each 8x8 tile on its own, ``Wy relu(W1 x + b1) + by``."""
    tiles = jnp.stack([images[:, :, 8 * j : 8 * j + 8] for j in range(MAX_DIGITS)])  # (3, B, 8, 8)
    f = jax.nn.relu(tiles.reshape(MAX_DIGITS, images.shape[0], 64) @ params.W1.T + params.b1)
    return f @ params.Wy.T + params.by


def tile_loss_fn(params: TileParams, batch):
    """Mean cross-entropy over all tiles: the word of the scan, or END for a blank tile."""
    images, _, targets, _, _ = batch
    return jaxrnn.softmax_cross_entropy(tile_logits(params, images), targets[:MAX_DIGITS], reduction="mean")


def tiles_to_caption(tile_ids):
    """Tile words ``(3, B)`` -> caption ids ``(4, B)``: the words up to the first END (blank), then END."""
    ended = jnp.cumsum(tile_ids == END, axis=0) > 0
    words = jnp.where(ended, END, tile_ids)
    return jnp.concatenate([words, jnp.full((1, tile_ids.shape[1]), END, words.dtype)])


def tile_caption(params: TileParams, images):
    return tiles_to_caption(jnp.argmax(tile_logits(params, images), axis=-1).astype(jnp.int32))


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


def main(cfg: Config) -> dict:
    images, labels = load_digits()
    runs, scans, examples = [], [], None
    for seed in cfg.seeds:
        train_scans, test_scans = split_scans(images, labels, cfg.held_out_fraction, seed)
        test = compose(jax.random.PRNGKey(10_000 + seed), test_scans, cfg.eval_size)
        runs += [run_one(cfg, mode, seed, train_scans, test) for mode in cfg.modes]
        runs.append(run_tiles(cfg, seed, train_scans, test))
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
    for k in ("exact_match", "word_accuracy"):
        pairs = [(a, b) for a in cfg.modes for b in (*cfg.modes, "tiles") if a < b or b == "tiles"]
        for a, b in pairs:
            summary[f"verdict_{a}_versus_{b}_{k}"] = common.verdict(
                summary[f"{a}_greedy_{k}"], summary[f"{b}_greedy_{k}"], (a, b), lower_is_better=False
            )
    return {"config": cfg, "summary": summary, "runs": runs, "scans": scans, "examples": examples}


NAMES = {"init": "image as h_0 (init)", "first_input": "image as first input", "tiles": "tile classifier (no RNN)"}


def make_figure(results: dict):
    """Eight held-out images with the first seed's captions; exact match against training step (mean and
    min-max over seeds); the final greedy scores with their min-max."""
    ex = results["examples"]
    cfg = results["config"] if isinstance(results["config"], dict) else dataclasses.asdict(results["config"])
    images = np.asarray(ex["images"], dtype=float)
    fig, ax = common.new_figure(3, 4, size=(3.3, 1.9))
    for j in range(8):
        a = ax[j // 4, j % 4]
        a.imshow(images[j], cmap="gray_r", vmin=0, vmax=1)
        lines = [f"truth: {ex['truth'][j]}"]
        for r in results["runs"]:
            if r["seed"] == ex["seed"]:
                cap = r["greedy_captions"][j]
                lines.append(f"{r['mode']}: {cap}" + ("" if cap == ex["truth"][j] else "  X"))
        a.set_title("\n".join(lines), fontsize=7)
        a.axis("off")
    grid = ax[2, 0].get_gridspec()
    for a in ax[2]:
        a.remove()
    curves, bars = fig.add_subplot(grid[2, :2]), fig.add_subplot(grid[2, 2:])
    modes = list(dict.fromkeys(r["mode"] for r in results["runs"]))
    for k, mode in enumerate(modes):
        mine = [r for r in results["runs"] if r["mode"] == mode]
        common.band(
            curves,
            mine[0]["eval_step"],
            [r["exact_match_curve"] for r in mine],
            color=f"C{k}",
            label=NAMES.get(mode, mode),
        )
        for m, metric in enumerate(("exact_match", "word_accuracy")):
            s = results["summary"][f"{mode}_greedy_{metric}"]
            x = m + (k - (len(modes) - 1) / 2) * 0.2
            bars.errorbar(
                x,
                s["mean"],
                yerr=[[s["mean"] - s["min"]], [s["max"] - s["mean"]]],
                fmt="os^"[k % 3],
                color=f"C{k}",
                capsize=4,
                label=NAMES.get(mode, mode) if m == 0 else None,
            )
            bars.plot([x] * s["n"], s["values"], "_", color=f"C{k}", ms=8)
    n = sum(r["mode"] == modes[0] for r in results["runs"])
    lowest = min(min(r["exact_match_curve"]) for r in results["runs"])
    curves.set(
        title=f"held-out exact match, greedy (mean, min-max over {n} seeds)",
        xlabel=f"training step (batches of {cfg['batch']} images)",
        ylabel="exact match (fraction of images)",
        ylim=(max(0.0, lowest - 0.05), 1.005),
    )
    curves.legend(fontsize=7, loc="lower right")
    curves.grid(alpha=0.3)
    lows = [results["summary"][f"{m}_greedy_exact_match"]["min"] for m in modes]
    bars.set(
        title=f"final greedy scores, {n} seeds (marker: mean, bar: min-max, dash: a seed)",
        xticks=[0, 1],
        xticklabels=["exact match (whole caption)", "per word"],
        xlim=(-0.5, 1.5),
        ylabel="fraction right",
        ylim=(max(0.0, min(lows) - 0.05), 1.005),
    )
    bars.legend(fontsize=7, loc="lower right")
    bars.grid(alpha=0.3, axis="y")
    fig.suptitle("held-out images (unseen scans), greedy captions of the first seed (X: wrong)", fontsize=9)
    fig.tight_layout()
    return fig


if __name__ == "__main__":
    if importlib.util.find_spec("sklearn") is None:  # checked before any work: one line, exit status 2
        print(NEEDS_SKLEARN, file=sys.stderr)
        sys.exit(2)
    sys.exit(common.cli("captioning", PRESETS, main, make_figure))
