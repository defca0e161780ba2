"""Imports of optional dependencies: one helper that names the extra to install.

Every optional package (PyAV, OpenCV, Gradio, matplotlib, pycocotools, transformers, ONNX,
safetensors) is imported where it is used, through :func:`require`, so importing surgsam never
pulls it in and a missing one reads the same everywhere::

    ImportError: PyAV (`av`) is needed for writing video: pip install "surgsam[video]"
"""

from __future__ import annotations

import importlib
from types import ModuleType


def install_hint(extra: str) -> str:
    """The command that installs ``extra``: ``pip install "surgsam[extra]"``."""
    return f'pip install "surgsam[{extra}]"'


def require(
    module: str, extra: str, purpose: str, label: str | None = None, error: type[ImportError] = ImportError
) -> ModuleType:
    """Import ``module`` (e.g. ``"pycocotools.mask"``), or raise ``error`` saying that ``label``
    (default: the module's name) is needed for ``purpose`` and which extra installs it. A package
    that is installed but fails to import (e.g. a wheel built for another numpy) says so."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        missing = isinstance(exc, ModuleNotFoundError) or str(exc.msg).startswith("import of")
        cause = "" if missing else f" (it is installed but failed to import: {exc})"
        raise error(f"{label or module} is needed for {purpose}: {install_hint(extra)}{cause}") from exc


def require_av(purpose: str = "reading and writing video files") -> ModuleType:
    """PyAV (the ``video`` extra)."""
    return require("av", "video", purpose, "PyAV (`av`)")


def require_cv2(purpose: str = "cameras and live streams") -> ModuleType:
    """OpenCV (the ``video`` extra)."""
    return require("cv2", "video", purpose, "OpenCV (`cv2`, opencv-python-headless)")


def require_gradio() -> ModuleType:
    """Gradio, the web app's UI toolkit (the ``demo`` extra)."""
    return require("gradio", "demo", "the web app (surgsam app)", "Gradio")


def require_matplotlib(purpose: str = "evaluation plots (--plots)") -> ModuleType:
    """``matplotlib.figure`` (the ``plots`` extra)."""
    return require("matplotlib.figure", "plots", purpose, "matplotlib")


def require_pycocotools(purpose: str = "COCO RLE masks (--coco)") -> ModuleType:
    """``pycocotools.mask`` (the ``coco`` extra)."""
    return require("pycocotools.mask", "coco", purpose, "pycocotools")


__all__ = [
    "install_hint",
    "require",
    "require_av",
    "require_cv2",
    "require_gradio",
    "require_matplotlib",
    "require_pycocotools",
]
