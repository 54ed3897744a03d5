"""Sampling one token at a time and feeding it back in, as one compiled ``lax.scan``.

Shapes: ``x (...)`` integer ids (one per stream), carry with the same batch shape; output ids ``(N, ...)``.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from jaxrnn.cells import readout
from jaxrnn.registry import step_for


def next_token(key, y, temperature=1.0, top_k: int | None = None):
    """Draw an id from ``softmax(y / temperature)`` over the last axis of ``y (..., V)``.

    ``temperature == 0`` is greedy ``argmax``; ``top_k`` keeps only the k highest scores.
    """
    if top_k is not None:
        if not 0 < top_k <= y.shape[-1]:
            raise ValueError(f"top_k must be in 1..{y.shape[-1]}, got {top_k}")
        kth = jax.lax.top_k(y, top_k)[0][..., -1:]
        y = jnp.where(y >= kth, y, -jnp.inf)
    greedy = temperature == 0
    sampled = jax.random.categorical(key, y / jnp.where(greedy, 1.0, temperature), axis=-1)
    return jnp.where(greedy, jnp.argmax(y, axis=-1), sampled)


@functools.partial(jax.jit, static_argnames=("length", "top_k", "step"))
def sample(key, params, carry, x, length: int, *, temperature=1.0, top_k: int | None = None, step=None):
    """Feed ``x``, draw the next id, feed it back, ``length`` times.

    Args:
      key: PRNG key; carry: state after the context so far; x: ids ``(...)`` to feed first.
      temperature: scalar ``>= 0`` (0 is greedy); may be traced, so changing it does not recompile.
    Returns: ``(ids (length, ...), carry)``; ``ids[0]`` is the token drawn after ``x``.
    """
    if not isinstance(length, int) or length < 0:
        raise ValueError(f"sample: length must be a non-negative integer, got {length!r}")
    step = step_for(params) if step is None else step

    def body(state, key_t):
        carry, x = state
        carry, h = step(params, carry, x)
        x = next_token(key_t, readout(params, h), temperature, top_k).astype(x.dtype)
        return (carry, x), x

    (carry, _), ids = jax.lax.scan(body, (carry, jnp.asarray(x)), jax.random.split(key, length))
    return ids, carry
