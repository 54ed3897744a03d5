"""``python -m experiments.long_range``: the command line; the JSON is written after every run as well (a late stop
keeps the finished runs)."""

import sys

from experiments import common
from experiments.long_range import PRESETS, main
from experiments.long_range.figure import make_figure

sys.exit(common.cli("long_range", PRESETS, main, make_figure))
