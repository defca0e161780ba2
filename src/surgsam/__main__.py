"""``python -m surgsam``: the ``surgsam`` command line."""

from .cli import run

raise SystemExit(run())
