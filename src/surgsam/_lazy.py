"""Lazy public names for packages whose modules import torch.

A package lists ``{public name: submodule}`` and gets a module ``__getattr__``/``__dir__``
(PEP 562), so ``import surgsam.engine`` (or the CLI parser, which imports ``surgsam.engine.cli``)
stays cheap and ``from surgsam.engine import VideoSegmenter`` imports only what it needs.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any


def lazy_exports(package: str, exports: dict[str, str]) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``(__getattr__, __dir__)`` for ``package`` whose name ``n`` lives in ``package + exports[n]``."""
    namespace = importlib.import_module(package).__dict__

    def __getattr__(name: str) -> Any:
        module = exports.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module, package), name)
        namespace[name] = value  # later lookups skip __getattr__
        return value

    def __dir__() -> list[str]:
        return sorted(set(namespace) | set(exports))

    return __getattr__, __dir__
