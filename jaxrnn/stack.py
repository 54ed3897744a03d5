"""The multi-layer model: an optional embedding, recurrent layers of any cells, dropout between them, one readout.

Shapes: layer ``l`` has hidden size ``H_l``; layer 0 reads ``x (..., D)``, token ids ``(...)``, or, with an
embedding, ``embedding[:, id] (..., E)``; layer ``l`` reads ``h (..., H_{l-1})`` of the layer below at the same
time step; the readout reads the top layer::

    x_t = embedding[:, id_t]  (optional)
    h^0_t = cell_0(h^0_{t-1}, x_t)     h^l_t = cell_l(h^l_{t-1}, dropout(h^{l-1}_t))     y_t = Why h^top_t + by

Each layer is an ordinary ``RNNParams``, ``LSTMParams`` or ``GRUParams`` (or a registered cell of your own) with
no readout of its own (``Why = by = None``): the stack has one readout, ``StackParams.Why (V, H_top)``. ``None``
is an empty pytree node, so ``jax.tree.map``, ``jax.jit``, optax and orbax pass over it.
``stack_step`` is a step like any other, so ``unroll``, ``sequence_loss``, ``make_train_step`` and ``sample``
take a stack unchanged. ``unroll_layers`` runs the same model layer after layer over a whole sequence, which is
what dropout between layers and the fused recurrence need; a test pins the two orders equal.
"""

from __future__ import annotations

from typing import Any, NamedTuple
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp

from jaxrnn import cells, registry
from jaxrnn._checks import non_negative_int
from jaxrnn.typing import Array, ArrayLike, Carry, DTypeLike, Params, PRNGKey


class StackParams(NamedTuple):
    """``layers``: a tuple of cell parameters, bottom first, each with ``Why = by = None`` (the stack reads out);
    ``Why (V, H_top)``, ``by (V,)``: the readout; ``embedding (E, V_in)`` or ``None``: looked up for token ids
    before layer 0."""

    layers: tuple[Params, ...]
    Why: Array | None  # None: no readout (stack_from_torch without Why); unroll runs it, a loss needs one
    by: Array | None
    embedding: Array | None = None


def init_stack(
    key: PRNGKey,
    input_size: int,
    hidden_sizes: Sequence[int],
    output_size: int,
    *,
    cell: str | Sequence[str] = "lstm",
    init: str = "default",
    embed_size: int = 0,
    dtype: DTypeLike = jnp.float32,
) -> StackParams:
    """A stack of ``len(hidden_sizes)`` layers.

    Args:
      input_size: ``D``, or the number of token ids ``V_in`` when ``embed_size > 0``.
      hidden_sizes: ``(H_0, H_1, ...)``, bottom first.
      output_size: ``V`` of the readout.
      cell: a cell name (``"rnn"``, ``"lstm"``, ``"gru"`` or a registered one) for every layer, or one per layer.
      init: as for ``init_rnn``; the readout is initialised like a single cell's.
      embed_size: ``E > 0`` adds an embedding ``(E, V_in)`` of standard normal entries; 0 (the default): none.
    """
    hidden_sizes = tuple(hidden_sizes)
    if not hidden_sizes:
        raise ValueError("init_stack: hidden_sizes must name at least one layer")
    kinds = (cell,) * len(hidden_sizes) if isinstance(cell, str) else tuple(cell)
    if len(kinds) != len(hidden_sizes):
        raise ValueError(
            f"init_stack: cell must be one of {registry.CELL_NAMES} (or registered) or one per layer "
            f"({len(hidden_sizes)}), got {cell!r}"
        )
    inits = [registry.layer_cell(k, caller="init_stack").init for k in kinds]
    embed_size = non_negative_int("init_stack: embed_size", embed_size)
    keys = jax.random.split(key, len(hidden_sizes))
    layers, below = [], embed_size or input_size
    for k, make, H in zip(keys, inits, hidden_sizes):
        assert make is not None  # layer_cell returns only cells with an init
        p = make(k, below, H, output_size, init=init, dtype=dtype)
        layers.append(p._replace(Why=None, by=None))  # the stack reads out: with the top layer's drawn readout
        last = p
        below = H
    embedding = None
    if embed_size:
        embedding = jax.random.normal(jax.random.fold_in(key, len(hidden_sizes)), (embed_size, input_size), dtype)
    return StackParams(tuple(layers), last.Why, last.by, embedding)


def _check(params: object) -> None:
    if not isinstance(params, StackParams):
        raise TypeError(f"stack_step: params must be StackParams, got {type(params).__name__}")


def layer_input(params: StackParams, x: ArrayLike) -> ArrayLike:
    """What layer 0 reads: ``embed(embedding, x)`` for token ids when the stack has an embedding, else ``x``."""
    return x if params.embedding is None else cells.embed(params.embedding, x)


def fold_embedding(params: StackParams) -> StackParams:
    """The same model with its embedding folded into layer 0's input weights: ``Wxh (G, E) @ embedding (E, V)``
    is one ``(G, V)`` table whose column ``id`` is ``Wxh @ embedding[:, id]`` (``G`` is ``H`` for the RNN, ``4H``
    for the LSTM), so layer 0 looks its input term up instead of multiplying. Layer 0 must have ``Wxh`` (an RNN
    or LSTM layer); a stack without an embedding is returned as it is. The product runs in ``Wxh``'s dtype and is
    differentiable: gradients reach ``Wxh`` and the embedding."""
    if params.embedding is None:
        return params
    from jaxrnn.precision import matmul

    first = params.layers[0]
    table = matmul(first.Wxh, params.embedding, first.Wxh.dtype).astype(first.Wxh.dtype)
    return params._replace(layers=(first._replace(Wxh=table), *params.layers[1:]), embedding=None)


def stack_step(params: StackParams, carry: tuple[Carry, ...], x: ArrayLike) -> tuple[tuple[Carry, ...], Array]:
    """One time step through every layer, bottom to top (no dropout).

    Args: ``carry``: a tuple with one carry per layer (``h`` or ``LSTMCarry``); ``x (..., D)`` or ids ``(...)``.
    Returns: ``(new carries, h_top (..., H_top))``.
    """
    _check(params)
    _check_carry(params, carry)
    # layer 0 reads the input (ids or features), each layer above the h of the one below: Any, as a checker cannot
    # tell which (nor that a stack has at least one layer, so that an h is returned)
    h: Any = layer_input(params, x)
    new_carry = []
    for layer, c in zip(params.layers, carry):
        c, h = registry.step_for(layer)(layer, c, h)
        new_carry.append(c)
    return tuple(new_carry), h


def _check_carry(params: StackParams, carry: object) -> None:
    if not isinstance(carry, tuple) or isinstance(carry, cells.LSTMCarry) or len(carry) != len(params.layers):
        raise TypeError(
            f"stack_step: carry must be a tuple of {len(params.layers)} per-layer carries "
            "(see jaxrnn.initial_carry(params, batch_shape))"
        )


def stack_initial_carry(params: StackParams, batch_shape: tuple[int, ...] = ()) -> tuple[Any, ...]:
    """Zero state: one ``initial_carry`` per layer."""
    _check(params)
    return tuple(registry.initial_carry(layer, batch_shape) for layer in params.layers)


def dropout(key: PRNGKey, rate: float, x: Array) -> Array:
    """Inverted dropout: each entry of ``x`` zeroed with probability ``rate``, the rest scaled by
    ``1 / (1 - rate)`` so that the expectation is unchanged."""
    keep = jax.random.bernoulli(key, 1.0 - rate, x.shape)
    return jnp.where(keep, x / (1.0 - rate), 0.0)


def unroll_layers(
    params: StackParams,
    carry: tuple[Carry, ...],
    xs: ArrayLike,
    *,
    unroll_layer: Callable[[Params, Carry, ArrayLike], tuple[Carry, Array]],
    key: PRNGKey | None = None,
    dropout_rate: float = 0.0,
) -> tuple[tuple[Carry, ...], Array]:
    """The stack over a whole sequence, one layer at a time: ``xs (T, ...)`` -> ``(carries, hs_top (T, ..., H))``.

    ``unroll_layer(layer_params, carry, xs) -> (carry_T, hs)`` unrolls one layer (``lax.scan`` of its step, or
    the fused recurrence). With ``key`` and ``dropout_rate > 0``, layer ``l > 0`` reads its input through
    ``dropout(fold_in(key, l), dropout_rate, .)`` (``key`` is required then). Without dropout this equals
    unrolling ``stack_step``.
    """
    _check(params)
    _check_carry(params, carry)
    if dropout_rate > 0 and key is None:
        raise ValueError(f"unroll_layers: dropout_rate={dropout_rate} needs key= (the PRNG key of the dropout masks)")
    # layer 0 reads xs, each layer above (through dropout) the hs of the one below: Any, as a checker cannot tell
    # which (nor that a stack has at least one layer, so that hs are returned)
    inputs: Any = layer_input(params, xs)
    new_carry = []
    for l, (layer, c) in enumerate(zip(params.layers, carry)):
        if l > 0 and key is not None and dropout_rate > 0:
            inputs = dropout(jax.random.fold_in(key, l), dropout_rate, inputs)
        c, inputs = unroll_layer(layer, c, inputs)
        new_carry.append(c)
    return tuple(new_carry), inputs


registry.add_built_in(registry.CellType("stack", StackParams, stack_step, stack_initial_carry))
