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

from collections.abc import Callable
from typing import Any, NamedTuple

from jaxrnn import cells
from jaxrnn.typing import Carry, Params


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
    step: Callable[..., Any]
    initial_carry: Callable[..., Any]
    init: Callable[..., Any] | None = None


_BUILT_IN_CELLS = (
    CellType("rnn", cells.RNNParams, cells.rnn_step, cells.rnn_initial_carry, cells.init_rnn),
    CellType("lstm", cells.LSTMParams, cells.lstm_step, cells.lstm_initial_carry, cells.init_lstm),
    CellType("gru", cells.GRUParams, cells.gru_step, cells.rnn_initial_carry, cells.init_gru),
)

CELL_NAMES: tuple[str, ...] = tuple(c.name for c in _BUILT_IN_CELLS)
"""The built-in cells a stack layer (and ``jaxrnn train --cell``) can be."""

_by_name: dict[str, CellType] = {c.name: c for c in _BUILT_IN_CELLS}
_by_type: dict[type, CellType] = {c.params_type: c for c in _BUILT_IN_CELLS}
_built_in: set[str] = set(CELL_NAMES)


def add_built_in(cell: CellType) -> None:
    """Register one of the package's own model types (the stack registers itself this way when imported)."""
    _by_name[cell.name] = cell
    _by_type[cell.params_type] = cell
    _built_in.add(cell.name)


def _same_cell(a: CellType, b: CellType) -> bool:
    """Whether ``b`` is ``a`` defined again (a notebook cell run twice): same name, same step function name, same
    parameter class name and fields."""
    return (
        a.name == b.name
        and getattr(a.step, "__qualname__", None) == getattr(b.step, "__qualname__", None)
        and a.params_type.__qualname__ == b.params_type.__qualname__
        and getattr(a.params_type, "_fields", None) == getattr(b.params_type, "_fields", None)
    )


def register_cell(cell: CellType, *, replace: bool = False) -> None:
    """Make a cell of your own known by name and parameter type (see the module docstring).

    Registering again a cell with the same name, step function name and parameter fields (a notebook cell run a
    second time, which defines new but identical classes and functions) replaces the earlier one.

    Args:
      cell: the ``CellType`` to register.
      replace: replace whatever cell holds this name or parameter type, even a different one.

    Raises:
      TypeError: ``cell`` is not a ``CellType``.
      ValueError: the name or the parameter type is taken by a different cell and ``replace`` is false, or the
        name is a built-in cell's.
    """
    if not isinstance(cell, CellType):
        raise TypeError(f"register_cell: expected a CellType, got {type(cell).__name__}")
    known = [
        (k, key)
        for k, key in ((_by_name.get(cell.name), "name"), (_by_type.get(cell.params_type), "parameter type"))
        if k is not None
    ]
    for k, key in known:
        if k == cell:
            continue
        if k.name in _built_in:
            raise ValueError(
                f"register_cell: the {key} of {cell.name!r} is already registered for {k.name!r}, a built-in cell"
            )
        if not (replace or _same_cell(k, cell)):
            raise ValueError(
                f"register_cell: the {key} of {cell.name!r} is already registered for {k.name!r} "
                "(pass replace=True to replace it)"
            )
    for k, _ in known:  # drop both entries of a replaced cell
        _by_name.pop(k.name, None)
        _by_type.pop(k.params_type, None)
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


def layer_cell(name: Any, *, caller: str = "cell") -> CellType:
    """The ``CellType`` of a cell that can be a stack layer (built in, or registered with ``init``), by name.

    Raises ``ValueError`` naming ``caller`` and the cells that can be layers otherwise.
    """
    found = _by_name.get(name) if isinstance(name, str) else None
    if found is None or found.init is None:
        names = tuple(c.name for c in _by_name.values() if c.init is not None)
        raise ValueError(f"{caller}: unknown cell {name!r}; cell must be one of {names}")
    return found


def step_for(params: Params) -> Callable[..., Any]:
    """The step function that goes with a parameter pytree (``RNNParams`` -> ``rnn_step``, ...)."""
    return cell_type(params).step


def initial_carry(params: Params, batch_shape: tuple[int, ...] = ()) -> Carry:
    """Zero state for ``params``: ``h (*batch_shape, H)`` for the RNN and GRU, ``LSTMCarry(h, c)`` for the LSTM,
    a tuple of one per layer for a stack."""
    return cell_type(params).initial_carry(params, tuple(batch_shape))


def cell_name(params: Params) -> str:
    """The registered name of a parameter pytree's type (``"rnn"``, ``"lstm"``, ``"gru"``, ``"stack"``, ...)."""
    return cell_type(params).name


def builtin_cell_name(params: Params) -> str:
    """``"rnn"``, ``"lstm"`` or ``"gru"`` for a built-in cell's parameters; ``TypeError`` for anything else
    (what the Flax modules and the weight converters accept)."""
    name = _by_type[type(params)].name if type(params) in _by_type else None
    if name not in CELL_NAMES:
        raise TypeError(f"expected RNNParams, LSTMParams or GRUParams, got {type(params).__name__}")
    return name


def token_vocabulary(params: Params) -> int | None:
    """``V_in``: how many token ids the model reads (the columns of its embedding, else of the first cell's
    ``Wxh``); ``None`` for parameters of a type that is not registered, whose step may read ids its own way."""
    table = _token_table(params)
    return None if table is None else int(table.shape[-1])


def _token_table(params: Params) -> Any:
    if type(params) not in _by_type:
        return None
    embedding = getattr(params, "embedding", None)
    if embedding is not None:
        return embedding
    layers = getattr(params, "layers", None)
    if isinstance(layers, tuple) and layers:
        return _token_table(layers[0])
    return getattr(params, "Wxh", None)


def map_token_table(params: Params, fn: Callable[[Any], Any]) -> Params:
    """``params`` with ``fn`` applied to the table that token ids look up (see ``token_vocabulary``)."""
    if getattr(params, "embedding", None) is not None:
        return params._replace(embedding=fn(params.embedding))
    layers = getattr(params, "layers", None)
    if isinstance(layers, tuple) and layers:
        return params._replace(layers=(map_token_table(layers[0], fn), *layers[1:]))
    if getattr(params, "Wxh", None) is not None:
        return params._replace(Wxh=fn(params.Wxh))
    return params
