"""The type names of jaxrnn's public API, defined once for the package and for type checkers.

Shapes in docstrings use one notation throughout the package: ``T`` time steps, ``B`` batch (written ``...``:
any number of leading axes), ``D`` input size, ``H`` hidden size, ``V`` vocabulary (readout) size.

Inputs are **time-major** by default: ``xs (T, ..., D)`` for float features, ``xs (T, ...)`` for integer token
ids. Integer inputs are always token ids (looked up, never multiplied); float inputs are always features.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal, TypeAlias, get_args

import jax

Array: TypeAlias = jax.Array
"""A JAX array (what every function returns)."""

ArrayLike: TypeAlias = jax.typing.ArrayLike
"""Anything ``jnp.asarray`` takes, such as a JAX or NumPy array, a Python scalar."""

DTypeLike: TypeAlias = jax.typing.DTypeLike
"""Anything ``jnp.dtype`` takes, such as ``jnp.float32`` or ``"bfloat16"``."""

PRNGKey: TypeAlias = jax.Array
"""A key from ``jax.random.key`` or ``jax.random.PRNGKey``."""

PyTree: TypeAlias = Any
"""A nested structure of arrays (tuples, NamedTuples, dicts, ``None``)."""

Params: TypeAlias = Any
"""A cell's or a stack's parameter pytree (``RNNParams``, ``LSTMParams``, ``GRUParams``, ``StackParams``, or a
registered cell of your own)."""

Carry: TypeAlias = Any
"""A recurrent state, ``h (..., H)`` or ``LSTMCarry(h, c)``, or a tuple of one per stack layer."""

Step: TypeAlias = Callable[[Params, Carry, Any], tuple[Carry, Any]]
"""A step ``step(params, carry, x) -> (carry, h)``, such as ``rnn_step``, ``lstm_step``, ``gru_step``,
``stack_step`` or your own."""

Method = Literal["auto", "scan", "loop", "fused", "newton"]
"""How ``unroll`` runs the time loop (see ``jaxrnn.unroll``; ``"auto"`` is resolved by ``jaxrnn.choose_method``)."""

Reduction = Literal["sum", "mean"]
"""How a loss adds up its targets, summed (the lecture's) or averaged per counted target."""

Padding = Literal["right", "left"]
"""Where the padding of a variable-length batch is, after the valid steps (``"right"``) or before them (``"left"``)."""

Jacobian = Literal["full", "diagonal"]
"""Which Jacobian Newton's method uses (see ``jaxrnn.newton``), exact (DEER) or its diagonal (quasi-DEER)."""

Adjoint = Literal["parallel", "sequential"]
"""How ``jaxrnn.newton`` solves the adjoint for gradients, by an associative scan or a reverse ``lax.scan``."""

ClipMode = Literal["value", "global_norm"]
"""How an optimiser clips gradients, elementwise (the lecture's) or by rescaling to a global norm."""

OptimizerName = Literal["adagrad", "adam", "rmsprop", "sgd"]
"""The optimisers of ``jaxrnn.make_optimizer``; ``adagrad`` is the lecture's."""

CellName = Literal["rnn", "lstm", "gru"]
"""The built-in cells, by the names ``init_stack(cell=...)`` and ``jaxrnn train --cell`` take."""

LRSchedule = Literal["constant", "cosine"]
"""The learning-rate schedules of a language-model run (``jaxrnn.lm.RunConfig.lr_schedule``)."""

Precision = Literal["f32", "bf16"]
"""The command line's precision policies, float32 throughout, or bfloat16 products (``jaxrnn.precision``)."""

METHODS: tuple[str, ...] = get_args(Method)
"""The values of ``Method``, in order."""
REDUCTIONS: tuple[str, ...] = get_args(Reduction)
"""The values of ``Reduction``, in order."""
PADDINGS: tuple[str, ...] = get_args(Padding)
"""The values of ``Padding``, in order."""
