"""Mixed precision: the weight matrices multiply in ``compute_dtype``; parameters, state, gates and loss stay in
the parameters' dtype.

The policy is Flax's ``dtype``/``param_dtype`` split, stated once for the package:

* **Parameters** keep their own dtype (``param_dtype``, float32 by default), and so do the optimiser state and the
  gradients that reach them (the cast's derivative casts the cotangent back).
* **Matrix products** ``Wxh x``, ``Whh h``, ``Why h`` (and the embedding lookup) read the weights cast to
  ``compute_dtype`` (e.g. ``bfloat16``: 8 bits of mantissa, the float32 exponent range) and the other operand
  cast alike; each product comes back in the *accumulation dtype*, at least float32.
* **Everything elementwise** stays in the accumulation dtype: the pre-activations after the bias, the gate
  nonlinearities, the LSTM's cell state ``c``, the carry ``h``, the softmax and the loss. Rounding the cell path
  ``c_t = f * c_{t-1} + i * g`` to 8 bits at every step would lose what the LSTM is built to keep.

``compute_dtype=None`` (the default everywhere) computes in the parameters' dtype: the float32 path is unchanged.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxrnn.typing import Array, DTypeLike, Params, Precision

COMPUTE_DTYPES: dict[Precision, jnp.dtype | None] = {"f32": None, "bf16": jnp.dtype(jnp.bfloat16)}
"""The ``compute_dtype`` of each named policy (``jaxrnn train --precision``); ``None`` is the parameters' own."""


def accumulation_dtype(dtype: DTypeLike) -> jnp.dtype:
    """The dtype a product in ``dtype`` is returned in: float32 for bfloat16 and float16, else ``dtype``."""
    return jnp.promote_types(dtype, jnp.float32)


def matmul(a: Array, b: Array, dtype: DTypeLike) -> Array:
    """``a @ b`` with both operands in ``dtype``, returned in ``accumulation_dtype(dtype)``.

    In float32 (or float64) this is the plain product, casts included: nothing changes. In bfloat16 the product
    runs on bfloat16 operands; its output is cast to float32 at once, so that no sum after it is rounded to 8 bits.
    """
    return (a.astype(dtype) @ b.astype(dtype)).astype(accumulation_dtype(dtype))


def cast_weights(params: Params, compute_dtype: DTypeLike | None) -> Params:
    """``params`` with every floating weight matrix (a leaf of two or more axes) cast to ``compute_dtype``; the
    biases (one axis) keep their dtype. ``None`` returns ``params`` unchanged.

    Differentiable: the gradient with respect to the original (e.g. float32) parameters comes back in their dtype.
    """
    if compute_dtype is None:
        return params
    dtype = jnp.dtype(compute_dtype)
    if not jnp.issubdtype(dtype, jnp.floating):
        raise ValueError(f"compute_dtype must be a floating dtype such as bfloat16 or float32, got {dtype}")

    def cast(leaf):
        if hasattr(leaf, "dtype") and jnp.issubdtype(leaf.dtype, jnp.floating) and jnp.ndim(leaf) >= 2:
            return leaf.astype(dtype)
        return leaf

    return jax.tree.map(cast, params)


def check_compute_dtype(caller: str, compute_dtype: DTypeLike | None) -> None:
    """``ValueError`` naming ``caller`` unless ``compute_dtype`` is ``None`` or a floating dtype."""
    if compute_dtype is None:
        return
    try:
        dtype = jnp.dtype(compute_dtype)
    except TypeError:
        dtype = None
    if dtype is None or not jnp.issubdtype(dtype, jnp.floating):
        raise ValueError(
            f"{caller}: compute_dtype must be None or a floating dtype (jnp.bfloat16, jnp.float32), got "
            f"{compute_dtype!r}"
        )
