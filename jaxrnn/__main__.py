"""``python -m jaxrnn train ...`` / ``python -m jaxrnn sample ...``: the same as the ``jaxrnn`` console script."""

from jaxrnn.cli import console

console()
