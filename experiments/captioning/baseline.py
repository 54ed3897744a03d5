"""The baseline without recurrence: a per-tile classifier on the same feature layer, read left to right as a caption."""

from __future__ import annotations

from typing import NamedTuple
import jax
import jax.numpy as jnp
import jaxrnn
from experiments.captioning.data import END, MAX_DIGITS


class TileParams(NamedTuple):
    """Per-tile classifier: features ``W1 (F, 64)``, ``b1 (F,)``; readout ``Wy (11, F)``, ``by (11,)`` to the ten
    digits and END (a blank tile)."""

    W1: jax.Array
    b1: jax.Array
    Wy: jax.Array
    by: jax.Array


def init_tiles(key, cfg) -> TileParams:
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
