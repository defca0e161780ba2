"""surgsam: real-time segmentation of surgical video with SAM 2, Surgical SAM 2 (efficient
frame pruning) and ReSurgSAM2 (text-referred segmentation).

The public names below are imported on first use, so ``import surgsam`` stays cheap (it does
not import torch)::

    import surgsam
    model = surgsam.build_model("sam2.1_hiera_s", image_size=512, checkpoint="sam2.1_hiera_small.pt")
    pred = surgsam.ImagePredictor(model)
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._lazy import lazy_exports

# public name -> submodule (imported on first use, as in every subpackage)
_EXPORTS = {
    "__version__": "._version",
    "build_model": ".modeling",
    "list_presets": ".modeling",
    "get_preset": ".modeling",
    "CheckpointError": ".modeling",
    "ImagePredictor": ".predictor",
    "ImagePrediction": ".predictor",
    "VideoSegmenter": ".engine",
    "segment_video": ".engine",
    "FrameResult": ".engine",
    "Prompt": ".engine",
    "ReferringSegmenter": ".referring",
}
if TYPE_CHECKING:  # the same names, for type checkers and editors (tests/test_lazy_exports.py)
    from ._version import __version__ as __version__
    from .modeling import (
        build_model as build_model,
        list_presets as list_presets,
        get_preset as get_preset,
        CheckpointError as CheckpointError,
    )
    from .predictor import ImagePredictor as ImagePredictor, ImagePrediction as ImagePrediction
    from .engine import (
        VideoSegmenter as VideoSegmenter,
        segment_video as segment_video,
        FrameResult as FrameResult,
        Prompt as Prompt,
    )
    from .referring import ReferringSegmenter as ReferringSegmenter

__all__ = list(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
