"""The character-level language model behind ``jaxrnn train`` and ``jaxrnn sample``.

``model``: the stack over token ids, its loss, the K-updates-per-call step, evaluation; ``config``: the settings
of a run and what a resumed run may change; ``loop``: the training loop (``run_training``); ``generate``:
loading a checkpoint and sampling text.
"""

from jaxrnn.lm.config import DEFAULT_LEARNING_RATES, RESUME_MAY_CHANGE, SCHEDULES, RunConfig, resume_config
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
