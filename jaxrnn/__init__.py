"""jaxrnn: the lecture's vanilla RNN, LSTM and GRU as pure JAX step functions.

Shapes: ``T`` time, ``B`` batch (written ``...``: any leading axes), ``D`` input, ``H`` hidden, ``V`` vocabulary.
Parameters use the lecture's names and orientation (``W @ x``); see ``jaxrnn.cells``. The language model behind
the command line is ``jaxrnn.lm``; ``jaxrnn.convert``, ``jaxrnn.flax_modules`` and ``jaxrnn.parallel`` are
imported on their own.
"""

from jaxrnn import registry

# Cells: parameters, initialisers and step functions
from jaxrnn.cells import (
    GRU_GATE_ORDER,
    LSTM_GATE_ORDER,
    GRUParams,
    LSTMCarry,
    LSTMParams,
    RNNParams,
    embed,
    gru_cell,
    gru_step,
    init_gru,
    init_lstm,
    init_rnn,
    lstm_cell,
    lstm_gates,
    lstm_memory,
    lstm_step,
    readout,
    rnn_cell,
    rnn_step,
)

# Which step and zero state go with which parameters; cells of your own
from jaxrnn._checks import checkify_token_ids
from jaxrnn.registry import CellType, cell_type, initial_carry, register_cell, step_for

# The multi-layer model
from jaxrnn.stack import StackParams, init_stack, stack_step

# Unrolling over time: scan, Python loop, or the fused recurrence; masks and both directions
from jaxrnn.unrolling import choose_method, length_mask, mask_step, unroll, unroll_bidirectional

# Losses, optimisers, the training step
from jaxrnn.losses import sequence_loss, softmax_cross_entropy
from jaxrnn.optim import lecture_optimizer, make_optimizer, scale_by_lecture_adagrad
from jaxrnn.training import make_train_step

# Sampling
from jaxrnn.sampling import next_token, sample

# Gradient flow through time, and the independent NumPy reference
from jaxrnn import gradflow, precision, reference
from jaxrnn.gradflow import lag_norms, scaled_orthogonal

__version__ = "0.4.0"

__all__ = [
    "choose_method",
    "GRU_GATE_ORDER",
    "LSTM_GATE_ORDER",
    "GRUParams",
    "LSTMCarry",
    "LSTMParams",
    "RNNParams",
    "embed",
    "gru_cell",
    "gru_step",
    "init_gru",
    "init_lstm",
    "init_rnn",
    "lstm_cell",
    "lstm_gates",
    "lstm_memory",
    "lstm_step",
    "readout",
    "rnn_cell",
    "rnn_step",
    "CellType",
    "cell_type",
    "initial_carry",
    "register_cell",
    "checkify_token_ids",
    "step_for",
    "StackParams",
    "init_stack",
    "stack_step",
    "length_mask",
    "mask_step",
    "unroll",
    "unroll_bidirectional",
    "sequence_loss",
    "softmax_cross_entropy",
    "lecture_optimizer",
    "make_optimizer",
    "scale_by_lecture_adagrad",
    "make_train_step",
    "next_token",
    "sample",
    "gradflow",
    "lag_norms",
    "precision",
    "reference",
    "registry",
    "scaled_orthogonal",
]
