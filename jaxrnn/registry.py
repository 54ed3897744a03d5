"""Which step function, zero state and name go with a parameter pytree: the one table of cell types.

Every part of the library that needs "the step for these parameters" (``unroll``, ``sequence_loss``,
``make_train_step``, ``sample``, the stack, the Flax modules, the converters, the command line) asks here::

    registry.step_for(params)                   # RNNParams -> rnn_step, StackParams -> stack_step, ...
    registry.initial_carry(params, (B,))        # h (B, H), LSTMCarry(h, c), or one per stack layer
    registry.cell_type("gru").init(key, D, H, V)

A cell of your own plugs in with one explicit call (nothing registers itself at import time)::

    class MyParams(NamedTuple):
        Wxh: jax.Array; Whh: jax.Array; Why: jax.Array; bh: jax.Array; by: jax.Array

    def my_step(params, h, x):
        h = jnp.tanh(x @ params.Wxh.T + h @ params.Whh.T + params.bh) * 0.5 + 0.5 * h
        return h, h

    jaxrnn.register_cell(jaxrnn.CellType("leaky", MyParams, my_step, jaxrnn.cells.rnn_initial_carry))

after which ``jaxrnn.unroll(jaxrnn.step_for(p), p, ...)``, ``init_stack(..., cell="leaky")`` (when ``init`` is
given) and the trainers take ``MyParams`` like a built-in cell.
"""

from __future__ import annotations

from typing import Any, NamedTuple
from collections.abc import Callable

from jaxrnn import cells, stack


class CellType(NamedTuple):
    """A recurrent cell (or model) type.

    Attributes:
      name: what the command line and ``init_stack(cell=...)`` call it.
      params_type: its parameter pytree class.
      step: ``step(params, carry, x) -> (carry, h)``.
      initial_carry: ``initial_carry(params, batch_shape) -> carry`` (zeros).
      init: ``init(key, input_size, hidden_size, output_size, *, init=..., dtype=...) -> params``; ``None`` for
        a type that cannot be a layer of a stack.
    """

    name: str
    params_type: type
    step: Callable
    initial_carry: Callable
    init: Callable | None = None


_BUILT_IN = (
    CellType("rnn", cells.RNNParams, cells.rnn_step, cells.rnn_initial_carry, cells.init_rnn),
    CellType("lstm", cells.LSTMParams, cells.lstm_step, cells.lstm_initial_carry, cells.init_lstm),
    CellType("gru", cells.GRUParams, cells.gru_step, cells.rnn_initial_carry, cells.init_gru),
    CellType("stack", stack.StackParams, stack.stack_step, stack.stack_initial_carry),
)

CELL_NAMES = ("rnn", "lstm", "gru")
"""The built-in cells a stack layer (and ``jaxrnn train --cell``) can be."""

_by_name: dict[str, CellType] = {c.name: c for c in _BUILT_IN}
_by_type: dict[type, CellType] = {c.params_type: c for c in _BUILT_IN}


def register_cell(cell: CellType) -> None:
    """Make a cell of your own known by name and parameter type (see the module docstring).

    Raises ``ValueError`` if the name or the parameter type is already taken by a different cell.
    """
    if not isinstance(cell, CellType):
        raise TypeError(f"register_cell: expected a CellType, got {type(cell).__name__}")
    for known, key in ((_by_name.get(cell.name), "name"), (_by_type.get(cell.params_type), "parameter type")):
        if known is not None and known != cell:
            raise ValueError(f"register_cell: the {key} of {cell.name!r} is already registered for {known.name!r}")
    _by_name[cell.name] = cell
    _by_type[cell.params_type] = cell


def cell_type(params_or_name: Any) -> CellType:
    """The ``CellType`` for a name (``"lstm"``) or for a parameter pytree (``LSTMParams(...)``)."""
    if isinstance(params_or_name, str):
        try:
            return _by_name[params_or_name]
        except KeyError:
            raise ValueError(f"unknown cell {params_or_name!r}; expected one of {tuple(_by_name)}") from None
    try:
        return _by_type[type(params_or_name)]
    except KeyError:
        raise TypeError(
            f"no cell type registered for {type(params_or_name).__name__}; register it with "
            "jaxrnn.register_cell or pass step= explicitly"
        ) from None


def step_for(params) -> Callable:
    """The step function that goes with a parameter pytree (``RNNParams`` -> ``rnn_step``, ...)."""
    return cell_type(params).step


def initial_carry(params, batch_shape: tuple[int, ...] = ()) -> Any:
    """Zero state for ``params``: ``h (*batch_shape, H)`` for the RNN and GRU, ``LSTMCarry(h, c)`` for the LSTM,
    a tuple of one per layer for a stack."""
    return cell_type(params).initial_carry(params, tuple(batch_shape))


def cell_name(params) -> str:
    """The registered name of a parameter pytree's type (``"rnn"``, ``"lstm"``, ``"gru"``, ``"stack"``, ...)."""
    return cell_type(params).name


def builtin_cell_name(params) -> str:
    """``"rnn"``, ``"lstm"`` or ``"gru"`` for a built-in cell's parameters; ``TypeError`` for anything else
    (what the Flax modules and the weight converters accept)."""
    name = _by_type[type(params)].name if type(params) in _by_type else None
    if name not in CELL_NAMES:
        raise TypeError(f"expected RNNParams, LSTMParams or GRUParams, got {type(params).__name__}")
    return name
