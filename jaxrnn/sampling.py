"""Sampling one token at a time and feeding it back in, as one compiled ``lax.scan``.

Shapes: ``x (...)`` integer ids (one per stream), carry with the same batch shape; output ids ``(N, ...)``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from jaxrnn._checks import nan_if
from jaxrnn.cells import readout
from jaxrnn.precision import cast_weights, check_compute_dtype
from jaxrnn.registry import step_for
from jaxrnn.typing import Array, ArrayLike, Carry, DTypeLike, Params, PRNGKey
from jaxrnn.unrolling import check_inputs


def next_token(key: PRNGKey, y: Array, temperature: ArrayLike = 1.0, top_k: int | None = None) -> Array:
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


def sample(
    key: PRNGKey,
    params: Params,
    carry: Carry,
    x: ArrayLike,
    length: int,
    *,
    temperature: ArrayLike = 1.0,
    top_k: int | None = None,
    step: Callable[..., Any] | None = None,
    compute_dtype: DTypeLike | None = None,
) -> tuple[Array, Carry]:
    """Feed ``x``, draw the next id, feed it back, ``length`` times (one compiled ``lax.scan``).

    Args:
      key: PRNG key; carry: state after the context so far; x: token ids ``(...)`` in ``[0, V)`` to feed first,
        with the carry's batch shape.
      temperature: scalar ``>= 0`` (0 is greedy); may be traced, so changing it does not recompile.
      top_k: draw only among the ``k`` highest scores.
      compute_dtype: the dtype the weight matrices multiply in (``jaxrnn.precision``); ``None``: the parameters'.
    Returns: ``(ids (length, ...), carry)``; ``ids[0]`` is the token drawn after ``x``.

    Raises:
      ValueError: ``length`` is not a non-negative integer, or ``x`` holds an id outside ``[0, V)`` (under
        ``jit`` the returned carry is NaN instead).

    Example:
      >>> import jax, jaxrnn
      >>> params = jaxrnn.init_lstm(jax.random.key(0), input_size=5, hidden_size=8, output_size=5)
      >>> ids, carry = jaxrnn.sample(jax.random.key(1), params, jaxrnn.initial_carry(params), 0, 20)
      >>> ids.shape
      (20,)
    """
    if not isinstance(length, int) or isinstance(length, bool) or length < 0:
        raise ValueError(f"sample: length must be a non-negative integer, got {length!r}")
    x = jnp.asarray(x)
    if not jnp.issubdtype(x.dtype, jnp.integer):
        raise TypeError(f"sample: x must be integer token ids, got dtype {x.dtype}")
    bad = check_inputs("sample", params, carry, x[None])
    check_compute_dtype("sample", compute_dtype)
    dtype = None if compute_dtype is None else jnp.dtype(compute_dtype)
    ids, carry = _sample(
        key, params, carry, x, length, temperature=temperature, top_k=top_k, step=step, compute_dtype=dtype
    )
    return ids, nan_if(bad, carry)


@functools.partial(jax.jit, static_argnames=("length", "top_k", "step", "compute_dtype"))
def _sample(
    key: PRNGKey,
    params: Params,
    carry: Carry,
    x: Array,
    length: int,
    *,
    temperature: ArrayLike,
    top_k: int | None,
    step: Callable[..., Any] | None,
    compute_dtype: jnp.dtype | None,
) -> tuple[Array, Carry]:
    step = step_for(params) if step is None else step
    params = cast_weights(params, compute_dtype)

    def body(state: tuple[Carry, Array], key_t: PRNGKey) -> tuple[tuple[Carry, Array], Array]:
        carry, x = state
        carry, h = step(params, carry, x)
        x = next_token(key_t, readout(params, h), temperature, top_k).astype(x.dtype)
        return (carry, x), x

    (carry, _), ids = jax.lax.scan(body, (carry, x), jax.random.split(key, length))
    return ids, carry
