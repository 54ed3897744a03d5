"""Text from a trained language model: loading a checkpoint's parameters, and sampling characters from them."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, NamedTuple, cast

import numpy as np

from jaxrnn.data import DataError, Vocabulary
from jaxrnn.lm.config import RunConfig
from jaxrnn.lm.loop import checkpoint_dir
from jaxrnn.lm.model import ConfigError
from jaxrnn.precision import COMPUTE_DTYPES
from jaxrnn.typing import Precision

if TYPE_CHECKING:
    import optax

    from jaxrnn.checkpoint import CheckpointStore
    from jaxrnn.lm.model import TrainState
    from jaxrnn.stack import StackParams


def load_model(
    out: str, which: str = "latest", *, log: Callable[[str], object] | None = None
) -> tuple[StackParams, Vocabulary, dict[str, Any]]:
    """The parameters (``StackParams``), vocabulary and metadata of checkpoint ``which`` (``"latest"``, ``"best"``
    or a step number) of the run in ``out``. Checkpoints of jaxrnn 0.1 (format 1) load too.

    Every array is checked against the checksum saved with it. When the latest or best checkpoint is unreadable,
    the newest readable one is used and ``log`` (default: a warning) says so in one line; a step number that is
    unreadable is a ``CheckpointError``."""
    from jaxrnn.checkpoint import CheckpointStore

    store = CheckpointStore(checkpoint_dir(out), create=False)
    try:
        steps = store.steps()
        if not steps:
            raise DataError(f"no checkpoint in {store.directory}; train a model into {out} first")
        if which == "latest":
            candidates = steps[::-1]
        elif which == "best":
            best = store.best_step() or steps[-1]
            candidates = [best] + [s for s in steps[::-1] if s != best]
        else:
            try:
                step = int(which)
            except ValueError:
                raise ConfigError(
                    f"checkpoint must be latest, best or a step number, got {which!r}", "checkpoint"
                ) from None
            if step not in steps:
                raise DataError(f"no checkpoint for step {step}; available: {', '.join(map(str, steps))}")
            candidates = [step]
        _, (params, vocab, meta) = store.first_readable(candidates, lambda step: _read_model(store, step), log=log)
    finally:
        store.close()
    return params, vocab, meta


def _read_model(store: CheckpointStore, step: int) -> tuple[StackParams, Vocabulary, dict[str, Any]]:
    import jax

    from jaxrnn.checkpoint import FORMAT
    from jaxrnn.lm.model import init_train_state

    meta = store.read_meta(step)
    config = RunConfig.from_saved(meta["config"])
    vocab = Vocabulary(tuple(meta["vocabulary"]))
    make_state = lambda: init_train_state(
        jax.random.PRNGKey(0), config.model(vocab.size), config.make_optimizer(), config.batch_size
    )
    if meta["format"] == FORMAT:
        params = store.restore(step, jax.eval_shape(make_state)).params
    else:
        params = _from_format_1(store, step, jax.eval_shape(make_state), config.make_optimizer())
    return params, vocab, meta


class _CharLMParamsV1(NamedTuple):
    """jaxrnn 0.1's language-model parameters: its layers had ``Why = by = None`` and the embedding came first."""

    embedding: object
    layers: tuple
    Why: object
    by: object


def _from_format_1(
    store: CheckpointStore, step: int, template: TrainState, optimizer: optax.GradientTransformation
) -> StackParams:
    """Parameters of a jaxrnn 0.1 checkpoint, read with 0.1's layout and returned as ``StackParams``."""
    import jax

    from jaxrnn.lm.model import TrainState

    p = template.params
    old_params = _CharLMParamsV1(p.embedding, p.layers, p.Why, p.by)  # the layers: Why = by = None then and now
    old = TrainState(
        # orbax restores by tree structure: the old layout stands where StackParams is declared
        cast("StackParams", old_params),
        jax.eval_shape(optimizer.init, old_params),
        template.carry,
        template.key,
        template.step,
    )
    restored = store.restore(step, old).params
    return p._replace(layers=restored.layers, Why=restored.Why, by=restored.by, embedding=restored.embedding)


def generate_text(
    params: StackParams,
    vocab: Vocabulary,
    *,
    length: int,
    prime: str = "",
    temperature: float = 1.0,
    top_k: int | None = None,
    seed: int = 0,
    block: int = 16,
    precision: Precision = "f32",
) -> Iterator[str]:
    """Yield the sampled text in pieces of ``block`` characters (the priming text is not repeated).

    The priming text warms the state up (``jaxrnn.lm.warm_up``); with none, sampling starts after a newline
    (or the first character of the vocabulary). Piece ``b`` uses key ``fold_in(PRNGKey(seed), b)``, so the same
    seed gives the same text, and a longer sample starts with the shorter one. ``precision`` is the run's
    (``RunConfig.precision``): the dtype the weight matrices multiply in.
    """
    import jax

    from jaxrnn.lm.model import warm_up
    from jaxrnn.sampling import sample

    if not isinstance(length, int) or length < 0:
        raise ConfigError(f"length must be a non-negative integer, got {length!r}", "length")
    if not (math.isfinite(temperature) and temperature >= 0):
        raise ConfigError(
            f"temperature must be >= 0 (0: always the most likely character), got {temperature!r}", "temperature"
        )
    if top_k is not None and not 1 <= top_k <= vocab.size:
        raise ConfigError(f"top_k must be between 1 and the vocabulary size {vocab.size}, got {top_k}", "top_k")
    if not prime:
        prime = "\n" if "\n" in vocab.chars else vocab.chars[0]
    compute_dtype = COMPUTE_DTYPES[precision]
    carry, x = warm_up(params, vocab.encode(prime), compute_dtype=compute_dtype)  # DataError: unknown characters
    key = jax.random.PRNGKey(seed)
    done = 0
    for b in range(-(-length // block)):
        ids, carry = sample(
            jax.random.fold_in(key, b),
            params,
            carry,
            x,
            block,
            temperature=temperature,
            top_k=top_k,
            compute_dtype=compute_dtype,
        )
        x = ids[-1]
        piece = vocab.decode(np.asarray(ids)[: length - done])
        done += len(piece)
        yield piece
