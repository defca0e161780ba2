"""Export to ONNX (``surgsam export``) and run the exported graphs with onnxruntime alone:
:class:`OnnxModel` (the graphs) and :class:`OnnxVideoSegmenter` (a whole video, no PyTorch;
``python -m surgsam.export.run``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._lazy import lazy_exports

# public name -> submodule (imported on first use, so importing the package does not load torch)
# (.runtime and .runner import no torch; .onnx and .graphs do)
_EXPORTS = {
    "OnnxManifest": ".runtime",
    "OnnxManifestError": ".runtime",
    "OnnxModel": ".runtime",
    "read_manifest": ".runtime",
    "HostConstants": ".runtime",
    "OnnxVideoSegmenter": ".runner",
    "OnnxFrameResult": ".runner",
    "export_onnx": ".onnx",
}
if TYPE_CHECKING:  # the same names, for type checkers and editors (tests/test_lazy_exports.py)
    from .runtime import (
        OnnxManifest as OnnxManifest,
        OnnxManifestError as OnnxManifestError,
        OnnxModel as OnnxModel,
        read_manifest as read_manifest,
        HostConstants as HostConstants,
    )
    from .runner import OnnxVideoSegmenter as OnnxVideoSegmenter, OnnxFrameResult as OnnxFrameResult
    from .onnx import export_onnx as export_onnx

__all__ = list(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
