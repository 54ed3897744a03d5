"""A character-level language model: embedding -> recurrent layers -> readout, trained by truncated BPTT.

Shapes: ``T`` time, ``B`` streams (batch), ``V`` vocabulary, ``E`` embedding, ``H`` hidden, ``K`` updates in
one compiled call, ``C`` chunks of a held-out stream.

Model, for layers ``l = 1..L`` of the same cell (``rnn_cell`` or ``lstm_cell``, the core's equations)::

    x_t = embedding[:, id_t]      (or, with no embedding, layer 1 reads the one-hot id: column id_t of Wxh)
    h^l_t = cell(Wxh^l x^l_t, h^l_{t-1})      x^{l+1}_t = dropout(h^l_t)
    y_t = Why h^L_t + by          p_t = softmax(y_t)

Each layer's input projection ``Wxh^l x^l_t`` is computed for all ``T`` steps at once before its time loop
(one matmul), or, for one-hot ids, looked up step by step inside it; the time loop is
``jaxrnn.fast.recurrence`` or ``recurrence_ids`` (the cell's own maths, differentiated by manual BPTT).
``char_lm_step`` is the same model one character at a time with the core ``rnn_step``/``lstm_step``; a test
pins the two equal.

Truncated BPTT: ``TrainState.carry`` holds every stream's state; an update starts from it (zeroed only where
``reset`` says a stream wrapped around), runs one chunk, and keeps the final state for the next chunk. The
carry enters the update as data, not as a function of the parameters, so no gradient reaches earlier chunks.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxrnn.cells import (LSTMCarry, LSTMParams, RNNParams, embed, init_lstm, init_rnn, input_projection,
                          lstm_step, readout, register_step, rnn_step)
from jaxrnn.fast import recurrence, recurrence_ids
from jaxrnn.losses import softmax_cross_entropy

Array = jax.Array

CELLS = ("rnn", "lstm")


class ConfigError(ValueError):
    """An impossible model or training setting (a size of zero, an unknown cell): a one-line message."""


@dataclass(frozen=True)
class ModelConfig:
    """The model's shape. ``embed_size=0`` means no separate embedding: layer 1 reads one-hot ids, which is a
    lookup of a column of its ``Wxh`` (the lecture's model). ``dropout`` acts between layers."""

    vocab_size: int
    cell: str = "lstm"
    hidden_size: int = 256
    layers: int = 1
    embed_size: int = 0
    dropout: float = 0.0

    def __post_init__(self):
        if self.cell not in CELLS:
            raise ConfigError(f"unknown cell {self.cell!r}; choose one of: {', '.join(CELLS)}")
        for name in ("vocab_size", "hidden_size", "layers"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ConfigError(f"{name.replace('_', ' ')} must be a positive integer, got {value!r}")
        if not isinstance(self.embed_size, int) or self.embed_size < 0:
            raise ConfigError(f"embed size must be a non-negative integer (0: no embedding), got {self.embed_size!r}")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"dropout must be in [0, 1), got {self.dropout!r}")
        if self.dropout > 0 and self.layers < 2:
            raise ConfigError("dropout acts between recurrent layers; it needs --layers 2 or more")


class CharLMParams(NamedTuple):
    """``embedding (E, V)`` or ``None``; ``layers``: one ``RNNParams``/``LSTMParams`` per layer (their ``Why``
    and ``by`` are ``None``: only the top layer is read out); ``Why (V, H)``, ``by (V,)`` the readout."""

    embedding: Array | None
    layers: tuple
    Why: Array
    by: Array


def init_char_lm(key, config: ModelConfig, *, dtype=jnp.float32) -> CharLMParams:
    """Parameters for ``config``: each layer from the core initialisers (orthogonal ``Whh``, LSTM forget bias 1)."""
    keys = jax.random.split(key, config.layers + 2)
    V, H, E = config.vocab_size, config.hidden_size, config.embed_size
    init = init_lstm if config.cell == "lstm" else init_rnn
    layers = []
    for l in range(config.layers):
        D = (E or V) if l == 0 else H
        layer = init(keys[l], D, H, 1, dtype=dtype)._replace(Why=None, by=None)
        if l == 0 and not E:
            # One-hot input: a single column of Wxh is active, so the core's 1/sqrt(fan_in) scaling (meant for
            # dense inputs) would leave each input projection at std 1/sqrt(V) and learning starts slowly.
            # Scaled to std 1, the same as an embedding of std 1 read through Wxh / sqrt(E).
            layer = layer._replace(Wxh=layer.Wxh * jnp.sqrt(jnp.asarray(V, dtype)))
        layers.append(layer)
    embedding = jax.random.normal(keys[-2], (E, V), dtype) if E else None
    Why = jax.random.normal(keys[-1], (V, H), dtype) / jnp.sqrt(jnp.asarray(H, dtype))
    return CharLMParams(embedding, tuple(layers), Why, jnp.zeros((V,), dtype))


def cell_name(params: CharLMParams) -> str:
    return "lstm" if isinstance(params.layers[0], LSTMParams) else "rnn"


def char_lm_initial_carry(params: CharLMParams, batch_shape: tuple[int, ...] = ()) -> tuple:
    """Zero state: one ``h (*batch_shape, H)`` (RNN) or ``LSTMCarry`` per layer."""
    out = []
    for layer in params.layers:
        zeros = jnp.zeros((*tuple(batch_shape), layer.Whh.shape[1]), layer.Whh.dtype)
        out.append(LSTMCarry(zeros, zeros) if isinstance(layer, LSTMParams) else zeros)
    return tuple(out)


def reset_carry(carry: tuple, reset: Array) -> tuple:
    """Zero the state of the streams where ``reset (B,)`` is true; keep the others."""
    return jax.tree.map(lambda s: jnp.where(reset[:, None], jnp.zeros_like(s), s), carry)


def _layer_input(params: CharLMParams, ids: Array) -> Array:
    return ids if params.embedding is None else embed(params.embedding, ids)


def char_lm_hidden(params: CharLMParams, carry: tuple, xs: Array, *, key=None, dropout: float = 0.0):
    """Run every layer over the chunk: ``xs (T, B)`` ids -> top layer's ``hs (T, B, H)`` and the new carry.

    Dropout (inverted, rate ``dropout``) is applied to each layer's outputs before the next layer reads them,
    only when ``key`` is given.
    """
    inputs = _layer_input(params, xs)
    new_carry = []
    for l, (layer, state) in enumerate(zip(params.layers, carry)):
        if l > 0 and key is not None and dropout > 0:
            keep = jax.random.bernoulli(jax.random.fold_in(key, l), 1.0 - dropout, inputs.shape)
            inputs = jnp.where(keep, inputs / (1.0 - dropout), 0.0)
        if not isinstance(layer, (LSTMParams, RNNParams)):
            raise TypeError(f"unsupported layer parameters {type(layer).__name__}")
        if jnp.issubdtype(inputs.dtype, jnp.integer):  # one-hot ids: each step looks up its column of Wxh
            state, inputs = recurrence_ids(layer.Wxh, layer.Whh, layer.bh, state, inputs)
        else:  # (T, B, G) projections in one matmul, hoisted out of the time loop
            state, inputs = recurrence(layer.Whh, layer.bh, state, input_projection(layer.Wxh, inputs))
        new_carry.append(state)
    return inputs, tuple(new_carry)


def char_lm_loss(params: CharLMParams, carry: tuple, xs: Array, targets: Array, *, key=None,
                 dropout: float = 0.0) -> tuple[Array, tuple]:
    """Mean cross-entropy in nats per character over the chunk, and the carry after it.

    Args: ``xs (T, B)`` and ``targets (T, B)`` ids; ``carry`` from ``char_lm_initial_carry(params, (B,))``.
    """
    hs, carry_T = char_lm_hidden(params, carry, xs, key=key, dropout=dropout)
    return softmax_cross_entropy(readout(params, hs), targets, reduction="mean"), carry_T


def char_lm_step(params: CharLMParams, carry: tuple, x: Array) -> tuple[tuple, Array]:
    """One character through every layer with the core step functions: ``x (...)`` ids -> ``(carry, h^L)``.

    Registered for ``CharLMParams``, so ``jaxrnn.sample`` and ``jaxrnn.sequence_loss`` work on the model.
    """
    inputs = _layer_input(params, x)
    new_carry = []
    for layer, state in zip(params.layers, carry):
        step = lstm_step if isinstance(layer, LSTMParams) else rnn_step
        state, inputs = step(layer, state, inputs)
        new_carry.append(state)
    return tuple(new_carry), inputs


register_step(CharLMParams, char_lm_step)
try:  # let jaxrnn.initial_carry build the model's zero state too, where the core offers the hook
    from jaxrnn.cells import register_initial_carry
except ImportError:  # pragma: no cover
    pass
else:
    register_initial_carry(CharLMParams, char_lm_initial_carry)


class TrainState(NamedTuple):
    """Everything training needs to continue exactly: parameters, optimiser state, every stream's carried
    state, the base PRNG key (dropout at step ``s`` uses ``fold_in(key, s)``) and the number of updates done."""

    params: CharLMParams
    opt_state: Any
    carry: tuple
    key: Array
    step: Array


def init_train_state(key, config: ModelConfig, optimizer: optax.GradientTransformation,
                     batch_size: int) -> TrainState:
    """Fresh parameters from ``key``, zero carries for ``batch_size`` streams, step 0."""
    k_params, k_dropout = jax.random.split(key)
    params = init_char_lm(k_params, config)
    return TrainState(params, optimizer.init(params), char_lm_initial_carry(params, (batch_size,)), k_dropout,
                      jnp.asarray(0, jnp.int32))


def make_update(optimizer: optax.GradientTransformation, *, dropout: float = 0.0):
    """The pure update ``update(state, xs (T, B), targets (T, B), reset (B,)) -> (state, loss)``.

    One truncated-BPTT step: reset wrapped streams, value-and-gradient of ``char_lm_loss`` with respect to the
    parameters only, optimiser update, keep the chunk's final carry.
    """

    def update(state: TrainState, xs, targets, reset):
        carry = reset_carry(state.carry, reset)
        key = jax.random.fold_in(state.key, state.step) if dropout > 0 else None
        (loss, carry_T), grads = jax.value_and_grad(char_lm_loss, has_aux=True)(
            state.params, carry, xs, targets, key=key, dropout=dropout)
        updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        return TrainState(params, opt_state, carry_T, state.key, state.step + 1), loss

    return update


def make_train_chunks(optimizer: optax.GradientTransformation, *, dropout: float = 0.0):
    """A jitted ``train_chunks(state, xs (K,T,B), targets (K,T,B), reset (K,B), active (K,)) -> (state, losses (K,))``.

    ``K`` updates in one compiled call (``lax.scan`` over the updates) to save dispatch overhead. Where
    ``active[k]`` is false the update is skipped (its loss reads 0), so one compiled function serves every
    call, including a short last one, and an update computes the same numbers whichever call it falls in:
    this is what makes resuming exact.
    """
    update = make_update(optimizer, dropout=dropout)

    def body(state, batch):
        xs, targets, reset, active = batch
        return jax.lax.cond(active, lambda s: update(s, xs, targets, reset),
                            lambda s: (s, jnp.zeros((), jnp.float32)), state)

    @jax.jit
    def train_chunks(state, xs, targets, reset, active):
        return jax.lax.scan(body, state, (xs, targets, reset, active))

    return train_chunks


@jax.jit
def evaluate(params: CharLMParams, xs: Array, targets: Array) -> Array:
    """Mean nats per character over a held-out stream read chunk after chunk, state carried from zero.

    Args: ``xs (C, T, B)``, ``targets (C, T, B)`` (``Streams.epoch()``). No dropout.
    """

    def body(carry, chunk):
        loss, carry = char_lm_loss(params, carry, *chunk)
        return carry, loss

    _, losses = jax.lax.scan(body, char_lm_initial_carry(params, (xs.shape[-1],)), (xs, targets))
    return losses.mean()  # every chunk has T * B characters, so the mean of means is the mean


def place_batch(batch, mesh=None):
    """Put a batch on the device(s): the one place where training data crosses to the accelerator.

    Every array in ``batch`` has the stream axis ``B`` last (``xs (K, T, B)``, ``reset (K, B)``). With ``mesh``
    (``jaxrnn.parallel.make_mesh()``) the stream axis is split over its devices (data parallelism); an array
    whose ``B`` does not divide evenly (a short held-out stream) is replicated instead, which computes the same
    numbers on every device. Without ``mesh``: the default device.
    """
    if mesh is None:
        return jax.device_put(batch)
    from jaxrnn import parallel

    def put(x):
        if np.ndim(x) and np.shape(x)[-1] % mesh.devices.size == 0:
            return parallel.shard_batch(mesh, x, batch_axis=np.ndim(x) - 1)
        return parallel.replicate(mesh, x)

    return jax.tree.map(put, batch)


def place_state(state: TrainState, mesh=None) -> TrainState:
    """Put the training state on the device(s): parameters, optimiser state and key replicated, the carried
    states ``(B, H)`` split along ``B`` like the batch. Without ``mesh``: the default device."""
    if mesh is None:
        return jax.device_put(state)
    from jaxrnn import parallel

    carry = parallel.shard_batch(mesh, state.carry, batch_axis=0)
    return parallel.replicate(mesh, state._replace(carry=()))._replace(carry=carry)


def warm_up(params: CharLMParams, ids) -> tuple[tuple, Array]:
    """Feed priming ids ``(N,)`` (N >= 1) from a zero state: returns the carry after ``ids[:-1]`` and the last
    id, ready for ``jaxrnn.sample(key, params, carry, x, length)`` which feeds ``x`` first."""
    ids = jnp.asarray(ids, jnp.int32).reshape(-1)
    if ids.shape[0] == 0:
        raise ValueError("warm_up: need at least one priming id")
    carry = char_lm_initial_carry(params)
    if ids.shape[0] > 1:
        _, carry = _prime(params, carry, ids[:-1])
    return carry, ids[-1]


@jax.jit
def _prime(params, carry, ids):
    carry, hs = jax.lax.scan(functools.partial(char_lm_step, params), carry, ids)
    return hs, carry
