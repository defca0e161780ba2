"""Lazy imports of the optional video dependencies (the ``video`` extra)."""

from __future__ import annotations

import importlib
from types import ModuleType

_VIDEO_EXTRA = 'pip install "surgsam[video]"'


def _require(module: str, label: str, purpose: str) -> ModuleType:
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        # Installed but broken (e.g. an OpenCV wheel built for numpy 1 under numpy 2) reads
        # differently from absent, so say which.
        missing = isinstance(exc, ModuleNotFoundError) or exc.msg.startswith("import of")
        cause = "" if missing else f" (it is installed but failed to import: {exc})"
        raise ImportError(f"{label} is needed for {purpose}: {_VIDEO_EXTRA}{cause}") from exc


def require_av(purpose: str = "reading and writing video files") -> ModuleType:
    """Import PyAV, or raise an ImportError that names the extra to install."""
    return _require("av", "PyAV (`av`)", purpose)


def require_cv2(purpose: str = "cameras and live streams") -> ModuleType:
    """Import OpenCV, or raise an ImportError that names the extra to install."""
    return _require("cv2", "OpenCV (`cv2`, opencv-python-headless)", purpose)
