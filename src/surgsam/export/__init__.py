"""Export to ONNX and run the exported graphs with onnxruntime (``surgsam export``)."""

from .onnx import OnnxManifest, OnnxModel, export_onnx

__all__ = ["OnnxManifest", "OnnxModel", "export_onnx"]
