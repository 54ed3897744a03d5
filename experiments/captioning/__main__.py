"""``python -m experiments.captioning``: the command line (scikit-learn is checked before any work)."""

import importlib.util
import sys

from experiments import common
from experiments.captioning import NEEDS_SKLEARN, PRESETS, main
from experiments.captioning.figure import make_figure

if importlib.util.find_spec("sklearn") is None:  # one line, exit status 2
    print(NEEDS_SKLEARN, file=sys.stderr)
    sys.exit(2)
sys.exit(common.cli("captioning", PRESETS, main, make_figure))
