"""``python -m experiments.truncated_bptt``: the command line."""

import sys

from experiments import common
from experiments.truncated_bptt import PRESETS, main
from experiments.truncated_bptt.figure import make_figure

sys.exit(common.cli("truncated_bptt", PRESETS, main, make_figure))
