"""jaxrnn: the lecture's vanilla RNN and LSTM as pure JAX step functions.

Shapes: ``T`` time, ``B`` batch (written ``...``: any leading axes), ``D`` input, ``H`` hidden, ``V`` vocabulary.
Parameters use the lecture's names and orientation (``W @ x``); see ``jaxrnn.cells``.
"""
from jaxrnn.cells import (
    LSTM_GATE_ORDER,
    LSTMCarry,
    LSTMParams,
    RNNParams,
    embed,
    init_lstm,
    init_rnn,
    initial_carry,
    lstm_cell,
    lstm_gates,
    lstm_memory,
    lstm_step,
    readout,
    register_step,
    rnn_cell,
    rnn_step,
    step_for,
)
from jaxrnn.losses import sequence_loss, softmax_cross_entropy
from jaxrnn.optim import lecture_optimizer, make_optimizer, scale_by_lecture_adagrad
from jaxrnn.sampling import next_token, sample
from jaxrnn.training import make_train_step
from jaxrnn.unrolling import unroll

# issue 6: GRU, masked/bidirectional unrolls, stacks (jaxrnn.convert, jaxrnn.parallel and jaxrnn.flax_modules
# are imported on their own: the last pulls in Flax)
from jaxrnn.cells import GRU_GATE_ORDER, GRUParams, gru_cell, gru_step, init_gru, register_initial_carry
from jaxrnn.stack import StackParams, init_stack, stack_step
from jaxrnn.unrolling import length_mask, mask_step, unroll_bidirectional

# issue 4: gradient flow through time (Jacobian norms by lag, the LSTM's cell path)
from jaxrnn import gradflow
from jaxrnn.gradflow import lag_norms, scaled_orthogonal

# issue 3: the character-level language model (jaxrnn.cli, jaxrnn.checkpoint and jaxrnn.metrics are imported on
# their own: they pull in orbax, tqdm and matplotlib)
from jaxrnn.lm import (CharLMParams, ModelConfig, TrainState, char_lm_loss, char_lm_step, evaluate, init_char_lm,
                       init_train_state, make_train_chunks, make_update)
from jaxrnn.streams import Streams

# issue 5: the fast training path (hoisted input projection, manual-BPTT custom VJP) and segment checkpointing
from jaxrnn.fast import fast_sequence_loss, make_fast_train_loop, make_fast_train_step, segmented_sequence_loss

__version__ = "0.1.0"

__all__ = [
    "LSTM_GATE_ORDER", "LSTMCarry", "LSTMParams", "RNNParams", "embed", "init_lstm", "init_rnn",
    "initial_carry", "lecture_optimizer", "lstm_cell", "lstm_gates", "lstm_memory", "lstm_step", "make_optimizer",
    "make_train_step",
    "next_token", "readout", "register_step", "rnn_cell", "rnn_step", "sample", "scale_by_lecture_adagrad",
    "sequence_loss", "softmax_cross_entropy", "step_for", "unroll",
    "GRU_GATE_ORDER", "GRUParams", "gru_cell", "gru_step", "init_gru", "register_initial_carry", "StackParams",
    "init_stack", "stack_step", "length_mask", "mask_step", "unroll_bidirectional",
    "gradflow", "lag_norms", "scaled_orthogonal",
    "CharLMParams", "ModelConfig", "Streams", "TrainState", "char_lm_loss", "char_lm_step", "evaluate",
    "init_char_lm", "init_train_state", "make_train_chunks", "make_update",
    "fast_sequence_loss", "make_fast_train_loop", "make_fast_train_step", "segmented_sequence_loss",
]
