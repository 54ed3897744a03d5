"""``python -m experiments.seq2seq``: the command line."""

import sys

from experiments import common
from experiments.seq2seq import PRESETS, main
from experiments.seq2seq.figure import make_figure

sys.exit(common.cli("seq2seq", PRESETS, main, make_figure))
