"""Test setup: import ``surgsam`` from ``src`` and the ``oracle`` helpers from ``tests``."""

import sys
from pathlib import Path

_ROOT = Path(__file__).resolve().parent.parent
for _p in (_ROOT / "src", _ROOT / "tests"):
    if str(_p) not in sys.path:
        sys.path.insert(0, str(_p))
