"""The character-level language model: a ``StackParams`` stack over token ids, trained by truncated BPTT.

Shapes: ``T`` time, ``B`` streams (batch), ``V`` vocabulary, ``E`` embedding, ``H`` hidden, ``K`` updates in
one compiled call, ``C`` chunks of a held-out stream.

The model is ``jaxrnn.stack``'s, for layers ``l = 1..L`` of one cell::

    x_t = embedding[:, id_t]      (or, with no embedding, layer 1 reads the one-hot id: column id_t of Wxh)
    h^l_t = cell(h^l_{t-1}, x^l_t)      x^{l+1}_t = dropout(h^l_t)
    y_t = Why h^L_t + by          p_t = softmax(y_t)

Training and evaluation unroll it with ``method="fused"`` (``jaxrnn.recurrence`` for RNN and LSTM layers,
``lax.scan`` for the GRU); sampling steps it one character at a time with ``stack_step``; a test pins the two
equal.

Truncated BPTT: ``TrainState.carry`` holds every stream's state; an update starts from it (zeroed only where
``reset`` says a stream wrapped around), runs one chunk, and keeps the final state for the next chunk. The
carry enters the update as data, not as a function of the parameters, so no gradient reaches earlier chunks.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh

from jaxrnn import registry
from jaxrnn._checks import non_negative_int, positive_int
from jaxrnn.losses import sequence_loss
from jaxrnn.precision import cast_weights
from jaxrnn.stack import StackParams, init_stack
from jaxrnn.training import make_train_step
from jaxrnn.typing import Array, ArrayLike, Carry, CellName, DTypeLike, Method, PRNGKey, PyTree


CELLS = registry.CELL_NAMES
"""The cells a language model can be built of (``RunConfig.cell``)."""
METHOD: Method = "fused"
"""How the model is unrolled for training and evaluation (see ``jaxrnn.unroll``)."""


class ConfigError(ValueError):
    """An impossible model or training setting: a one-line message that starts with ``setting``, the name of the
    offending field (so a command line can put its own flag name in its place)."""

    def __init__(self, message: str, setting: str | None = None):
        super().__init__(message)
        self.setting = setting


@dataclass(frozen=True)
class ModelConfig:
    """The model's shape. ``embed_size=0`` means no separate embedding: layer 1 reads one-hot ids, which is a
    lookup of a column of its ``Wxh`` (the lecture's model). ``dropout`` acts between layers."""

    vocab_size: int
    cell: CellName = "lstm"
    hidden_size: int = 256
    layers: int = 1
    embed_size: int = 0
    dropout: float = 0.0

    def __post_init__(self) -> None:
        if self.cell not in CELLS:
            raise ConfigError(f"cell: unknown value {self.cell!r}; choose one of: {', '.join(CELLS)}", "cell")
        for name in ("vocab_size", "hidden_size", "layers"):
            positive_int(name, getattr(self, name), error=functools.partial(ConfigError, setting=name))
        non_negative_int("embed_size", self.embed_size, error=functools.partial(ConfigError, setting="embed_size"))
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"dropout must be in [0, 1), got {self.dropout!r}", "dropout")
        if self.dropout > 0 and self.layers < 2:
            raise ConfigError("dropout acts between recurrent layers; it needs 2 or more layers", "dropout")


def init_model(key: PRNGKey, config: ModelConfig, *, dtype: DTypeLike = jnp.float32) -> StackParams:
    """Parameters for ``config``: ``init_stack`` (orthogonal ``Whh``, LSTM forget bias 1), ``V`` ids in and out.

    With no embedding, layer 1's ``Wxh`` is scaled by ``sqrt(V)``: a one-hot input selects one column, so the
    ``1/sqrt(fan_in)`` scaling meant for dense inputs would leave each input projection at std ``1/sqrt(V)``
    and learning would start slowly; scaled, it has std 1, like an embedding of std 1 read through
    ``Wxh / sqrt(E)``.
    """
    V = config.vocab_size
    params = init_stack(
        key, V, (config.hidden_size,) * config.layers, V, cell=config.cell, embed_size=config.embed_size, dtype=dtype
    )
    if config.embed_size:
        return params
    first = params.layers[0]
    first = first._replace(Wxh=first.Wxh * jnp.sqrt(jnp.asarray(V, dtype)))
    return params._replace(layers=(first, *params.layers[1:]))


def loss(
    params: StackParams,
    carry: tuple,
    xs: Array,
    targets: Array,
    *,
    mask: ArrayLike | None = None,
    key: PRNGKey | None = None,
    dropout: float = 0.0,
    compute_dtype: DTypeLike | None = None,
) -> tuple[Array, tuple]:
    """Mean cross-entropy in nats per character over the chunk, and the carry after it.

    Args: ``xs (T, B)`` and ``targets (T, B)`` ids; ``carry`` from ``jaxrnn.initial_carry(params, (B,))``;
    ``compute_dtype``: the dtype the weight matrices multiply in (``jaxrnn.precision``).
    """
    return sequence_loss(
        params,
        carry,
        xs,
        targets,
        mask=mask,
        reduction="mean",
        method=METHOD,
        key=key,
        dropout=dropout,
        compute_dtype=compute_dtype,
    )


class TrainState(NamedTuple):
    """Everything training needs to continue exactly: parameters, optimiser state, every stream's carried
    state, the base PRNG key (update ``s`` draws its dropout from ``fold_in(key, s)``) and the number of
    updates done."""

    params: StackParams
    opt_state: Any
    carry: tuple
    key: Array
    step: Array


def init_train_state(
    key: PRNGKey, config: ModelConfig, optimizer: optax.GradientTransformation, batch_size: int
) -> TrainState:
    """Fresh parameters from ``key``, zero carries for ``batch_size`` streams, step 0."""
    k_params, k_dropout = jax.random.split(key)
    params = init_model(k_params, config)
    return TrainState(
        params,
        optimizer.init(params),  # pyright: ignore[reportArgumentType]  # optax's Params has no None leaf (embedding)
        registry.initial_carry(params, (batch_size,)),
        k_dropout,
        jnp.asarray(0, jnp.int32),
    )


def make_train_chunks(
    optimizer: optax.GradientTransformation,
    updates_per_call: int,
    *,
    dropout: float = 0.0,
    compute_dtype: DTypeLike | None = None,
) -> Callable[[TrainState, Array, Array, Array, Array], tuple[TrainState, Array]]:
    """A jitted ``train_chunks(state, xs (K,T,B), targets (K,T,B), reset (K,B), active (K,)) -> (state, losses (K,))``.

    ``K`` updates of ``jaxrnn.make_train_step`` in one compiled call. Where ``active[k]`` is false the update is
    skipped (its loss reads 0), so one compiled function serves every call, including a short last one, and an
    update computes the same numbers whichever call it falls in: this is what makes resuming exact.
    """
    train_step = make_train_step(
        optimizer,
        loss_fn=functools.partial(loss, dropout=dropout, compute_dtype=compute_dtype),
        updates_per_call=updates_per_call,
    )

    @jax.jit
    def train_chunks(
        state: TrainState, xs: Array, targets: Array, reset: Array, active: Array
    ) -> tuple[TrainState, Array]:
        fold = lambda k: jax.random.fold_in(state.key, state.step + k)
        keys = jax.vmap(fold)(jnp.arange(updates_per_call)) if dropout else None
        args = (xs, targets, reset, active, keys)
        if updates_per_call == 1:  # the step takes one update's arguments, without the leading K axis
            args = jax.tree.map(lambda a: a[0], args)
        xs_, targets_, reset_, active_, keys_ = args
        params, opt_state, carry, losses = train_step(
            state.params, state.opt_state, state.carry, xs_, targets_, reset=reset_, active=active_, key=keys_
        )
        losses = jnp.reshape(losses, (-1,))
        step = state.step + jnp.sum(active).astype(state.step.dtype)
        return TrainState(params, opt_state, carry, state.key, step), losses

    return train_chunks


@functools.partial(jax.jit, static_argnames=("compute_dtype",))
def evaluate(params: StackParams, xs: Array, targets: Array, compute_dtype: jnp.dtype | None = None) -> Array:
    """Mean nats per character over a held-out stream read chunk after chunk, state carried from zero.

    Args: ``xs (C, T, B)``, ``targets (C, T, B)`` (``Streams.epoch()``); ``compute_dtype`` as for ``loss``. No
    dropout.
    """

    def body(carry: tuple, chunk: tuple[Array, Array]) -> tuple[tuple, Array]:
        chunk_loss, carry = loss(params, carry, *chunk, compute_dtype=compute_dtype)
        return carry, chunk_loss

    _, losses = jax.lax.scan(body, registry.initial_carry(params, (xs.shape[-1],)), (xs, targets))
    return losses.mean()  # every chunk has T * B characters, so the mean of means is the mean


def place_batch(batch: PyTree, mesh: Mesh | None = None) -> PyTree:
    """Put a batch on the device(s): the one place where training data crosses to the accelerator.

    Every array in ``batch`` has the stream axis ``B`` last (``xs (K, T, B)``, ``reset (K, B)``). With ``mesh``
    (``jaxrnn.parallel.make_mesh()``) the stream axis is split over its devices (data parallelism); an array
    whose ``B`` does not divide evenly (a short held-out stream) is replicated instead, which computes the same
    numbers on every device. Without ``mesh``: the default device.
    """
    if mesh is None:
        return jax.device_put(batch)
    from jaxrnn import parallel

    def put(x: ArrayLike) -> Array:
        if np.ndim(x) and np.shape(x)[-1] % mesh.devices.size == 0:
            return parallel.shard_batch(mesh, x, batch_axis=np.ndim(x) - 1)
        return parallel.replicate(mesh, x)

    return jax.tree.map(put, batch)


def place_state(state: TrainState, mesh: Mesh | None = None) -> TrainState:
    """Put the training state on the device(s): parameters, optimiser state and key replicated, the carried
    states ``(B, H)`` split along ``B`` like the batch. Without ``mesh``: the default device."""
    if mesh is None:
        return jax.device_put(state)
    from jaxrnn import parallel

    carry = parallel.shard_batch(mesh, state.carry, batch_axis=0)
    return parallel.replicate(mesh, state._replace(carry=()))._replace(carry=carry)


def warm_up(params: StackParams, ids: ArrayLike, *, compute_dtype: jnp.dtype | None = None) -> tuple[tuple, Array]:
    """Feed priming ids ``(N,)`` (N >= 1) from a zero state: returns the carry after ``ids[:-1]`` and the last
    id, ready for ``jaxrnn.sample(key, params, carry, x, length)`` which feeds ``x`` first."""
    ids = jnp.asarray(ids, jnp.int32).reshape(-1)
    if ids.shape[0] == 0:
        raise ValueError("warm_up: need at least one priming id")
    carry = registry.initial_carry(params)
    if ids.shape[0] > 1:
        _, carry = _prime(params, carry, ids[:-1], compute_dtype)
    return carry, ids[-1]


@functools.partial(jax.jit, static_argnums=3)
def _prime(
    params: StackParams, carry: tuple[Carry, ...], ids: Array, compute_dtype: jnp.dtype | None
) -> tuple[Array, tuple[Carry, ...]]:
    params = cast_weights(params, compute_dtype)
    carry, hs = jax.lax.scan(functools.partial(registry.step_for(params), params), carry, ids)
    return hs, carry
