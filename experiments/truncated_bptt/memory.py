"""Memory of one gradient as the sequence grows: full BPTT, rematerialised, and truncated (chunks of k summed)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import jaxrnn
from benchmarks.memory import program_bytes


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


def memory_row(cfg, vocab_size: int, T: int, method: str) -> dict:
    params = jax.eval_shape(lambda: jaxrnn.init_lstm(jax.random.PRNGKey(0), vocab_size, cfg.memory_hidden, vocab_size))
    carry = jax.eval_shape(
        lambda: jaxrnn.initial_carry(
            jaxrnn.init_lstm(jax.random.PRNGKey(0), 1, cfg.memory_hidden, 1), (cfg.memory_batch,)
        )
    )
    ids = jax.ShapeDtypeStruct((T, cfg.memory_batch), jnp.int32)
    if method == "truncated":
        f = lambda p, c, x, y: truncated_gradient(p, c, x, y, cfg.memory_truncation)
    else:
        f = lambda p, c, x, y: jax.value_and_grad(
            lambda p: jaxrnn.sequence_loss(p, c, x, y, remat=method == "remat")[0]
        )(p)
    return {"T": T, "method": method, **program_bytes(jax.jit(f).lower(params, carry, ids, ids).compile())}
