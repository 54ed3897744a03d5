"""Deep stacks: several recurrent layers in one step pytree, one carry per layer.

Shapes: layer ``l`` has hidden size ``H_l``; layer 0 reads ``x (..., D)`` (or token ids ``(...)``), layer ``l``
reads ``h (..., H_{l-1})`` of the layer below at the same time step; the readout reads the top layer::

    h^0_t = cell_0(h^0_{t-1}, x_t)     h^l_t = cell_l(h^l_{t-1}, h^{l-1}_t)     y_t = Why h^top_t + by

Each layer is an ordinary ``RNNParams``, ``LSTMParams`` or ``GRUParams`` whose own readout is empty
(``Why (0, H_l)``, ``by (0,)``): the stack has one readout, ``StackParams.Why (V, H_top)``. Because
``stack_step`` is a step like any other and is registered for ``StackParams``, ``unroll``, ``sequence_loss``,
``make_train_step`` and ``sample`` take a stack unchanged.
"""
from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from jaxrnn import cells

Array = jax.Array

CELLS = {"rnn": cells.init_rnn, "lstm": cells.init_lstm, "gru": cells.init_gru}


class StackParams(NamedTuple):
    """``layers``: a tuple of cell parameters, bottom first; ``Why (V, H_top)``, ``by (V,)``: the readout."""

    layers: tuple
    Why: Array
    by: Array


def init_stack(key, input_size: int, hidden_sizes, output_size: int, *, cell="lstm", init: str = "default",
               dtype=jnp.float32) -> StackParams:
    """A stack of ``len(hidden_sizes)`` layers.

    Args:
      hidden_sizes: ``(H_0, H_1, ...)``, bottom first.
      cell: ``"rnn"``, ``"lstm"`` or ``"gru"`` for every layer, or one name per layer.
      init: as for ``init_rnn``; the readout is initialised like a single cell's.
    """
    hidden_sizes = tuple(hidden_sizes)
    if not hidden_sizes:
        raise ValueError("init_stack: hidden_sizes must name at least one layer")
    kinds = (cell,) * len(hidden_sizes) if isinstance(cell, str) else tuple(cell)
    if len(kinds) != len(hidden_sizes) or any(k not in CELLS for k in kinds):
        raise ValueError(f"init_stack: cell must be one of {tuple(CELLS)} or one per layer "
                         f"({len(hidden_sizes)}), got {cell!r}")
    keys = jax.random.split(key, len(hidden_sizes))
    layers, below = [], input_size
    for k, kind, H in zip(keys, kinds, hidden_sizes):
        p = CELLS[kind](k, below, H, output_size, init=init, dtype=dtype)
        layers.append(p._replace(Why=jnp.zeros((0, H), dtype), by=jnp.zeros((0,), dtype)))
        last = p
        below = H
    return StackParams(tuple(layers), last.Why, last.by)


def _check(params) -> None:
    if not isinstance(params, StackParams):
        raise TypeError(f"stack_step: params must be StackParams, got {type(params).__name__}")


def stack_step(params: StackParams, carry: tuple, x) -> tuple[tuple, Array]:
    """One time step through every layer, bottom to top.

    Args: ``carry``: a tuple with one carry per layer (``h`` or ``LSTMCarry``); ``x (..., D)`` or ids ``(...)``.
    Returns: ``(new carries, h_top (..., H_top))``.
    """
    _check(params)
    if not isinstance(carry, tuple) or isinstance(carry, cells.LSTMCarry) or len(carry) != len(params.layers):
        raise TypeError(f"stack_step: carry must be a tuple of {len(params.layers)} per-layer carries "
                        "(see jaxrnn.initial_carry(params, batch_shape))")
    new_carry = []
    for layer, c in zip(params.layers, carry):
        c, x = cells.step_for(layer)(layer, c, x)
        new_carry.append(c)
    return tuple(new_carry), x


def stack_initial_carry(params: StackParams, batch_shape: tuple[int, ...] = ()) -> tuple[Any, ...]:
    """Zero state: one ``initial_carry`` per layer."""
    _check(params)
    return tuple(cells.initial_carry(layer, batch_shape) for layer in params.layers)


cells.register_step(StackParams, stack_step)
cells.register_initial_carry(StackParams, stack_initial_carry)
