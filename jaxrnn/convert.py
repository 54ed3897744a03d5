"""Weight converters between jaxrnn's layout and Flax's and PyTorch's.

Three things differ between the libraries, and each is stated once here:

* orientation: jaxrnn multiplies ``W @ x`` (``Wxh (rows, D)``); a Flax ``Dense`` computes ``x @ kernel``
  (``kernel (D, H)``, the transpose); PyTorch stores ``weight_ih (rows, D)`` like jaxrnn.
* gate order: jaxrnn's LSTM stacks ``LSTM_GATE_ORDER = (i, f, o, g)``; Flax names its per-gate dense layers
  ``i, f, g, o`` and PyTorch stacks ``TORCH_LSTM_GATE_ORDER = (i, f, g, o)``. The GRU is ``r, z, n`` everywhere.
* biases: jaxrnn has one bias per gate row (``bh``), plus the GRU's ``bhn``; PyTorch has two (``bias_ih`` and
  ``bias_hh``), whose sum is all that matters except in the GRU's candidate, where ``b_hn`` sits inside
  ``r * (W_hn h + b_hn)``; Flax puts the LSTM's bias on the recurrent side (``h*``), the simple cell's and the
  GRU's on the input side (``i*``) plus the GRU's ``hn`` bias.

Going to PyTorch, jaxrnn's ``bh`` becomes ``bias_ih`` and ``bias_hh`` is zero (``bhn`` for the GRU), so a round
trip jaxrnn -> PyTorch -> jaxrnn is exact and PyTorch -> jaxrnn -> PyTorch keeps the weights and the sums of the
biases (the same function). The cells have no readout in Flax or PyTorch: ``from_*`` take ``Why (V, H)`` and
``by (V,)`` (a ``torch.nn.Linear``'s ``weight`` and ``bias``; a Flax ``Dense``'s ``kernel.T`` and ``bias``), or
leave them out: ``Why = by = None``, no readout, as a stack layer has.

Flax parameters are the cell's own dict (``variables["params"]`` of a ``flax.linen`` ``SimpleCell``,
``LSTMCell``, ``OptimizedLSTMCell`` or ``GRUCell``). PyTorch parameters are a ``state_dict``-like mapping with
keys ``weight_ih_l{layer}`` ...; values may be tensors (on the CPU) or NumPy arrays.
"""

from __future__ import annotations

import numpy as np
import jax.numpy as jnp

from jaxrnn import registry
from jaxrnn.cells import GRU_GATE_ORDER, LSTM_GATE_ORDER

FLAX_LSTM_GATE_ORDER = ("i", "f", "g", "o")
"""Flax's LSTM dense layers ``ii, if, ig, io`` / ``hi, hf, hg, ho`` (names, not an order in memory)."""
TORCH_LSTM_GATE_ORDER = ("i", "f", "g", "o")
"""Row-block order of ``torch.nn.LSTM``'s ``weight_ih_l*`` (4H, D), ``weight_hh_l*``, ``bias_*``."""


def _blocks(a, order):
    """Split the leading axis of ``a`` into one block per gate: ``{gate: block}``."""
    return dict(zip(order, np.split(np.asarray(a), len(order), axis=0)))


def _stack(blocks, order):
    return np.concatenate([blocks[g] for g in order], axis=0)


def _readout(Why, by, H, dtype):
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


def to_flax(params) -> dict:
    """The cell's parameter dict for Flax's ``SimpleCell``, ``LSTMCell``/``OptimizedLSTMCell`` or ``GRUCell``
    (kernels ``(D, H)`` and ``(H, H)``, i.e. ``Wxh.T`` blocks); ``Why``/``by`` are not part of a Flax cell."""
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


def _flax_kind(cell_params) -> str:
    keys = set(cell_params)
    if keys == {"i", "h"}:
        return "rnn"
    if keys == {f"{s}{g}" for s in "ih" for g in FLAX_LSTM_GATE_ORDER}:
        return "lstm"
    if keys == {f"{s}{g}" for s in "ih" for g in GRU_GATE_ORDER}:
        return "gru"
    raise ValueError(
        f"not the parameters of a Flax SimpleCell, LSTMCell or GRUCell: keys {sorted(keys)} "
        "(pass variables['params'] of the cell itself)"
    )


def from_flax(cell_params, *, Why=None, by=None, dtype=None):
    """jaxrnn parameters (``RNNParams``, ``LSTMParams`` or ``GRUParams``, told apart by the dict's keys) from a
    Flax cell's parameter dict; ``Why (V, H)``, ``by (V,)`` optional (no readout otherwise)."""
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


def _build(kind, Wxh, Whh, bh, bhn, Why, by, dtype):
    dtype = dtype or jnp.asarray(Wxh).dtype
    H = Whh.shape[1]
    Wxh, Whh, bh = (jnp.asarray(a, dtype) for a in (Wxh, Whh, bh))
    Why, by = _readout(Why, by, H, dtype)
    extra = {"bhn": jnp.asarray(bhn, dtype)} if kind == "gru" else {}
    return registry.cell_type(kind).params_type(Wxh=Wxh, Whh=Whh, Why=Why, bh=bh, by=by, **extra)


# -------------------------------------------------------------------------------------------------- PyTorch


def to_torch(params, *, layer: int = 0) -> dict:
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


def from_torch(state_dict, *, layer: int = 0, Why=None, by=None, dtype=None):
    """jaxrnn parameters from one layer of a ``torch.nn.RNN`` (tanh), ``LSTM`` or ``GRU`` state dict (the
    cell is told apart by ``weight_ih`` having ``H``, ``4H`` or ``3H`` rows); biases default to zero when the
    module was built with ``bias=False``."""
    names = [f"{w}_l{layer}" for w in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")]
    if names[0] not in state_dict or names[1] not in state_dict:
        raise KeyError(f"from_torch: no {names[0]}/{names[1]} in the state dict (keys: {sorted(state_dict)})")
    arr = lambda v: np.asarray(v.detach().cpu().numpy() if hasattr(v, "detach") else v)
    W_ih, W_hh = arr(state_dict[names[0]]), arr(state_dict[names[1]])
    H = W_hh.shape[1]
    rows = W_ih.shape[0]
    kinds = {H: "rnn", 3 * H: "gru", 4 * H: "lstm"}
    if W_hh.shape[0] != rows or rows not in kinds:
        raise ValueError(
            f"from_torch: weight_ih {W_ih.shape} and weight_hh {W_hh.shape} are not those of an "
            "RNN, GRU or LSTM layer (rows H, 3H or 4H)"
        )
    kind = kinds[rows]
    b_ih = arr(state_dict[names[2]]) if names[2] in state_dict else np.zeros(rows, W_ih.dtype)
    b_hh = arr(state_dict[names[3]]) if names[3] in state_dict else np.zeros(rows, W_ih.dtype)
    if kind == "lstm":
        W_ih, W_hh, bh = (_stack(_blocks(a, TORCH_LSTM_GATE_ORDER), LSTM_GATE_ORDER) for a in (W_ih, W_hh, b_ih + b_hh))
        return _build(kind, W_ih, W_hh, bh, None, Why, by, dtype)
    if kind == "gru":
        bh = b_ih.copy()
        bh[: 2 * H] += b_hh[: 2 * H]  # r and z: the two biases are simply summed
        return _build(kind, W_ih, W_hh, bh, b_hh[2 * H :], Why, by, dtype)
    return _build(kind, W_ih, W_hh, b_ih + b_hh, None, Why, by, dtype)
