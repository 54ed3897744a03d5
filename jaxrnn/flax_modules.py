"""jaxrnn cells as Flax modules (``flax.linen`` and ``flax.nnx``), for use inside Flax models, ``nn.RNN`` and
``nnx.RNN`` (and both ``Bidirectional`` wrappers).

The modules hold only the recurrent weights, in jaxrnn's layout and names (``Wxh (rows, D)``, ``Whh (rows, H)``,
``bh (rows,)``, the GRU's ``bhn (H,)``; ``rows`` = H, 4H or 3H) and call the same step functions as the rest
of the package; the carry is jaxrnn's (``h`` or ``LSTMCarry(h, c)``, not Flax's ``(c, h)``). The readout is a
separate layer in a Flax model, so ``cell_params`` returns the cell with none (``Why = by = None``, as a stack
layer has). Inputs are float vectors ``x (..., D)``. To load weights from a Flax cell, use
``jaxrnn.convert.from_flax``.
"""

from __future__ import annotations

from types import SimpleNamespace

import jax
import jax.numpy as jnp
from flax import linen as nn
from flax import nnx

from jaxrnn import registry
from jaxrnn.cells import LSTMCarry
from jaxrnn.precision import accumulation_dtype, cast_weights, check_compute_dtype
from jaxrnn.typing import Array, Carry, DTypeLike, Params, PRNGKey


def _check_cell(cell: str) -> None:
    if cell not in registry.CELL_NAMES:
        raise ValueError(f"unknown cell {cell!r}; expected one of {registry.CELL_NAMES}")


def _field_names(cell: str) -> tuple[str, ...]:
    return ("Wxh", "Whh", "bh") + (("bhn",) if cell == "gru" else ())


def _assemble(cell: str, weights: dict) -> Params:
    """The cell's NamedTuple from its recurrent weights, without a readout."""
    return registry.cell_type(cell).params_type(Why=None, by=None, **weights)


def _zero_carry(cell: str, batch_shape: tuple[int, ...], features: int, dtype: DTypeLike) -> Carry:
    """The registered zero state of ``cell``, which reads only ``Whh``'s width and dtype."""
    shape_of_Whh = SimpleNamespace(Whh=jax.ShapeDtypeStruct((features, features), dtype))
    return registry.cell_type(cell).initial_carry(shape_of_Whh, tuple(batch_shape))


class LinenCell(nn.RNNCellBase):
    """A jaxrnn cell as a ``flax.linen`` RNN cell: ``carry, h = cell(carry, x)``; works with ``nn.RNN`` and
    ``nn.Bidirectional``.

    Attributes: ``features`` (H); ``cell``: ``"rnn"``, ``"lstm"`` or ``"gru"``; ``init_scheme``: jaxrnn's
    initialiser (``"default"`` or ``"lecture"``); ``param_dtype``: the parameters'; ``dtype``: the dtype the weight
    matrices multiply in, as Flax's ``dtype`` (``None``: ``param_dtype``; state and outputs stay float32, see
    ``jaxrnn.precision``).
    """

    features: int
    cell: str = "lstm"
    init_scheme: str = "default"
    param_dtype: jnp.dtype = jnp.float32
    dtype: DTypeLike | None = None

    @nn.compact
    def __call__(self, carry: Carry, inputs: Array) -> tuple[Carry, Array]:
        _check_cell(self.cell)
        D = inputs.shape[-1]
        init_cell = registry.cell_type(self.cell).init
        assert init_cell is not None  # every built-in cell has one
        make = lambda key: init_cell(key, D, self.features, 1, init=self.init_scheme, dtype=self.param_dtype)
        # each weight gets its own key; each is drawn exactly as jaxrnn's initialiser draws it
        weights = {
            name: self.param(name, lambda key, n=name: getattr(make(key), n)) for name in _field_names(self.cell)
        }
        params = cast_weights(_assemble(self.cell, weights), self.dtype)
        return registry.step_for(params)(params, carry, inputs)

    @nn.nowrap
    def initialize_carry(self, rng: PRNGKey | None, input_shape: tuple[int, ...]) -> Carry:
        """Zero carry for inputs of shape ``(..., D)`` (``rng`` is unused: the state starts at zero)."""
        del rng
        _check_cell(self.cell)
        return _zero_carry(self.cell, tuple(input_shape[:-1]), self.features, self.param_dtype)

    @property
    def num_feature_axes(self) -> int:
        return 1


def linen_variables(params: Params) -> dict:
    """``{"params": ...}`` for ``LinenCell.apply`` from jaxrnn cell parameters (the readout is dropped)."""
    cell = registry.builtin_cell_name(params)
    return {"params": {name: getattr(params, name) for name in _field_names(cell)}}


class NnxCell(nnx.RNNCellBase):
    """A jaxrnn cell as a ``flax.nnx`` RNN cell: ``carry, h = cell(carry, x)``; works with ``nnx.RNN`` and
    ``nnx.Bidirectional``.

    ``NnxCell(D, H, cell="lstm", rngs=nnx.Rngs(0))`` draws jaxrnn's initialisation (``init_scheme``: ``"default"``
    or ``"lecture"``; ``param_dtype``: the parameters'; ``dtype``: the dtype the weight matrices multiply in, as
    Flax's ``dtype``, ``None`` for ``param_dtype``); ``NnxCell.from_params(params)`` wraps existing weights. The
    parameters are ``nnx.Param`` attributes named ``Wxh``, ``Whh``, ``bh`` (and ``bhn``).
    """

    def __init__(
        self,
        in_features: int,
        hidden_features: int,
        *,
        cell: str = "lstm",
        init_scheme: str = "default",
        dtype: DTypeLike | None = None,
        param_dtype: DTypeLike = jnp.float32,
        rngs: nnx.Rngs,
    ):
        _check_cell(cell)
        check_compute_dtype("NnxCell", dtype)
        init_cell = registry.cell_type(cell).init
        assert init_cell is not None  # every built-in cell has one
        p = init_cell(rngs.params(), in_features, hidden_features, 1, init=init_scheme, dtype=param_dtype)
        self.dtype = None if dtype is None else jnp.dtype(dtype)
        self._set(cell, p)

    def _set(self, cell: str, params: Params) -> None:
        self.cell = cell
        self.in_features, self.hidden_features = params.Wxh.shape[1], params.Whh.shape[1]
        for name in _field_names(cell):
            setattr(self, name, nnx.Param(jnp.asarray(getattr(params, name))))

    @classmethod
    def from_params(cls, params: Params) -> NnxCell:
        """Wrap jaxrnn cell parameters (e.g. from ``jaxrnn.convert.from_flax``); the readout is dropped."""
        cell = registry.builtin_cell_name(params)
        H, D = params.Whh.shape[1], params.Wxh.shape[1]
        module = cls(D, H, cell=cell, init_scheme="lecture", param_dtype=params.Whh.dtype, rngs=nnx.Rngs(0))
        module._set(cell, params)  # replaces the freshly drawn weights
        return module

    def cell_params(self) -> Params:
        """The weights as jaxrnn's NamedTuple (``Why = by = None``), for ``jaxrnn.unroll`` and friends."""
        return _assemble(self.cell, {name: getattr(self, name)[...] for name in _field_names(self.cell)})

    def __call__(self, carry: Carry, inputs: Array) -> tuple[Carry, Array]:
        params = cast_weights(self.cell_params(), self.dtype)
        return registry.step_for(params)(params, carry, inputs)

    def initialize_carry(
        self,
        input_shape: tuple[int, ...],
        rngs: nnx.Rngs | nnx.RngStream | None = None,
        carry_init: nnx.Initializer | None = None,
    ) -> Carry:
        """The state for inputs of shape ``(..., D)``: zeros (jaxrnn's ``initial_carry``), or, with
        ``carry_init``, each part drawn from ``carry_init(key, (..., H), dtype)`` with keys from ``rngs``, the
        LSTM's ``c`` before its ``h`` as Flax's own cells draw them (so the same ``rngs`` give the same state)."""
        # by name: _set makes the weights' attributes, which a checker cannot see
        batch_shape, dtype = tuple(input_shape[:-1]), accumulation_dtype(getattr(self, "Whh")[...].dtype)
        if carry_init is None:
            return _zero_carry(self.cell, batch_shape, self.hidden_features, dtype)
        if isinstance(rngs, nnx.Rngs):
            rngs = rngs.carry
        if rngs is None:
            raise ValueError("initialize_carry: carry_init draws the state, so rngs must be given; got rngs=None")
        shape = (*batch_shape, self.hidden_features)
        if self.cell == "lstm":
            c = carry_init(rngs(), shape, dtype)
            return LSTMCarry(h=carry_init(rngs(), shape, dtype), c=c)
        return carry_init(rngs(), shape, dtype)

    @property
    def num_feature_axes(self) -> int:
        """Inputs have one feature axis, ``D`` (``nnx.RNN`` reads the time axis from it)."""
        return 1
