"""``python -m surgsam.eval``: the ``eval`` subcommand on its own (handy under ``torchrun -m``)."""

from .cli import main

raise SystemExit(main())
