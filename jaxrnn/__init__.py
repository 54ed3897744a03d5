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

__version__ = "0.1.0"

__all__ = [
    "LSTM_GATE_ORDER", "LSTMCarry", "LSTMParams", "RNNParams", "embed", "init_lstm", "init_rnn",
    "initial_carry", "lecture_optimizer", "lstm_cell", "lstm_step", "make_optimizer", "make_train_step",
    "next_token", "readout", "register_step", "rnn_cell", "rnn_step", "sample", "scale_by_lecture_adagrad",
    "sequence_loss", "softmax_cross_entropy", "step_for", "unroll",
]
