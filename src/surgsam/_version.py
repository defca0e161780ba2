"""``surgsam.__version__``, read from the installed package's metadata (imported on first use:
reading it costs ~30 ms)."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version


def _version() -> str:
    try:
        return version("surgsam")
    except PackageNotFoundError:  # a source tree that is not installed
        return "0.0.0+unknown"


__version__ = _version()
