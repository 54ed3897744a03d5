"""``python -m experiments.arjovsky2016``: the command line."""

import sys

from experiments import common
from experiments.arjovsky2016 import PRESETS, main
from experiments.arjovsky2016.figure import make_figure

sys.exit(common.cli("arjovsky2016", PRESETS, main, make_figure))
