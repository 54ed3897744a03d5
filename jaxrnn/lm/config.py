"""The settings of a language-model training run, their defaults, and what a resumed run may change."""

from __future__ import annotations

import dataclasses
import functools
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple, TypedDict, TypeVar, get_args

from jaxrnn._checks import non_negative_int, positive_int
from jaxrnn.data import CORPORA, DEFAULT_CORPUS, DataError
from jaxrnn.lm.model import ConfigError, ModelConfig
from jaxrnn.optim import CLIP_MODES, OPTIMIZERS
from jaxrnn.precision import COMPUTE_DTYPES
from jaxrnn.typing import CellName, ClipMode, LRSchedule, OptimizerName, Precision

if TYPE_CHECKING:
    import jax.numpy as jnp
    import optax

    from jaxrnn.lm.model import TrainState

SCHEDULES: tuple[LRSchedule, ...] = get_args(LRSchedule)
"""The learning-rate schedules ``RunConfig.lr_schedule`` takes."""
COSINE_FLOOR = 0.1
"""A cosine schedule ends at this fraction of the initial learning rate."""


class _Defaults(TypedDict):
    lr_schedule: LRSchedule
    layers: int
    dropout: float


STEP_DEFAULTS: _Defaults = {"lr_schedule": "constant", "layers": 1, "dropout": 0.0}
BUDGET_DEFAULTS: _Defaults = {"lr_schedule": "cosine", "layers": 2, "dropout": 0.4}
"""The defaults of ``RunConfig.lr_schedule``, ``layers`` and ``dropout`` (dropout only with 2 or more layers)."""
DEFAULT_LEARNING_RATES: dict[OptimizerName, float] = {"adagrad": 0.1, "adam": 2e-3, "rmsprop": 2e-3, "sgd": 1.0}
"""The learning rate of each optimiser when ``RunConfig.learning_rate`` is not given."""


@dataclass(frozen=True)
class RunConfig:
    """Every setting of a training run. ``None`` means "the default for the other choices": the optimiser is
    Adam for every cell (the lecture's clipped Adagrad, ``optimizer="adagrad"``, was chaotic for the batched
    vanilla RNN: ``experiments/char_lm_quality.py``); the learning rate is
    ``DEFAULT_LEARNING_RATES[optimizer]``; clipping is elementwise for Adagrad (the lecture's) and by global
    norm otherwise.

    A run ends after ``steps`` updates or, with ``time_budget`` (minutes of wall-clock time, evaluation and
    compilation included), when the budget is spent; ``steps`` is then not used. A cosine schedule decays over
    whichever of the two ends the run (``decay_steps`` may shorten a step-count one). The schedule, the depth
    and the dropout default to ``STEP_DEFAULTS`` for a step count (the lecture's model, quick to train) and to
    ``BUDGET_DEFAULTS`` under a time budget (what did best in ten minutes: ``experiments/trainer_defaults.py``).
    ``precision`` is ``"f32"`` or ``"bf16"`` (``jaxrnn.precision.COMPUTE_DTYPES``): the dtype the weight matrices
    multiply in, for training, evaluation and sampling; it is recorded in the checkpoint and a resumed run keeps
    it."""

    corpus: str = DEFAULT_CORPUS
    data: str | None = None
    cell: CellName = "lstm"
    hidden_size: int = 256
    layers: int | None = None
    embed_size: int = 0
    dropout: float | None = None
    seq_length: int = 64
    batch_size: int = 32
    optimizer: OptimizerName | None = None
    learning_rate: float | None = None
    lr_schedule: LRSchedule | None = None
    decay_steps: int | None = None
    clip: float = 5.0
    clip_mode: ClipMode | None = None
    seed: int = 0
    steps: int = 2000
    time_budget: float | None = None
    eval_every: int = 100
    steps_per_call: int = 10
    keep: int = 3
    sample_length: int = 300
    precision: Precision = "f32"

    def _filled_defaults(self) -> tuple[Any, Any, Any]:
        """``(layers, dropout, lr_schedule)`` with ``None`` replaced by ``STEP_DEFAULTS`` or ``BUDGET_DEFAULTS``."""
        defaults = STEP_DEFAULTS if self.time_budget is None else BUDGET_DEFAULTS
        layers = defaults["layers"] if self.layers is None else self.layers
        dropout = self.dropout
        if dropout is None:  # dropout acts between layers: none for one layer
            dropout = defaults["dropout"] if isinstance(layers, int) and layers >= 2 else 0.0
        lr_schedule = defaults["lr_schedule"] if self.lr_schedule is None else self.lr_schedule
        return layers, dropout, lr_schedule

    def resolved(self) -> RunConfig:
        """The same run with every ``None`` filled in and every value checked (``ConfigError`` names the field)."""
        layers, dropout, lr_schedule = self._filled_defaults()
        self = dataclasses.replace(self, layers=layers, dropout=dropout, lr_schedule=lr_schedule)
        for name in (
            "hidden_size",
            "layers",
            "seq_length",
            "batch_size",
            "steps",
            "eval_every",
            "steps_per_call",
            "keep",
        ):
            positive_int(name, getattr(self, name), error=functools.partial(ConfigError, setting=name))
        for name in ("embed_size", "sample_length", "seed"):
            non_negative_int(name, getattr(self, name), error=functools.partial(ConfigError, setting=name))
        self.model(1)  # ModelConfig checks the cell, the dropout and the sizes
        optimizer: OptimizerName = _choice("optimizer", self.optimizer or "adam", OPTIMIZERS)
        _choice("lr_schedule", self.lr_schedule, SCHEDULES)
        _choice("precision", self.precision, tuple(COMPUTE_DTYPES))
        clip_mode: ClipMode = _choice(
            "clip_mode", self.clip_mode or ("value" if optimizer == "adagrad" else "global_norm"), CLIP_MODES
        )
        learning_rate = DEFAULT_LEARNING_RATES[optimizer] if self.learning_rate is None else self.learning_rate
        if not (isinstance(learning_rate, (int, float)) and math.isfinite(learning_rate) and learning_rate > 0):
            raise ConfigError(f"learning_rate must be a positive number, got {learning_rate!r}", "learning_rate")
        if not (math.isfinite(self.clip) and self.clip >= 0):
            raise ConfigError(f"clip must be >= 0 (0: no clipping), got {self.clip!r}", "clip")
        if self.time_budget is not None and not (
            isinstance(self.time_budget, (int, float)) and math.isfinite(self.time_budget) and self.time_budget > 0
        ):
            raise ConfigError(
                f"time_budget must be a positive number of minutes, got {self.time_budget!r}", "time_budget"
            )
        if self.time_budget is not None and self.decay_steps is not None:
            raise ConfigError(
                "decay_steps sets a step-count schedule; with a time budget the schedule follows the budget",
                "decay_steps",
            )
        decay_steps: int | None = (
            self.steps
            if self.decay_steps is None
            else positive_int(
                "decay_steps", self.decay_steps, error=functools.partial(ConfigError, setting="decay_steps")
            )
        )
        if self.time_budget is not None:
            decay_steps = None
        if self.data is None and self.corpus not in CORPORA:
            raise DataError(f"unknown corpus {self.corpus!r}; choose one of: {', '.join(sorted(CORPORA))}")
        return dataclasses.replace(
            self, optimizer=optimizer, clip_mode=clip_mode, learning_rate=float(learning_rate), decay_steps=decay_steps
        )

    def model(self, vocab_size: int) -> ModelConfig:
        """The model's shape for a vocabulary of ``vocab_size`` (``layers`` and ``dropout`` filled in as by
        ``resolved``); ``ConfigError`` for an impossible shape."""
        layers, dropout, _ = self._filled_defaults()
        return ModelConfig(
            vocab_size,
            cell=self.cell,
            hidden_size=self.hidden_size,
            layers=layers,
            embed_size=self.embed_size,
            dropout=dropout,
        )

    @property
    def follows_budget(self) -> bool:
        """Whether the learning rate is set from the time spent (a decaying schedule under a time budget)."""
        return self.time_budget is not None and self.lr_schedule != "constant"

    def learning_rate_at(self, progress: float) -> float:
        """The learning rate after ``progress`` (0 to 1) of the run: cosine from ``learning_rate`` down to
        ``COSINE_FLOOR`` times it, or constant."""
        assert self.learning_rate is not None, "learning_rate_at needs a resolved() config"
        if self.lr_schedule == "constant":
            return self.learning_rate
        p = min(max(progress, 0.0), 1.0)
        return self.learning_rate * (COSINE_FLOOR + (1 - COSINE_FLOOR) * 0.5 * (1 + math.cos(math.pi * p)))

    @property
    def compute_dtype(self) -> jnp.dtype | None:
        """The ``compute_dtype`` of ``precision`` (``None``: the parameters' float32)."""
        return COMPUTE_DTYPES[self.precision]

    @property
    def optimizer_settings(self) -> OptimizerSettings:
        """What defines the optimiser of a ``resolved()`` config, and nothing else."""
        assert (
            self.optimizer is not None
            and self.clip_mode is not None
            and self.learning_rate is not None
            and self.lr_schedule is not None
        ), "optimizer_settings needs a resolved() config"
        return OptimizerSettings(
            self.optimizer,
            self.learning_rate,
            self.lr_schedule,
            self.decay_steps if self.lr_schedule == "cosine" and not self.follows_budget else None,
            self.follows_budget,
            self.clip,
            self.clip_mode,
        )

    def make_optimizer(self) -> optax.GradientTransformation:
        """The optax optimiser of a ``resolved()`` config (see ``OptimizerSettings.make``)."""
        return self.optimizer_settings.make()

    def plan(self, vocab_size: int) -> Plan:
        """Everything a run derives from this config for a vocabulary of ``vocab_size``, computed at once: the
        ``resolved()`` config, the model's shape, the optimiser and the compute dtype (see ``Plan``)."""
        config = self.resolved()
        settings = config.optimizer_settings
        return Plan(config, config.model(vocab_size), settings, _optimizer(settings), config.compute_dtype)

    @classmethod
    def from_saved(cls, saved: dict[str, Any]) -> RunConfig:
        """The configuration stored in a checkpoint (fields this version does not know are ignored)."""
        fields = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in saved.items() if k in fields}).resolved()


@dataclass(frozen=True)
class OptimizerSettings:
    """The settings that define a run's optimiser and nothing else: runs that share them (a resumed run, the seeds
    of an experiment) share one compiled training step. ``decay_steps`` is a step-count cosine's length (else
    ``None``); under ``follows_budget`` the learning rate is a hyperparameter set from the time spent."""

    name: OptimizerName
    learning_rate: float
    lr_schedule: LRSchedule
    decay_steps: int | None
    follows_budget: bool
    clip: float
    clip_mode: ClipMode

    def make(self) -> optax.GradientTransformation:
        """The optax optimiser. A step-count cosine is an optax schedule over ``decay_steps``; under a time budget
        the learning rate is a hyperparameter (``optax.inject_hyperparams``) that ``fit`` sets from
        ``RunConfig.learning_rate_at(time spent / budget)`` before each compiled call."""
        import optax

        from jaxrnn.optim import make_optimizer

        if self.follows_budget:
            return optax.inject_hyperparams(make_optimizer, static_args=("name", "clip", "clip_mode"))(
                name=self.name, learning_rate=self.learning_rate, clip=self.clip or None, clip_mode=self.clip_mode
            )
        lr: float | optax.Schedule = self.learning_rate
        if self.decay_steps is not None:
            lr = optax.cosine_decay_schedule(self.learning_rate, self.decay_steps, alpha=COSINE_FLOOR)
        return make_optimizer(self.name, lr, clip=self.clip or None, clip_mode=self.clip_mode)


class Plan(NamedTuple):
    """What a training run derives from its ``RunConfig`` (``RunConfig.plan(V)``), so that the trainer reads fields
    instead of asking the config for each value in turn.

    Attributes:
      config: the ``resolved()`` config.
      model: its ``ModelConfig`` for the vocabulary.
      optimizer_settings: its ``OptimizerSettings``.
      optimizer: the optax optimiser they make; equal settings give the same object within a process, so that
        runs sharing them (a resumed run, the seeds of an experiment) share one compiled training step.
      compute_dtype: the dtype the weight matrices multiply in (``None``: the parameters' float32).
    """

    config: RunConfig
    model: ModelConfig
    optimizer_settings: OptimizerSettings
    optimizer: optax.GradientTransformation
    compute_dtype: jnp.dtype | None


@functools.lru_cache(maxsize=8)
def _optimizer(settings: OptimizerSettings) -> optax.GradientTransformation:
    """``settings.make()``, one object per settings (``fit`` caches its compiled step by the optimiser)."""
    return settings.make()


_Choice = TypeVar("_Choice", bound=str)


def _choice(setting: str, value: object, choices: tuple[_Choice, ...]) -> _Choice:
    if value not in choices:
        raise ConfigError(f"{setting}: unknown value {value!r}; choose one of: {', '.join(choices)}", setting)
    return choices[choices.index(value)]  # value itself, typed as one of the choices


RESUME_MAY_CHANGE = ("corpus", "data", "steps", "time_budget", "eval_every", "steps_per_call", "keep", "sample_length")
"""Settings a resumed run may change; all others (model shape, batching, optimiser, seed) must match."""


def resume_config(config: RunConfig, explicit: set[str], saved: dict[str, Any]) -> RunConfig:
    """The configuration of a resumed run: the checkpoint's ``saved`` settings, with the ``RESUME_MAY_CHANGE``
    ones among ``explicit`` (the settings a user gave) taken from ``config``; any other explicit setting that
    contradicts the checkpoint is a ``ConfigError``."""
    for name in explicit - set(RESUME_MAY_CHANGE):
        value = getattr(config, name)
        if name in saved and value is not None and value != saved[name]:
            raise ConfigError(
                f"{name} {value} differs from the checkpoint's {saved[name]}; a resumed run keeps "
                "the model shape, batching, optimiser and seed",
                name,
            )
    changes = {name: getattr(config, name) for name in RESUME_MAY_CHANGE if name in explicit}
    if "data" in changes and "corpus" not in changes:
        changes["corpus"] = DEFAULT_CORPUS
    if "corpus" in changes and "data" not in changes:
        changes["data"] = None
    if "steps" in changes and "time_budget" not in changes:  # a step count given on resume replaces a budget
        changes["time_budget"] = None
    out = dataclasses.replace(RunConfig.from_saved(saved), **changes)
    if out.time_budget is not None:
        out = dataclasses.replace(out, decay_steps=None)
    schedule = saved.get("lr_schedule", "constant")
    if schedule != "constant" and (saved.get("time_budget") is None) != (out.time_budget is None):
        was, now = (
            ("a time budget", "a step count")
            if saved.get("time_budget") is not None
            else ("a step count", "a time budget")
        )
        setting = "steps" if "steps" in explicit and "time_budget" not in explicit else "time_budget"
        raise ConfigError(
            f"{setting}: the checkpoint's {schedule} schedule follows {was}; a resumed run cannot switch it to {now}",
            setting,
        )
    return out.resolved()


def restore_target(meta: dict[str, Any]) -> TrainState:
    """A training state of the shapes and dtypes that checkpoint metadata ``meta`` (format 2) describes, as NumPy
    zeros: reading a checkpoint into it reads every array whole, on the host."""
    import jax
    import numpy as np

    from jaxrnn.lm.model import init_train_state

    config = RunConfig.from_saved(meta["config"])
    vocab_size = len(meta["vocabulary"])
    abstract = jax.eval_shape(
        lambda: init_train_state(
            jax.random.PRNGKey(0), config.model(vocab_size), config.make_optimizer(), config.batch_size
        )
    )
    return jax.tree.map(lambda s: np.zeros(s.shape, s.dtype), abstract)
