"""Lazy imports of the app's optional dependencies, with an error that names the extra."""

from __future__ import annotations

import importlib
from types import ModuleType

DEMO_EXTRA = "pip install 'surgsam[demo]'"


def _require(module: str, label: str, purpose: str) -> ModuleType:
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ImportError(f"{label} is needed for {purpose}: {DEMO_EXTRA}") from exc


def require_gradio() -> ModuleType:
    """Import Gradio (the web app's UI toolkit)."""
    return _require("gradio", "Gradio", "the web app (surgsam app)")


def require_av() -> ModuleType:
    """Import PyAV (reading uploads, writing the overlay video)."""
    return _require("av", "PyAV (`av`)", "reading and writing video in the app")


def require_cv2(purpose: str = "live mode (surgsam live)") -> ModuleType:
    """Import OpenCV (cameras, streams, the live window)."""
    return _require("cv2", "OpenCV (`cv2`)", purpose)
