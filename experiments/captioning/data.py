"""The captioning task: scikit-learn's 8x8 digits, split by scan, composed side by side into images of 2-3 digits,
and their captions as word ids."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np


WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
END, GO = 10, 11
VOCAB = 12
MAX_DIGITS = 3
MODES = ("init", "first_input")
NEEDS_SKLEARN = "captioning: needs scikit-learn for its 8x8 digits (pip install scikit-learn)"


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
