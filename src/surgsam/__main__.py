"""``python -m surgsam``: the ``surgsam`` command line."""

from .cli import main

raise SystemExit(main())
