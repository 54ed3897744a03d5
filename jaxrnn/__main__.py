"""``python -m jaxrnn train ...`` / ``python -m jaxrnn sample ...``: the same as the ``jaxrnn`` console script."""

import sys

from jaxrnn.cli import main

sys.exit(main())
