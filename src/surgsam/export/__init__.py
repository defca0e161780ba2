"""Export to ONNX and run the exported graphs with onnxruntime (``surgsam export``)."""

from __future__ import annotations

from .._lazy import lazy_exports

# public name -> submodule (imported on first use, so importing the package does not load torch)
_EXPORTS = {
    "OnnxManifest": ".onnx", "OnnxManifestError": ".onnx", "OnnxModel": ".onnx", "export_onnx": ".onnx",
    "read_manifest": ".onnx",
}
__all__ = list(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
