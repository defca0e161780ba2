"""surgsam: real-time segmentation of surgical video with SAM 2, Surgical SAM 2 (efficient
frame pruning) and ReSurgSAM2 (text-referred segmentation).

The public names below are imported on first use, so ``import surgsam`` stays cheap (it does
not import torch)::

    import surgsam
    model = surgsam.build_model("sam2.1_hiera_s", image_size=512, checkpoint="sam2.1_hiera_small.pt")
    pred = surgsam.ImagePredictor(model)
"""

from __future__ import annotations

import importlib
from typing import Any

# public name -> module that defines it
_LAZY = {
    "build_model": "surgsam.modeling",
    "list_presets": "surgsam.modeling",
    "get_preset": "surgsam.modeling",
    "CheckpointError": "surgsam.modeling",
    "ImagePredictor": "surgsam.predictor",
    "ImagePrediction": "surgsam.predictor",
    "VideoSegmenter": "surgsam.engine",
    "segment_video": "surgsam.engine",
    "FrameResult": "surgsam.engine",
    "Prompt": "surgsam.engine",
    "ReferringSegmenter": "surgsam.referring",
}


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("surgsam")
    except PackageNotFoundError:  # a source tree that is not installed
        return "0.0.0+unknown"


def __getattr__(name: str) -> Any:
    if name == "__version__":  # read from the package metadata on first use (it costs ~30 ms)
        globals()["__version__"] = v = _version()
        return v
    if name == "__all__":  # computed for `from surgsam import *`: only names this installation provides
        globals()["__all__"] = names = ["__version__"] + [n for n in _LAZY if _available(n)]
        return names
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'surgsam' has no attribute {name!r}")
    try:
        mod = importlib.import_module(module)
    except ModuleNotFoundError as e:
        if e.name and (module == e.name or module.startswith(e.name + ".")):
            raise AttributeError(
                f"surgsam.{name} is not available: {module} is not part of this installation yet"
            ) from e
        raise
    try:
        value = getattr(mod, name)
    except AttributeError:
        raise AttributeError(f"surgsam.{name} is not available: {module} does not define it (yet)") from None
    globals()[name] = value  # later lookups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


def _available(name: str) -> bool:
    try:
        __getattr__(name)
    except AttributeError:
        return False
    return True
