"""``python -m experiments.vanishing_gradients``: the command line."""

import sys

from experiments import common
from experiments.vanishing_gradients import PRESETS, main
from experiments.vanishing_gradients.figure import make_figure

sys.exit(common.cli("vanishing_gradients", PRESETS, main, make_figure))
