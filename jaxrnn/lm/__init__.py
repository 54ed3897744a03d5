"""The character-level language model behind ``jaxrnn train`` and ``jaxrnn sample``.

``model``: the stack over token ids, its loss, the K-updates-per-call step, evaluation; ``config``: the settings
of a run and what a resumed run may change; ``fitting``: training as a function, in memory (``fit``); ``loop``:
a training run on disk, the shell around ``fit`` (``run_training``); ``generate``: loading a checkpoint and
sampling text.
"""

from jaxrnn.lm.config import DEFAULT_LEARNING_RATES, RESUME_MAY_CHANGE, SCHEDULES, RunConfig, resume_config
from jaxrnn.lm.fitting import FitResult, fit, initial_state, training_streams
from jaxrnn.lm.generate import generate_text, load_model
from jaxrnn.lm.loop import run_training
from jaxrnn.lm.model import (
    CELLS,
    ConfigError,
    ModelConfig,
    TrainState,
    evaluate,
    init_model,
    init_train_state,
    loss,
    make_train_chunks,
    place_batch,
    place_state,
    warm_up,
)

__all__ = [
    "DEFAULT_LEARNING_RATES",
    "RESUME_MAY_CHANGE",
    "SCHEDULES",
    "RunConfig",
    "resume_config",
    "FitResult",
    "fit",
    "initial_state",
    "training_streams",
    "generate_text",
    "load_model",
    "run_training",
    "CELLS",
    "ConfigError",
    "ModelConfig",
    "TrainState",
    "evaluate",
    "init_model",
    "init_train_state",
    "loss",
    "make_train_chunks",
    "place_batch",
    "place_state",
    "warm_up",
]
