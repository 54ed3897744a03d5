"""Optimisers: the lecture's clipped Adagrad as an optax chain, and the usual alternatives.

min-char-rnn's update, per parameter ``p`` with gradient ``g``::

    g = clip(g, -5, 5);   mem += g * g;   p -= lr * g / sqrt(mem + 1e-8)      (mem starts at 0)

``optax.adagrad`` differs in its defaults (accumulator starting at 0.1, ``eps`` 1e-7), so the accumulator is
written out here (``scale_by_lecture_adagrad``) rather than borrowed.
"""

from __future__ import annotations

from typing import NamedTuple, get_args

import jax
import jax.numpy as jnp
import optax

from jaxrnn.typing import ClipMode, OptimizerName, PyTree

CLIP_MODES: tuple[ClipMode, ...] = get_args(ClipMode)
OPTIMIZERS: tuple[OptimizerName, ...] = get_args(OptimizerName)


class LectureAdagradState(NamedTuple):
    """Sum of squared gradients so far, one array per parameter (min-char-rnn's ``mem``)."""

    mem: PyTree


def scale_by_lecture_adagrad(eps: float = 1e-8) -> optax.GradientTransformation:
    """``mem += g*g; g -> g / sqrt(mem + eps)`` with ``mem`` starting at zero."""

    def init_fn(params):
        return LectureAdagradState(mem=jax.tree.map(jnp.zeros_like, params))

    def update_fn(updates, state, params=None):
        del params
        mem = jax.tree.map(lambda m, g: m + g * g, state.mem, updates)
        updates = jax.tree.map(lambda g, m: g / jnp.sqrt(m + eps), updates, mem)
        return updates, LectureAdagradState(mem)

    return optax.GradientTransformation(init_fn, update_fn)


def clipping(clip: float | None, clip_mode: ClipMode = "value") -> optax.GradientTransformation:
    """Elementwise clipping to ``[-clip, clip]`` (the lecture) or rescaling to global norm ``<= clip``
    (the direction is kept, only the length shrinks); ``clip=None`` does nothing."""
    if clip_mode not in CLIP_MODES:
        raise ValueError(f"unknown clip mode {clip_mode!r}; expected one of {CLIP_MODES}")
    if clip is None:
        return optax.identity()
    if not clip > 0:
        raise ValueError(f"clip must be positive (or None for no clipping), got {clip!r}")
    return optax.clip(clip) if clip_mode == "value" else optax.clip_by_global_norm(clip)


def lecture_optimizer(
    learning_rate: optax.ScalarOrSchedule = 0.1,
    clip: float | None = 5.0,
    *,
    clip_mode: ClipMode = "value",
    eps: float = 1e-8,
) -> optax.GradientTransformation:
    """min-char-rnn's optimiser: clip (elementwise by default), then Adagrad with ``mem`` from 0.

    ``learning_rate`` may be an optax schedule. ``clip_mode="global_norm"`` is the global-norm variant.
    """
    return optax.chain(
        clipping(clip, clip_mode), scale_by_lecture_adagrad(eps), optax.scale_by_learning_rate(learning_rate)
    )


def make_optimizer(
    name: OptimizerName,
    learning_rate: optax.ScalarOrSchedule,
    *,
    clip: float | None = None,
    clip_mode: ClipMode = "global_norm",
) -> optax.GradientTransformation:
    """Clipping chained with one of ``OPTIMIZERS``: ``adagrad`` (the lecture's), ``adam``, ``rmsprop``, ``sgd``."""
    if name not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {name!r}; expected one of {OPTIMIZERS}")
    if name == "adagrad":
        return lecture_optimizer(learning_rate, clip, clip_mode=clip_mode)
    base = {"adam": optax.adam, "rmsprop": optax.rmsprop, "sgd": optax.sgd}[name](learning_rate)
    return optax.chain(clipping(clip, clip_mode), base)
