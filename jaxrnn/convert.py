"""Weight converters between jaxrnn's layout and Flax's (``linen`` and ``nnx``) and PyTorch's.

Three things differ between the libraries, and each is stated once here:

* orientation: jaxrnn multiplies ``W @ x`` (``Wxh (rows, D)``); a Flax ``Dense``/``Linear`` computes
  ``x @ kernel`` (``kernel (D, H)``, the transpose); PyTorch stores ``weight_ih (rows, D)`` like jaxrnn.
* gate order: jaxrnn's LSTM stacks ``LSTM_GATE_ORDER = (i, f, o, g)``; Flax names its per-gate dense layers
  ``i, f, g, o`` and stacks the columns of nnx's fused ``OptimizedLSTMCell`` kernels in ``FLAX_LSTM_GATE_ORDER =
  (i, f, g, o)``; PyTorch stacks ``TORCH_LSTM_GATE_ORDER = (i, f, g, o)``. The GRU is ``r, z, n`` everywhere.
* biases: jaxrnn has one bias per gate row (``bh``), plus the GRU's ``bhn``; PyTorch has two (``bias_ih`` and
  ``bias_hh``), whose sum is all that matters except in the GRU's candidate, where ``b_hn`` sits inside
  ``r * (W_hn h + b_hn)``; Flax puts the LSTM's bias on the recurrent side (``h*``), the simple cell's and the
  GRU's on the input side (``i*``), plus, in linen's GRU only, the ``hn`` bias: **nnx's ``GRUCell`` has no
  ``b_hn``** (its ``dense_h`` has no bias), so it converts to ``bhn = 0``, and only a GRU with ``bhn = 0`` converts
  to it.

Going to PyTorch, jaxrnn's ``bh`` becomes ``bias_ih`` and ``bias_hh`` is zero (``bhn`` for the GRU), so a round
trip jaxrnn -> PyTorch -> jaxrnn is exact and PyTorch -> jaxrnn -> PyTorch keeps the weights and the sums of the
biases (the same function). The cells have no readout in Flax or PyTorch: ``from_*`` take ``Why (V, H)`` and
``by (V,)`` (a ``torch.nn.Linear``'s ``weight`` and ``bias``; a Flax ``Dense``'s ``kernel.T`` and ``bias``), or
leave them out: ``Why = by = None``, no readout, as a stack layer has.

**Flax.** ``from_flax`` takes any of these, told apart by their keys and shapes:

* linen: the cell's own dict, ``variables["params"]`` of a ``SimpleCell``, ``LSTMCell``, ``OptimizedLSTMCell``
  or ``GRUCell`` (``{"ii": {"kernel": ...}, ...}``; under ``nn.RNN`` it is ``variables["params"]["cell"]``).
  ``to_flax(params)`` makes it.
* nnx: the cell itself (``nnx.SimpleCell``, ``LSTMCell``, ``OptimizedLSTMCell``, ``GRUCell``), its
  ``nnx.state(cell, nnx.Param)`` or that state's ``nnx.to_pure_dict`` (``LSTMCell``: ``ii, if_, ig, io, hi, ...``;
  the others: ``dense_i``, ``dense_h`` with fused ``(D, kH)`` kernels). ``to_nnx(params, cell)`` makes the pure
  dict for that cell (or cell class); ``nnx.update(cell, to_nnx(params, cell))`` loads it. Flax's default
  activations are assumed, and the simple cell without ``residual``.

**PyTorch.** A ``state_dict``-like mapping with keys ``weight_ih_l{layer}`` ...; values may be tensors (on the
CPU) or NumPy arrays. The keys may carry one module prefix (``lstm.weight_ih_l0`` in the state dict of a model
that holds its ``nn.LSTM`` as ``self.lstm``), found when there is only one, or named by ``prefix=``.
``from_torch(state_dict, layer=l)`` converts one layer (one direction of a bidirectional module, with
``direction=``); ``stack_from_torch(state_dict)`` converts every layer of a multi-layer ``nn.RNN``/``LSTM``/``GRU``
into a ``StackParams``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import jax
import jax.numpy as jnp
import numpy as np

from jaxrnn import registry
from jaxrnn.cells import GRU_GATE_ORDER, LSTM_GATE_ORDER
from jaxrnn.stack import StackParams
from jaxrnn.typing import Array, ArrayLike, DTypeLike, Params

FLAX_LSTM_GATE_ORDER = ("i", "f", "g", "o")
"""Flax's LSTM gates, by the names of linen's dense layers ``ii, if, ig, io`` / ``hi, hf, hg, ho`` (nnx's ``LSTMCell``
spells ``if`` as ``if_``), and the column-block order of nnx's ``OptimizedLSTMCell`` kernels ``(D, 4H)``."""
TORCH_LSTM_GATE_ORDER = ("i", "f", "g", "o")
"""Row-block order of ``torch.nn.LSTM``'s ``weight_ih_l*`` (4H, D), ``weight_hh_l*``, ``bias_*``."""


def _blocks(a: ArrayLike, order: Sequence[str]) -> dict[str, np.ndarray]:
    """Split the leading axis of ``a`` into one block per gate: ``{gate: block}``."""
    return dict(zip(order, np.split(np.asarray(a), len(order), axis=0)))


def _stack(blocks: Mapping[str, np.ndarray], order: Sequence[str]) -> np.ndarray:
    return np.concatenate([blocks[g] for g in order], axis=0)


def _readout(
    Why: ArrayLike | None, by: ArrayLike | None, H: int, dtype: DTypeLike
) -> tuple[Array, Array] | tuple[None, None]:
    """``(Why, by)`` as arrays of ``dtype``, or ``(None, None)`` for no readout."""
    if Why is None:
        if by is not None:
            raise ValueError(
                f"readout by {np.shape(by)} given without Why; expected both (V, {H}) and (V,), or neither"
            )
        return None, None
    Why = jnp.asarray(Why, dtype)
    by = jnp.zeros((Why.shape[0],), dtype) if by is None else jnp.asarray(by, dtype)
    if Why.shape[1:] != (H,) or by.shape != Why.shape[:1]:
        raise ValueError(
            f"readout Why {Why.shape} and by {by.shape} do not fit hidden size {H}; expected (V, {H}) and (V,)"
        )
    return Why, by


# ----------------------------------------------------------------------------------------------------- Flax


def to_flax(params: Params) -> dict:
    """The cell's parameter dict for linen's ``SimpleCell``, ``LSTMCell``/``OptimizedLSTMCell`` or ``GRUCell``
    (kernels ``(D, H)`` and ``(H, H)``, i.e. ``Wxh.T`` blocks), as NumPy arrays; ``Why``/``by`` are not part of a
    Flax cell. For an nnx cell, see ``to_nnx``."""
    kind = registry.builtin_cell_name(params)
    Wxh, Whh, bh = (np.asarray(a) for a in (params.Wxh, params.Whh, params.bh))
    if kind == "rnn":
        return {"i": {"kernel": Wxh.T, "bias": bh}, "h": {"kernel": Whh.T}}
    if kind == "lstm":
        wx, wh, b = (_blocks(a, LSTM_GATE_ORDER) for a in (Wxh, Whh, bh))
        out = {f"i{g}": {"kernel": wx[g].T} for g in FLAX_LSTM_GATE_ORDER}
        out.update({f"h{g}": {"kernel": wh[g].T, "bias": b[g]} for g in FLAX_LSTM_GATE_ORDER})
        return out
    wx, wh, b = (_blocks(a, GRU_GATE_ORDER) for a in (Wxh, Whh, bh))
    out = {f"i{g}": {"kernel": wx[g].T, "bias": b[g]} for g in GRU_GATE_ORDER}
    out.update({f"h{g}": {"kernel": wh[g].T} for g in GRU_GATE_ORDER})
    out["hn"]["bias"] = np.asarray(params.bhn)
    return out


def _nnx_cell_kinds() -> tuple[tuple[type, str], ...]:
    """nnx's cell classes with the jaxrnn cell each converts to and from."""
    from flax import nnx

    return ((nnx.SimpleCell, "rnn"), (nnx.LSTMCell, "lstm"), (nnx.OptimizedLSTMCell, "lstm"), (nnx.GRUCell, "gru"))


def _nnx_class(cell: Any, argument: str) -> type:
    """The nnx cell class of ``cell`` (a class or an instance); ``TypeError`` naming ``argument`` otherwise."""
    cls = cell if isinstance(cell, type) else type(cell)
    for known, _ in _nnx_cell_kinds():
        if issubclass(cls, known):
            return known
    names = ", ".join(f"nnx.{c.__name__}" for c, _ in _nnx_cell_kinds())
    raise TypeError(f"{argument} must be one of {names} (a class or a module), got {cls.__name__}")


def _check_not_residual(cell: Any, where: str) -> None:
    if getattr(cell, "residual", False):
        raise ValueError(f"{where}: nnx.SimpleCell(residual=True) adds h to its update, which jaxrnn's RNN does not")


def _split_columns(kernel: ArrayLike, order: Sequence[str]) -> dict[str, np.ndarray]:
    """``{gate: kernel block}`` from a fused ``(in, k H)`` kernel whose column blocks are gates in ``order``."""
    return dict(zip(order, np.split(np.asarray(kernel), len(order), axis=-1)))


def _fuse_columns(blocks: Mapping[str, np.ndarray], order: Sequence[str]) -> np.ndarray:
    return np.concatenate([blocks[g] for g in order], axis=-1)


def to_nnx(params: Params, cell: Any) -> dict:
    """The parameters of an nnx ``SimpleCell``, ``LSTMCell``, ``OptimizedLSTMCell`` or ``GRUCell`` from jaxrnn's,
    as the pure dict of NumPy arrays that ``nnx.to_pure_dict(nnx.state(cell, nnx.Param))`` would be.

    ``cell``: the nnx cell (then the shapes are checked against its own) or its class. Load the weights with
    ``nnx.update(cell, to_nnx(params, cell))``. nnx's ``GRUCell`` has no ``b_hn``: a GRU converts only with
    ``bhn = 0`` (``ValueError`` otherwise).
    """
    from flax import nnx

    cls = _nnx_class(cell, "to_nnx: cell")
    kind = registry.builtin_cell_name(params)
    wanted = dict(_nnx_cell_kinds())[cls]
    if kind != wanted:
        raise ValueError(
            f"to_nnx: params are {type(params).__name__} but cell is nnx.{cls.__name__}, which holds "
            f"{registry.cell_type(wanted).params_type.__name__}"
        )
    if not isinstance(cell, type):
        _check_not_residual(cell, "to_nnx")
    linen = to_flax(params)
    if cls is nnx.SimpleCell:
        out = {"dense_i": linen["i"], "dense_h": linen["h"]}
    elif cls is nnx.LSTMCell:
        out = {("if_" if name == "if" else name): dense for name, dense in linen.items()}
    elif cls is nnx.OptimizedLSTMCell:
        order: tuple[str, ...] = FLAX_LSTM_GATE_ORDER
        fuse = lambda side, part: _fuse_columns({g: linen[f"{side}{g}"][part] for g in order}, order)
        out = {
            "dense_i": {"kernel": fuse("i", "kernel")},
            "dense_h": {"kernel": fuse("h", "kernel"), "bias": fuse("h", "bias")},
        }
    else:
        if np.any(np.asarray(params.bhn) != 0):
            raise ValueError(
                "to_nnx: nnx.GRUCell has no recurrent candidate bias b_hn, but params.bhn is not zero; use linen's "
                "GRUCell (to_flax) or jaxrnn.flax_modules.NnxCell, which keep it"
            )
        order = GRU_GATE_ORDER
        fuse = lambda side, part: _fuse_columns({g: linen[f"{side}{g}"][part] for g in order}, order)
        out = {
            "dense_i": {"kernel": fuse("i", "kernel"), "bias": fuse("i", "bias")},
            "dense_h": {"kernel": fuse("h", "kernel")},
        }
    if not isinstance(cell, type):
        _check_shapes_like(out, cell)
    return out


def _check_shapes_like(out: dict, cell: Any) -> None:
    from flax import nnx

    theirs = _pure_dict(nnx.state(cell, nnx.Param))
    shapes = lambda tree: jax.tree_util.tree_map(np.shape, tree)
    if shapes(out) != shapes(theirs):
        raise ValueError(
            f"to_nnx: the parameters have shapes {shapes(out)} but the nnx.{type(cell).__name__} given has "
            f"{shapes(theirs)}; build the cell with the same in_features and hidden_features"
        )


def _pure_dict(state: Any) -> dict:
    """``nnx.to_pure_dict(state)``, or the method of the same name of older Flax versions."""
    from flax import nnx

    return nnx.to_pure_dict(state) if hasattr(nnx, "to_pure_dict") else state.to_pure_dict()


def _as_pure_dict(cell_params: Any) -> Mapping:
    """A plain nested dict of arrays from a linen dict, an nnx cell, its ``nnx.State`` or that state's pure dict."""
    from flax import nnx

    if isinstance(cell_params, nnx.Module):
        _nnx_class(cell_params, "from_flax: an nnx cell_params")
        _check_not_residual(cell_params, "from_flax")
        return _pure_dict(nnx.state(cell_params, nnx.Param))
    if isinstance(cell_params, nnx.State):
        return _pure_dict(nnx.filter_state(cell_params, nnx.Param))
    if isinstance(cell_params, Mapping):
        return cell_params
    raise TypeError(
        "from_flax: cell_params must be a Flax cell's parameter dict, an nnx cell or its nnx.State, "
        f"got {type(cell_params).__name__}"
    )


def _from_nnx_layout(p: Mapping) -> dict | None:
    """nnx's parameter dicts rewritten in linen's per-gate layout; ``None`` if ``p`` is not one of them."""
    keys = set(p)
    if keys == {f"{s}{g}" if s + g != "if" else "if_" for s in "ih" for g in FLAX_LSTM_GATE_ORDER}:  # nnx.LSTMCell
        return {("if" if name == "if_" else name): dense for name, dense in p.items()}
    if keys != {"dense_i", "dense_h"} or not all(isinstance(p[k], Mapping) and "kernel" in p[k] for k in keys):
        return None
    k_i, k_h = np.asarray(p["dense_i"]["kernel"]), np.asarray(p["dense_h"]["kernel"])
    H = k_h.shape[0]
    if k_h.ndim != 2 or k_i.ndim != 2 or k_h.shape[1] != k_i.shape[1] or k_h.shape[1] % max(H, 1):
        return None
    bias = lambda side: p[f"dense_{side}"].get("bias")
    fused = {1: "rnn", 4: "lstm", 3: "gru"}.get(k_h.shape[1] // H)
    if fused == "rnn" and bias("i") is not None and bias("h") is None:  # nnx.SimpleCell
        return {"i": {"kernel": k_i, "bias": np.asarray(bias("i"))}, "h": {"kernel": k_h}}
    if fused == "lstm" and bias("h") is not None and bias("i") is None:  # nnx.OptimizedLSTMCell
        ki, kh, b = (_split_columns(a, FLAX_LSTM_GATE_ORDER) for a in (k_i, k_h, bias("h")))
        return {
            **{f"i{g}": {"kernel": ki[g]} for g in FLAX_LSTM_GATE_ORDER},
            **{f"h{g}": {"kernel": kh[g], "bias": b[g]} for g in FLAX_LSTM_GATE_ORDER},
        }
    if fused == "gru" and bias("i") is not None and bias("h") is None:  # nnx.GRUCell: no b_hn
        ki, kh, b = (_split_columns(a, GRU_GATE_ORDER) for a in (k_i, k_h, bias("i")))
        out = {
            **{f"i{g}": {"kernel": ki[g], "bias": b[g]} for g in GRU_GATE_ORDER},
            **{f"h{g}": {"kernel": kh[g]} for g in GRU_GATE_ORDER},
        }
        out["hn"]["bias"] = np.zeros(H, k_h.dtype)
        return out
    return None


def _flax_kind(cell_params: Mapping[str, Any]) -> str:
    keys = set(cell_params)
    if keys == {"i", "h"}:
        return "rnn"
    if keys == {f"{s}{g}" for s in "ih" for g in FLAX_LSTM_GATE_ORDER}:
        return "lstm"
    if keys == {f"{s}{g}" for s in "ih" for g in GRU_GATE_ORDER}:
        return "gru"
    raise ValueError(
        f"from_flax: not the parameters of a Flax SimpleCell, LSTMCell, OptimizedLSTMCell or GRUCell: keys "
        f"{sorted(keys)} (pass linen's variables['params'] of the cell itself, or the nnx cell or its "
        "nnx.state(cell, nnx.Param))"
    )


def from_flax(
    cell_params: Any, *, Why: ArrayLike | None = None, by: ArrayLike | None = None, dtype: DTypeLike | None = None
) -> Params:
    """jaxrnn parameters (``RNNParams``, ``LSTMParams`` or ``GRUParams``) from a Flax cell's: a linen cell's
    parameter dict, an nnx cell, its ``nnx.State`` or that state's pure dict (see the module docstring); told
    apart by keys and shapes. ``Why (V, H)``, ``by (V,)`` optional (no readout otherwise)."""
    cell_params = _as_pure_dict(cell_params)
    cell_params = _from_nnx_layout(cell_params) or cell_params
    kind = _flax_kind(cell_params)
    k = lambda name: np.asarray(cell_params[name]["kernel"])
    if kind == "rnn":
        Wxh, Whh, bh = k("i").T, k("h").T, np.asarray(cell_params["i"]["bias"])
    elif kind == "lstm":
        Wxh = _stack({g: k(f"i{g}").T for g in FLAX_LSTM_GATE_ORDER}, LSTM_GATE_ORDER)
        Whh = _stack({g: k(f"h{g}").T for g in FLAX_LSTM_GATE_ORDER}, LSTM_GATE_ORDER)
        bh = _stack({g: np.asarray(cell_params[f"h{g}"]["bias"]) for g in FLAX_LSTM_GATE_ORDER}, LSTM_GATE_ORDER)
    else:
        Wxh = _stack({g: k(f"i{g}").T for g in GRU_GATE_ORDER}, GRU_GATE_ORDER)
        Whh = _stack({g: k(f"h{g}").T for g in GRU_GATE_ORDER}, GRU_GATE_ORDER)
        bh = _stack({g: np.asarray(cell_params[f"i{g}"]["bias"]) for g in GRU_GATE_ORDER}, GRU_GATE_ORDER)
    return _build(kind, Wxh, Whh, bh, None if kind != "gru" else cell_params["hn"]["bias"], Why, by, dtype)


def _build(
    kind: str,
    Wxh: np.ndarray | Array,
    Whh: np.ndarray | Array,
    bh: np.ndarray | Array,
    bhn: ArrayLike | None,
    Why: ArrayLike | None,
    by: ArrayLike | None,
    dtype: DTypeLike | None,
) -> Params:
    dtype = dtype or jnp.asarray(Wxh).dtype
    H = Whh.shape[1]
    Wxh, Whh, bh = (jnp.asarray(a, dtype) for a in (Wxh, Whh, bh))
    Why, by = _readout(Why, by, H, dtype)
    extra = {"bhn": jnp.asarray(bhn, dtype)} if kind == "gru" else {}
    return registry.cell_type(kind).params_type(Wxh=Wxh, Whh=Whh, Why=Why, bh=bh, by=by, **extra)


# -------------------------------------------------------------------------------------------------- PyTorch


def to_torch(params: Params, *, layer: int = 0) -> dict:
    """``torch.nn.RNN``/``LSTM``/``GRU`` state-dict entries of one layer, as NumPy arrays (use
    ``{k: torch.from_numpy(v) for ...}`` and ``load_state_dict(..., strict=False)`` for further layers)."""
    kind = registry.builtin_cell_name(params)
    Wxh, Whh, bh = (np.asarray(a) for a in (params.Wxh, params.Whh, params.bh))
    bias_hh = np.zeros_like(bh)
    if kind == "lstm":
        order = TORCH_LSTM_GATE_ORDER
        Wxh, Whh, bh = (_stack(_blocks(a, LSTM_GATE_ORDER), order) for a in (Wxh, Whh, bh))
    elif kind == "gru":
        bias_hh = bias_hh.copy()
        bias_hh[2 * Whh.shape[1] :] = np.asarray(params.bhn)  # the candidate's b_hn: inside r * (...)
    return {
        f"weight_ih_l{layer}": Wxh,
        f"weight_hh_l{layer}": Whh,
        f"bias_ih_l{layer}": bh,
        f"bias_hh_l{layer}": bias_hh,
    }


_TORCH_WEIGHT = re.compile(r"^(?P<prefix>.*?)weight_ih_l(?P<layer>\d+)(?P<reverse>_reverse)?$")


def _torch_module(state_dict: Mapping, prefix: str | None, where: str) -> tuple[str, list[int], bool]:
    """The key prefix, layer numbers and bidirectionality of the one recurrent module in ``state_dict``."""
    if not isinstance(state_dict, Mapping):
        raise TypeError(f"{where}: state_dict must be a mapping of names to tensors, got {type(state_dict).__name__}")
    layers: dict[str, set[int]] = {}
    bidirectional: set[str] = set()
    for key in state_dict:
        found = _TORCH_WEIGHT.match(str(key))
        if found:
            layers.setdefault(found["prefix"], set()).add(int(found["layer"]))
            if found["reverse"]:
                bidirectional.add(found["prefix"])
    if prefix is not None:
        prefix = prefix.rstrip(".") + "." if prefix else ""
        if prefix not in layers:
            raise KeyError(f"{where}: no {prefix}weight_ih_l0 in the state dict (keys: {sorted(state_dict)})")
    elif len(layers) > 1:
        raise ValueError(
            f"{where}: the state dict holds {len(layers)} recurrent modules (key prefixes {sorted(layers)}); "
            "pass prefix= to choose one"
        )
    elif not layers:
        raise KeyError(f"{where}: no weight_ih_l0/weight_hh_l0 in the state dict (keys: {sorted(state_dict)})")
    else:
        (prefix,) = layers
    if f"{prefix}weight_hr_l0" in state_dict:
        raise ValueError(f"{where}: {prefix}weight_hr_l0 is an LSTM with proj_size > 0, which jaxrnn's LSTM has not")
    return prefix, sorted(layers[prefix]), prefix in bidirectional


def _as_numpy(value: Any) -> np.ndarray:
    return np.asarray(value.detach().cpu().numpy() if hasattr(value, "detach") else value)


def from_torch(
    state_dict: Mapping,
    *,
    layer: int = 0,
    prefix: str | None = None,
    direction: Literal["forward", "reverse"] | None = None,
    Why: ArrayLike | None = None,
    by: ArrayLike | None = None,
    dtype: DTypeLike | None = None,
) -> Params:
    """jaxrnn parameters from one layer of a ``torch.nn.RNN`` (tanh), ``LSTM`` or ``GRU`` state dict.

    The cell is told apart by ``weight_ih`` having ``H``, ``4H`` or ``3H`` rows; biases default to zero when the
    module was built with ``bias=False``.

    Args:
      state_dict: the module's ``state_dict()``, or a model's whose keys carry the module's name as a prefix.
      layer: which layer (``..._l{layer}`` keys); ``stack_from_torch`` takes them all.
      prefix: the module's key prefix (``"lstm."`` or ``"lstm"``); found by itself when the state dict holds one
        recurrent module.
      direction: of a bidirectional module (``..._reverse`` keys), which one: ``"forward"`` or ``"reverse"``
        (run both with ``jaxrnn.unroll_bidirectional``); must be left out for a unidirectional one.
      Why, by: the readout ``(V, H)``, ``(V,)`` (a ``torch.nn.Linear``'s ``weight`` and ``bias``), or none.
    """
    prefix, _, bidirectional = _torch_module(state_dict, prefix, "from_torch")
    if bidirectional and direction not in ("forward", "reverse"):
        raise ValueError(
            f"from_torch: {prefix}weight_ih_l{layer}_reverse: the module is bidirectional; pass direction='forward' "
            f"or 'reverse' (got {direction!r}) and run both with jaxrnn.unroll_bidirectional"
        )
    if not bidirectional and direction is not None:
        raise ValueError(f"from_torch: direction={direction!r} is for a bidirectional module; this one is not")
    suffix = f"_l{layer}" + ("_reverse" if direction == "reverse" else "")
    names = [f"{prefix}{w}{suffix}" for w in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")]
    if names[0] not in state_dict or names[1] not in state_dict:
        raise KeyError(f"from_torch: no {names[0]}/{names[1]} in the state dict (keys: {sorted(state_dict)})")
    W_ih, W_hh = _as_numpy(state_dict[names[0]]), _as_numpy(state_dict[names[1]])
    H = W_hh.shape[1]
    rows = W_ih.shape[0]
    kinds = {H: "rnn", 3 * H: "gru", 4 * H: "lstm"}
    if W_hh.shape[0] != rows or rows not in kinds:
        raise ValueError(
            f"from_torch: weight_ih {W_ih.shape} and weight_hh {W_hh.shape} are not those of an "
            "RNN, GRU or LSTM layer (rows H, 3H or 4H)"
        )
    kind = kinds[rows]
    b_ih = _as_numpy(state_dict[names[2]]) if names[2] in state_dict else np.zeros(rows, W_ih.dtype)
    b_hh = _as_numpy(state_dict[names[3]]) if names[3] in state_dict else np.zeros(rows, W_ih.dtype)
    if kind == "lstm":
        W_ih, W_hh, bh = (_stack(_blocks(a, TORCH_LSTM_GATE_ORDER), LSTM_GATE_ORDER) for a in (W_ih, W_hh, b_ih + b_hh))
        return _build(kind, W_ih, W_hh, bh, None, Why, by, dtype)
    if kind == "gru":
        bh = b_ih.copy()
        bh[: 2 * H] += b_hh[: 2 * H]  # r and z: the two biases are simply summed
        return _build(kind, W_ih, W_hh, bh, b_hh[2 * H :], Why, by, dtype)
    return _build(kind, W_ih, W_hh, b_ih + b_hh, None, Why, by, dtype)


def stack_from_torch(
    state_dict: Mapping,
    *,
    prefix: str | None = None,
    Why: ArrayLike | None = None,
    by: ArrayLike | None = None,
    embedding: ArrayLike | None = None,
    dtype: DTypeLike | None = None,
) -> StackParams:
    """A ``StackParams`` with one layer per layer of a (multi-layer) ``torch.nn.RNN``, ``LSTM`` or ``GRU``.

    Run it with ``jaxrnn.unroll(jaxrnn.step_for(stack), stack, jaxrnn.initial_carry(stack, (B,)), xs)``; torch's
    ``dropout`` between layers is a training option, not a weight (``jaxrnn.unroll(..., dropout=)``).

    Args:
      state_dict, prefix: as for ``from_torch``. A bidirectional module is refused (``ValueError``): its upper
        layers read both directions, which a stack of one-direction layers cannot.
      Why, by: the readout ``(V, H_top)``, ``(V,)`` (a ``torch.nn.Linear``'s ``weight`` and ``bias``), or none
        (``StackParams.Why = by = None``: ``jaxrnn.unroll`` runs it, a loss needs a readout).
      embedding: an ``nn.Embedding``'s ``weight (V_in, E)`` for token ids, stored transposed as jaxrnn's
        ``(E, V_in)``; ``E`` must be layer 0's input size.
    """
    prefix, numbers, bidirectional = _torch_module(state_dict, prefix, "stack_from_torch")
    if bidirectional:
        raise ValueError(
            f"stack_from_torch: {prefix}weight_ih_l0_reverse: a bidirectional module's upper layers read both "
            "directions, which a StackParams cannot hold; convert a one-layer module with from_torch(direction=...)"
        )
    if numbers != list(range(len(numbers))):
        raise ValueError(f"stack_from_torch: the layers are numbered {numbers}; expected 0 to {len(numbers) - 1}")
    layers = tuple(from_torch(state_dict, layer=l, prefix=prefix, dtype=dtype) for l in numbers)
    layer_dtype = layers[0].Whh.dtype
    Why, by = _readout(Why, by, layers[-1].Whh.shape[1], layer_dtype)
    if embedding is not None:
        table = _as_numpy(embedding)
        D = layers[0].Wxh.shape[1]
        if table.ndim != 2 or table.shape[1] != D:
            raise ValueError(
                f"stack_from_torch: embedding has shape {table.shape}; expected an nn.Embedding weight (V_in, {D}) "
                f"whose width is layer 0's input size {D}"
            )
        embedding = jnp.asarray(table.T, layer_dtype)
    return StackParams(layers, Why, by, embedding)
