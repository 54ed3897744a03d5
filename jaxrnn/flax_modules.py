"""jaxrnn cells as Flax modules (``flax.linen`` and ``flax.nnx``), for use inside Flax models and ``nn.RNN``.

The modules hold only the recurrent weights, in jaxrnn's layout and names (``Wxh (rows, D)``, ``Whh (rows, H)``,
``bh (rows,)``, the GRU's ``bhn (H,)``; ``rows`` = H, 4H or 3H) and call the same step functions as the rest
of the package; the carry is jaxrnn's (``h`` or ``LSTMCarry(h, c)``, not Flax's ``(c, h)``). The readout is a
separate layer in a Flax model, so ``cell_params`` returns the cell with none (``Why = by = None``, as a stack
layer has). Inputs are float vectors ``x (..., D)``. To load weights from a Flax cell, use
``jaxrnn.convert.from_flax``.
"""

from __future__ import annotations

from types import SimpleNamespace

import jax.numpy as jnp
from flax import linen as nn
from flax import nnx

from jaxrnn import registry


def _check_cell(cell: str) -> None:
    if cell not in registry.CELL_NAMES:
        raise ValueError(f"unknown cell {cell!r}; expected one of {registry.CELL_NAMES}")


def _field_names(cell: str) -> tuple[str, ...]:
    return ("Wxh", "Whh", "bh") + (("bhn",) if cell == "gru" else ())


def _assemble(cell: str, weights: dict):
    """The cell's NamedTuple from its recurrent weights, without a readout."""
    return registry.cell_type(cell).params_type(Why=None, by=None, **weights)


def _zero_carry(cell: str, batch_shape, features: int, dtype):
    """The registered zero state of ``cell``, which reads only ``Whh``'s width and dtype."""
    shape_of_Whh = SimpleNamespace(Whh=jnp.zeros((0, features), dtype))
    return registry.cell_type(cell).initial_carry(shape_of_Whh, tuple(batch_shape))


class LinenCell(nn.RNNCellBase):
    """A jaxrnn cell as a ``flax.linen`` RNN cell: ``carry, h = cell(carry, x)``; works with ``nn.RNN``.

    Attributes: ``features`` (H); ``cell``: ``"rnn"``, ``"lstm"`` or ``"gru"``; ``init_scheme``: jaxrnn's
    initialiser (``"default"`` or ``"lecture"``); ``param_dtype``.
    """

    features: int
    cell: str = "lstm"
    init_scheme: str = "default"
    param_dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, carry, inputs):
        _check_cell(self.cell)
        D = inputs.shape[-1]
        make = lambda key: registry.cell_type(self.cell).init(
            key, D, self.features, 1, init=self.init_scheme, dtype=self.param_dtype
        )
        # each weight gets its own key; each is drawn exactly as jaxrnn's initialiser draws it
        weights = {
            name: self.param(name, lambda key, n=name: getattr(make(key), n)) for name in _field_names(self.cell)
        }
        return registry.step_for(_assemble(self.cell, weights))(_assemble(self.cell, weights), carry, inputs)

    @nn.nowrap
    def initialize_carry(self, rng, input_shape):
        """Zero carry for inputs of shape ``(..., D)`` (``rng`` is unused: the state starts at zero)."""
        del rng
        _check_cell(self.cell)
        return _zero_carry(self.cell, tuple(input_shape[:-1]), self.features, self.param_dtype)

    @property
    def num_feature_axes(self) -> int:
        return 1


def linen_variables(params) -> dict:
    """``{"params": ...}`` for ``LinenCell.apply`` from jaxrnn cell parameters (the readout is dropped)."""
    cell = registry.builtin_cell_name(params)
    return {"params": {name: getattr(params, name) for name in _field_names(cell)}}


class NnxCell(nnx.Module):
    """A jaxrnn cell as a ``flax.nnx`` module: ``carry, h = cell(carry, x)``.

    ``NnxCell(D, H, cell="lstm", rngs=nnx.Rngs(0))``; ``NnxCell.from_params(params)`` wraps existing weights.
    """

    def __init__(
        self,
        in_features: int,
        hidden_features: int,
        *,
        cell: str = "lstm",
        init_scheme: str = "default",
        dtype=jnp.float32,
        rngs: nnx.Rngs,
    ):
        _check_cell(cell)
        p = registry.cell_type(cell).init(rngs.params(), in_features, hidden_features, 1, init=init_scheme, dtype=dtype)
        self._set(cell, p)

    def _set(self, cell, params) -> None:
        self.cell = cell
        self.hidden_features = params.Whh.shape[1]
        for name in _field_names(cell):
            setattr(self, name, nnx.Param(jnp.asarray(getattr(params, name))))

    @classmethod
    def from_params(cls, params) -> NnxCell:
        """Wrap jaxrnn cell parameters (e.g. from ``jaxrnn.convert.from_flax``); the readout is dropped."""
        cell = registry.builtin_cell_name(params)
        H, D = params.Whh.shape[1], params.Wxh.shape[1]
        module = cls(D, H, cell=cell, init_scheme="lecture", dtype=params.Whh.dtype, rngs=nnx.Rngs(0))
        module._set(cell, params)  # replaces the freshly drawn weights
        return module

    def cell_params(self):
        """The weights as jaxrnn's NamedTuple (``Why = by = None``), for ``jaxrnn.unroll`` and friends."""
        return _assemble(self.cell, {name: getattr(self, name)[...] for name in _field_names(self.cell)})

    def __call__(self, carry, inputs):
        params = self.cell_params()
        return registry.step_for(params)(params, carry, inputs)

    def initialize_carry(self, input_shape, rngs=None):
        """Zero carry for inputs of shape ``(..., D)``."""
        del rngs
        return _zero_carry(self.cell, tuple(input_shape[:-1]), self.hidden_features, self.Whh[...].dtype)
