"""The settings of a language-model training run, their defaults, and what a resumed run may change."""
from __future__ import annotations

import dataclasses
import functools
import math
import os
from dataclasses import dataclass

from jaxrnn._checks import non_negative_int, positive_int
from jaxrnn.data import CORPORA, DEFAULT_CORPUS, DataError, load_corpus, load_text
from jaxrnn.lm.model import CELLS, ConfigError, ModelConfig
from jaxrnn.optim import CLIP_MODES, OPTIMIZERS

SCHEDULES = ("constant", "cosine")
DEFAULT_LEARNING_RATES = {"adagrad": 0.1, "adam": 2e-3, "rmsprop": 2e-3, "sgd": 1.0}


@dataclass(frozen=True)
class RunConfig:
    """Every setting of a training run. ``None`` means "the default for the other choices": the optimiser is
    Adam for every cell (the lecture's clipped Adagrad, ``optimizer="adagrad"``, was chaotic for the batched
    vanilla RNN: ``experiments/char_lm_quality.py``); the learning rate is
    ``DEFAULT_LEARNING_RATES[optimizer]``; clipping is elementwise for Adagrad (the lecture's) and by global
    norm otherwise; a cosine schedule decays over ``steps``."""

    corpus: str = DEFAULT_CORPUS
    data: str | None = None
    cell: str = "lstm"
    hidden_size: int = 256
    layers: int = 1
    embed_size: int = 0
    dropout: float = 0.0
    seq_length: int = 64
    batch_size: int = 32
    optimizer: str | None = None
    learning_rate: float | None = None
    lr_schedule: str = "constant"
    decay_steps: int | None = None
    clip: float = 5.0
    clip_mode: str | None = None
    seed: int = 0
    steps: int = 2000
    eval_every: int = 100
    steps_per_call: int = 10
    keep: int = 3
    sample_length: int = 300

    def resolved(self) -> "RunConfig":
        """The same run with every ``None`` filled in and every value checked (``ConfigError`` names the field)."""
        for name in ("hidden_size", "layers", "seq_length", "batch_size", "steps", "eval_every",
                     "steps_per_call", "keep"):
            positive_int(name, getattr(self, name), error=functools.partial(ConfigError, setting=name))
        for name in ("embed_size", "sample_length", "seed"):
            non_negative_int(name, getattr(self, name), error=functools.partial(ConfigError, setting=name))
        _choice("cell", self.cell, CELLS)
        optimizer = _choice("optimizer", self.optimizer or "adam", OPTIMIZERS)
        _choice("lr_schedule", self.lr_schedule, SCHEDULES)
        clip_mode = _choice("clip_mode", self.clip_mode or ("value" if optimizer == "adagrad" else "global_norm"),
                            CLIP_MODES)
        learning_rate = DEFAULT_LEARNING_RATES[optimizer] if self.learning_rate is None else self.learning_rate
        if not (isinstance(learning_rate, (int, float)) and math.isfinite(learning_rate) and learning_rate > 0):
            raise ConfigError(f"learning_rate must be a positive number, got {learning_rate!r}", "learning_rate")
        if not (math.isfinite(self.clip) and self.clip >= 0):
            raise ConfigError(f"clip must be >= 0 (0: no clipping), got {self.clip!r}", "clip")
        decay_steps = self.steps if self.decay_steps is None else positive_int(
            "decay_steps", self.decay_steps, error=functools.partial(ConfigError, setting="decay_steps"))
        if self.data is None and self.corpus not in CORPORA:
            raise DataError(f"unknown corpus {self.corpus!r}; choose one of: {', '.join(sorted(CORPORA))}")
        out = dataclasses.replace(self, optimizer=optimizer, clip_mode=clip_mode, learning_rate=float(learning_rate),
                                  decay_steps=decay_steps)
        out.model(1)  # checks cell, dropout and sizes
        return out

    def model(self, vocab_size: int) -> ModelConfig:
        return ModelConfig(vocab_size, cell=self.cell, hidden_size=self.hidden_size, layers=self.layers,
                           embed_size=self.embed_size, dropout=self.dropout)

    def make_optimizer(self):
        import optax

        from jaxrnn.optim import make_optimizer

        lr = self.learning_rate
        if self.lr_schedule == "cosine":
            lr = optax.cosine_decay_schedule(self.learning_rate, self.decay_steps, alpha=0.1)
        return make_optimizer(self.optimizer, lr, clip=self.clip or None, clip_mode=self.clip_mode)

    @classmethod
    def from_saved(cls, saved: dict) -> "RunConfig":
        """The configuration stored in a checkpoint (fields this version does not know are ignored)."""
        fields = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in saved.items() if k in fields}).resolved()


def _choice(setting: str, value, choices) -> str:
    if value not in choices:
        raise ConfigError(f"{setting}: unknown value {value!r}; choose one of: {', '.join(choices)}", setting)
    return value


RESUME_MAY_CHANGE = ("corpus", "data", "steps", "eval_every", "steps_per_call", "keep", "sample_length")
"""Settings a resumed run may change; all others (model shape, batching, optimiser, seed) must match."""


def resume_config(config: RunConfig, explicit: set[str], saved: dict) -> RunConfig:
    """The configuration of a resumed run: the checkpoint's ``saved`` settings, with the ``RESUME_MAY_CHANGE``
    ones among ``explicit`` (the settings a user gave) taken from ``config``; any other explicit setting that
    contradicts the checkpoint is a ``ConfigError``."""
    for name in explicit - set(RESUME_MAY_CHANGE):
        value = getattr(config, name)
        if name in saved and value is not None and value != saved[name]:
            raise ConfigError(f"{name} {value} differs from the checkpoint's {saved[name]}; a resumed run keeps "
                              "the model shape, batching, optimiser and seed", name)
    changes = {name: getattr(config, name) for name in RESUME_MAY_CHANGE if name in explicit}
    if "data" in changes and "corpus" not in changes:
        changes["corpus"] = DEFAULT_CORPUS
    if "corpus" in changes and "data" not in changes:
        changes["data"] = None
    return dataclasses.replace(RunConfig.from_saved(saved), **changes).resolved()


def load_training_text(config: RunConfig) -> tuple[str, str]:
    """The text and a description of where it came from (stored in checkpoints)."""
    if config.data is not None:
        return load_text(config.data), os.path.abspath(config.data)
    return load_corpus(config.corpus), f"corpus:{config.corpus}"
