"""``python -m experiments.long_range``: the command line. ``--preset paper`` writes ``long_range_paper.json``/``.png``,
and its JSON after every run as well (a late stop keeps the finished runs)."""

import sys

from experiments import common
from experiments.long_range import PRESETS, main
from experiments.long_range.figure import make_figure

sys.exit(common.cli("long_range", PRESETS, main, make_figure, own_file=("paper",)))
