"""``python -m experiments.brackets``: the command line."""

import sys

from experiments import common
from experiments.brackets import PRESETS, main
from experiments.brackets.figure import make_figure

sys.exit(common.cli("brackets", PRESETS, main, make_figure))
