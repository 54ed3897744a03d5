"""The lecture's recurrent cells as pure step functions.

Shapes (used throughout the package):
  T  time steps        B  batch (any number of leading axes, written ``...``)
  D  input size        H  hidden size        V  output size (vocabulary)

Orientation is the lecture's, ``W @ x``: ``Wxh (H, D)``, ``Whh (H, H)``, ``Why (V, H)``. A batch of row
vectors ``x (..., D)`` is projected as ``x @ Wxh.T``, which is the same numbers as ``Wxh @ x`` per example.

Vanilla RNN::

    h_t = tanh(Wxh x_t + Whh h_{t-1} + bh)        y_t = Why h_t + by

LSTM (gates stacked in row blocks of ``Wxh (4H, D)``, ``Whh (4H, H)``, ``bh (4H,)`` in ``LSTM_GATE_ORDER``)::

    z = Wxh x_t + Whh h_{t-1} + bh
    i, f, o = sigmoid(z_i), sigmoid(z_f), sigmoid(z_o);   g = tanh(z_g)
    c_t = f * c_{t-1} + i * g                             h_t = o * tanh(c_t)

GRU (gates stacked in row blocks of ``Wxh (3H, D)``, ``Whh (3H, H)``, ``bh (3H,)`` in ``GRU_GATE_ORDER``), the
variant of PyTorch's ``nn.GRU`` and Flax's ``GRUCell``: the reset gate multiplies ``Whh_n h + bhn`` *after* the
matrix product, which is why it needs its own bias ``bhn (H,)`` inside the product::

    r = sigmoid(Wxh_r x_t + Whh_r h_{t-1} + bh_r)        z = sigmoid(Wxh_z x_t + Whh_z h_{t-1} + bh_z)
    n = tanh(Wxh_n x_t + bh_n + r * (Whh_n h_{t-1} + bhn))
    h_t = (1 - z) * n + z * h_{t-1}

Integer inputs are token ids: ``Wxh x`` with ``x`` the one-hot vector of id ``k`` is column ``k`` of ``Wxh``,
so an integer input is looked up instead of multiplied (the lecture's embedding layer). Both forms give the
same numbers; ``embed`` exposes the lookup on its own.

Precision (``jaxrnn.precision``): with bfloat16 weights (``compute_dtype=jnp.bfloat16`` casts them), the products
``Wxh x``, ``Whh h`` and the lookup read bfloat16 operands and return float32. The bias addition, the gate
nonlinearities, the LSTM's cell state ``c``, the carry ``h`` and the outputs stay float32: each step's state is
never rounded to 8 bits, so the error of a product does not compound along the cell path.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from jaxrnn._checks import positive_int, token_ids_out_of_range
from jaxrnn.precision import accumulation_dtype, matmul
from jaxrnn.typing import Array, ArrayLike, DTypeLike, Params, PRNGKey


LSTM_GATE_ORDER = ("i", "f", "o", "g")
"""Row-block order of the LSTM's stacked gate weights (input, forget, output, candidate ``g``)."""

GRU_GATE_ORDER = ("r", "z", "n")
"""Row-block order of the GRU's stacked weights (reset, update, candidate ``n``), PyTorch's and Flax's order."""


# In a stack layer Why and by are None (the stack reads out), yet they are typed Array: optax annotates parameters
# as trees without None leaves, so with `Array | None` pyright would refuse `optimizer.init(params)` for every
# cell. readout refuses a layer without a readout by name.


class RNNParams(NamedTuple):
    """Vanilla RNN parameters: ``Wxh (H, D)``, ``Whh (H, H)``, ``Why (V, H)``, ``bh (H,)``, ``by (V,)``."""

    Wxh: Array
    Whh: Array
    Why: Array
    bh: Array
    by: Array


class LSTMParams(NamedTuple):
    """LSTM parameters, gates stacked i, f, o, g: ``Wxh (4H, D)``, ``Whh (4H, H)``, ``Why (V, H)``,
    ``bh (4H,)``, ``by (V,)``."""

    Wxh: Array
    Whh: Array
    Why: Array
    bh: Array
    by: Array


class GRUParams(NamedTuple):
    """GRU parameters, gates stacked r, z, n: ``Wxh (3H, D)``, ``Whh (3H, H)``, ``Why (V, H)``, ``bh (3H,)``,
    ``by (V,)``, and ``bhn (H,)``, the candidate's recurrent bias inside ``r * (Whh_n h + bhn)``.

    ``bhn`` comes last so that the first five fields line up with ``RNNParams`` and ``LSTMParams``.
    """

    Wxh: Array
    Whh: Array
    Why: Array
    bh: Array
    by: Array
    bhn: Array


class LSTMCarry(NamedTuple):
    """LSTM state: hidden ``h (..., H)`` and cell ``c (..., H)``."""

    h: Array
    c: Array


INIT_SCHEMES = ("default", "lecture")
"""Initialisation schemes of ``init_rnn``, ``init_lstm`` and ``init_gru`` (``init=``)."""


def _check_sizes(**sizes: int) -> None:
    for name, value in sizes.items():
        positive_int(name, value)


def _init_weights(
    key: PRNGKey, rows: int, input_size: int, hidden_size: int, output_size: int, init: str, dtype: DTypeLike
) -> tuple[Array, ...]:
    """Shared initialiser: returns ``Wxh (rows, D)``, ``Whh (rows, H)``, ``Why (V, H)``."""
    if init not in INIT_SCHEMES:
        raise ValueError(f"unknown init {init!r}; expected one of {INIT_SCHEMES}")
    k_xh, k_hh, k_hy = jax.random.split(key, 3)
    weights = _draw_weights(
        k_xh, k_hh, k_hy, rows, input_size, hidden_size, output_size, init, jnp.promote_types(dtype, jnp.float32)
    )  # draw in >= float32 (QR has no bfloat16)
    return tuple(w.astype(dtype) for w in weights)


def _draw_weights(
    k_xh: PRNGKey,
    k_hh: PRNGKey,
    k_hy: PRNGKey,
    rows: int,
    input_size: int,
    hidden_size: int,
    output_size: int,
    init: str,
    dtype: DTypeLike,
) -> tuple[Array, Array, Array]:
    if init == "lecture":  # min-char-rnn: randn * 0.01
        normal = lambda k, shape: 0.01 * jax.random.normal(k, shape, dtype)
        return (
            normal(k_xh, (rows, input_size)),
            normal(k_hh, (rows, hidden_size)),
            normal(k_hy, (output_size, hidden_size)),
        )
    # Default for larger models: variance-preserving input/readout weights and an orthogonal recurrence, so the
    # largest singular value of each H x H block of Whh starts at exactly 1 (neither vanishing nor exploding).
    Wxh = jax.random.normal(k_xh, (rows, input_size), dtype) / jnp.sqrt(jnp.asarray(input_size, dtype))
    blocks = [
        jax.nn.initializers.orthogonal()(k, (hidden_size, hidden_size), dtype)
        for k in jax.random.split(k_hh, rows // hidden_size)
    ]
    Whh = jnp.concatenate(blocks, axis=0)
    Why = jax.random.normal(k_hy, (output_size, hidden_size), dtype) / jnp.sqrt(jnp.asarray(hidden_size, dtype))
    return Wxh, Whh, Why


def init_rnn(
    key: PRNGKey,
    input_size: int,
    hidden_size: int,
    output_size: int,
    *,
    init: str = "default",
    dtype: DTypeLike = jnp.float32,
) -> RNNParams:
    """Vanilla RNN parameters.

    ``init="lecture"`` is min-char-rnn's ``randn * 0.01`` with zero biases; ``init="default"`` scales input and
    readout weights by ``1/sqrt(fan_in)`` and starts ``Whh`` orthogonal.
    """
    _check_sizes(input_size=input_size, hidden_size=hidden_size, output_size=output_size)
    Wxh, Whh, Why = _init_weights(key, hidden_size, input_size, hidden_size, output_size, init, dtype)
    return RNNParams(Wxh, Whh, Why, jnp.zeros((hidden_size,), dtype), jnp.zeros((output_size,), dtype))


def init_lstm(
    key: PRNGKey,
    input_size: int,
    hidden_size: int,
    output_size: int,
    *,
    init: str = "default",
    forget_bias: float = 1.0,
    dtype: DTypeLike = jnp.float32,
) -> LSTMParams:
    """LSTM parameters; the forget-gate block of ``bh`` starts at ``forget_bias`` so the cell remembers by
    default (``f = sigmoid(1) ~ 0.73``)."""
    _check_sizes(input_size=input_size, hidden_size=hidden_size, output_size=output_size)
    Wxh, Whh, Why = _init_weights(key, 4 * hidden_size, input_size, hidden_size, output_size, init, dtype)
    bh = jnp.zeros((4, hidden_size), dtype).at[LSTM_GATE_ORDER.index("f")].set(forget_bias).reshape(-1)
    return LSTMParams(Wxh, Whh, Why, bh, jnp.zeros((output_size,), dtype))


def init_gru(
    key: PRNGKey,
    input_size: int,
    hidden_size: int,
    output_size: int,
    *,
    init: str = "default",
    dtype: DTypeLike = jnp.float32,
) -> GRUParams:
    """GRU parameters with zero biases (``bh`` and ``bhn``); ``init`` as for ``init_rnn``."""
    _check_sizes(input_size=input_size, hidden_size=hidden_size, output_size=output_size)
    Wxh, Whh, Why = _init_weights(key, 3 * hidden_size, input_size, hidden_size, output_size, init, dtype)
    zeros = lambda n: jnp.zeros((n,), dtype)
    return GRUParams(Wxh, Whh, Why, zeros(3 * hidden_size), zeros(output_size), zeros(hidden_size))


def hidden_size(params: Params) -> int:
    """``H``, read from ``Whh``."""
    return params.Whh.shape[1]


def rnn_initial_carry(params: Params, batch_shape: tuple[int, ...] = ()) -> Array:
    """Zero state of the RNN or GRU: ``h (*batch_shape, H)``, in the accumulation dtype of the weights (float32 for
    bfloat16 weights: the state is never rounded to 8 bits; see ``jaxrnn.precision``)."""
    return jnp.zeros((*tuple(batch_shape), hidden_size(params)), accumulation_dtype(params.Whh.dtype))


def lstm_initial_carry(params: LSTMParams, batch_shape: tuple[int, ...] = ()) -> LSTMCarry:
    """Zero state of the LSTM: ``LSTMCarry(h, c)``, each ``(*batch_shape, H)``."""
    zeros = rnn_initial_carry(params, batch_shape)
    return LSTMCarry(zeros, zeros)


def embed(W: Array, ids: ArrayLike) -> Array:
    """Embedding lookup ``W[:, ids]`` moved to the last axis: ``W (E, V)``, ``ids (...)`` in ``[0, V)`` ->
    ``(..., E)``.

    Equals ``one_hot(ids, V) @ W.T`` (that is ``W @ x`` for one-hot ``x``) without building the one-hot. An id
    outside ``[0, V)`` is a ``ValueError`` when its value is known; under ``jit`` its row is NaN (never another
    id's row: negative ids do not count from the end).
    """
    ids = jnp.asarray(ids)
    if not jnp.issubdtype(ids.dtype, jnp.integer):
        raise TypeError(f"embed: ids must be integers, got dtype {ids.dtype}")
    V = W.shape[-1]
    token_ids_out_of_range("embed: ids", ids, V)
    # out-of-range ids (negative ones moved past the end) read the fill value
    return jnp.take(W.T, jnp.where(ids < 0, V, ids), axis=0, mode="fill", fill_value=jnp.nan)


def input_projection(Wxh: Array, x: ArrayLike) -> Array:
    """``Wxh x`` for a batch: float ``x (..., D)`` is multiplied (cast to ``Wxh``'s dtype first), integer
    ``x (...)`` is looked up as token ids."""
    x = jnp.asarray(x)
    if jnp.issubdtype(x.dtype, jnp.integer):
        return embed(Wxh, x).astype(accumulation_dtype(Wxh.dtype))
    if x.ndim == 0 or x.shape[-1] != Wxh.shape[1]:
        raise ValueError(
            f"input x has shape {x.shape}; expected (..., {Wxh.shape[1]}) float features to match Wxh "
            f"{Wxh.shape}, or integer token ids (...)"
        )
    return matmul(x, Wxh.T, Wxh.dtype)


def _check_state(name: str, state: Array, params: Params) -> None:
    H = hidden_size(params)
    if not hasattr(state, "shape") or state.ndim == 0 or state.shape[-1] != H:
        raise ValueError(f"{name} has shape {getattr(state, 'shape', type(state).__name__)}; expected (..., {H})")


def _check_input(name: str, x: ArrayLike, h: Array, params: Params) -> None:
    """The input's batch shape must be the carry's: ids ``(...)`` or features ``(..., D)`` for ``h (..., H)``."""
    shape, batch = jnp.shape(x), tuple(h.shape[:-1])
    ids = jnp.issubdtype(jnp.result_type(x), jnp.integer)
    if (shape if ids else shape[:-1]) != batch:
        D = params.Wxh.shape[1]
        raise ValueError(
            f"{name}: input x {shape} {jnp.result_type(x)} does not fit the carry's batch shape {batch}: integer "
            f"inputs are token ids {batch}, float inputs are features {(*batch, D)}"
        )


def rnn_cell(params: RNNParams, h: Array, xproj: Array) -> Array:
    """The RNN update given the input projection: ``tanh(xproj + Whh h + bh)``, ``xproj (..., H)``.

    ``rnn_step`` and the fast paths (input projection hoisted out of the time loop) both call this.
    """
    return jnp.tanh(xproj + matmul(h, params.Whh.T, params.Whh.dtype) + params.bh)


def rnn_step(params: RNNParams, h: Array, x: ArrayLike) -> tuple[Array, Array]:
    """One vanilla RNN step ``h_t = tanh(Wxh x_t + Whh h_{t-1} + bh)``.

    Args:
      params: ``RNNParams``.
      h: the carry ``h_{t-1} (..., H)``.
      x: float features ``(..., D)`` (cast to the parameters' dtype) or integer token ids ``(...)`` in
        ``[0, D)``: integer inputs are always token ids, float inputs always features.
    Returns: ``(h_t, h_t)``, the carry and the output, as ``jax.lax.scan`` wants.
    """
    if not isinstance(params, RNNParams):
        raise TypeError(f"rnn_step: params must be RNNParams, got {type(params).__name__}")
    if isinstance(h, tuple):
        raise TypeError(f"rnn_step: carry must be an array h (..., H), got {type(h).__name__}")
    _check_state("rnn_step: carry h", h, params)
    _check_input("rnn_step", x, h, params)
    h = rnn_cell(params, h, input_projection(params.Wxh, x))
    return h, h


def lstm_cell(params: LSTMParams, carry: LSTMCarry, zx: Array) -> tuple[LSTMCarry, Array]:
    """The LSTM update given the input projection ``zx = Wxh x (..., 4H)``; see the module docstring."""
    h_prev, c_prev = carry
    z = zx + matmul(h_prev, params.Whh.T, params.Whh.dtype) + params.bh
    c, h = lstm_memory(c_prev, lstm_gates(z))
    return LSTMCarry(h, c), h


def lstm_gates(z: Array) -> tuple[Array, Array, Array, Array]:
    """The gates ``(i, f, o, g)``, each ``(..., H)``, from the pre-activations ``z (..., 4H)`` stacked in
    ``LSTM_GATE_ORDER``: ``sigmoid`` for ``i, f, o``, ``tanh`` for the candidate ``g``."""
    z_i, z_f, z_o, z_g = jnp.split(z, 4, axis=-1)
    return jax.nn.sigmoid(z_i), jax.nn.sigmoid(z_f), jax.nn.sigmoid(z_o), jnp.tanh(z_g)


def lstm_memory(c_prev: Array, gates: tuple[Array, Array, Array, Array]) -> tuple[Array, Array]:
    """The cell path: ``(c_t, h_t)`` from ``c_prev (..., H)`` and the gates ``(i, f, o, g)`` of ``lstm_gates``."""
    i, f, o, g = gates
    c = f * c_prev + i * g  # gradients flow back through c multiplied only by f
    return c, o * jnp.tanh(c)


def lstm_step(params: LSTMParams, carry: LSTMCarry, x: ArrayLike) -> tuple[LSTMCarry, Array]:
    """One LSTM step::

        z = Wxh x_t + Whh h_{t-1} + bh                  (gates stacked in LSTM_GATE_ORDER = i, f, o, g)
        i, f, o = sigmoid(z_i), sigmoid(z_f), sigmoid(z_o);   g = tanh(z_g)
        c_t = f * c_{t-1} + i * g                       h_t = o * tanh(c_t)

    Args:
      params: ``LSTMParams``.
      carry: ``LSTMCarry(h (..., H), c (..., H))``.
      x: float features ``(..., D)`` (cast to the parameters' dtype) or integer token ids ``(...)`` in
        ``[0, D)``: integer inputs are always token ids, float inputs always features.
    Returns: ``(LSTMCarry(h_t, c_t), h_t)``.
    """
    if not isinstance(params, LSTMParams):
        raise TypeError(f"lstm_step: params must be LSTMParams, got {type(params).__name__}")
    if not isinstance(carry, LSTMCarry):
        raise TypeError(f"lstm_step: carry must be LSTMCarry(h, c), got {type(carry).__name__}")
    _check_state("lstm_step: carry.h", carry.h, params)
    _check_state("lstm_step: carry.c", carry.c, params)
    _check_input("lstm_step", x, carry.h, params)
    return lstm_cell(params, carry, input_projection(params.Wxh, x))


def gru_cell(params: GRUParams, h: Array, xproj: Array) -> tuple[Array, Array]:
    """The GRU update given the input projection ``xproj = Wxh x (..., 3H)``; see the module docstring."""
    zx = xproj + params.bh
    zh = matmul(h, params.Whh.T, params.Whh.dtype)
    zx_r, zx_z, zx_n = jnp.split(zx, 3, axis=-1)  # GRU_GATE_ORDER
    zh_r, zh_z, zh_n = jnp.split(zh, 3, axis=-1)
    r, z = jax.nn.sigmoid(zx_r + zh_r), jax.nn.sigmoid(zx_z + zh_z)
    n = jnp.tanh(zx_n + r * (zh_n + params.bhn))
    h = (1 - z) * n + z * h  # z gates a direct path from h_{t-1}, as f gates the LSTM's cell path
    return h, h


def gru_step(params: GRUParams, h: Array, x: ArrayLike) -> tuple[Array, Array]:
    """One GRU step::

        r = sigmoid(Wxh_r x_t + Whh_r h_{t-1} + bh_r)        z = sigmoid(Wxh_z x_t + Whh_z h_{t-1} + bh_z)
        n = tanh(Wxh_n x_t + bh_n + r * (Whh_n h_{t-1} + bhn))
        h_t = (1 - z) * n + z * h_{t-1}

    Args:
      params: ``GRUParams``.
      h: the carry ``h_{t-1} (..., H)``.
      x: float features ``(..., D)`` (cast to the parameters' dtype) or integer token ids ``(...)`` in
        ``[0, D)``: integer inputs are always token ids, float inputs always features.
    Returns: ``(h_t, h_t)``.
    """
    if not isinstance(params, GRUParams):
        raise TypeError(f"gru_step: params must be GRUParams, got {type(params).__name__}")
    if isinstance(h, tuple):
        raise TypeError(f"gru_step: carry must be an array h (..., H), got {type(h).__name__}")
    _check_state("gru_step: carry h", h, params)
    _check_input("gru_step", x, h, params)
    return gru_cell(params, h, input_projection(params.Wxh, x))


def readout(params: Params, h: Array) -> Array:
    """Scores ``y = Why h + by``: ``h (..., H)`` -> ``y (..., V)`` (any number of leading axes, e.g. ``hs``).

    A stack layer has no readout (``Why = by = None``; its stack reads out): ``ValueError``.
    """
    if params.Why is None or params.by is None:
        raise ValueError(
            f"readout: these {type(params).__name__} have no readout (Why is None): a stack layer's output is read "
            "out by its stack (StackParams.Why, by)"
        )
    return matmul(h, params.Why.T, params.Why.dtype) + params.by
