"""The SAM 2 network: components, presets, strict checkpoint loading."""

from .build import build_model
from .checkpoint import CheckpointError, read_checkpoint, save_checkpoint
from .embedded import EMBEDDED_MODELS, embedded_path
from .presets import HieraConfig, SAM2Config, get_preset, list_presets
from .sam2 import FrameFeatures, MaskOutput, SAM2Model, SpatialMemory

__all__ = [
    "build_model",
    "CheckpointError",
    "read_checkpoint",
    "save_checkpoint",
    "HieraConfig",
    "SAM2Config",
    "get_preset",
    "list_presets",
    "EMBEDDED_MODELS",
    "embedded_path",
    "FrameFeatures",
    "MaskOutput",
    "SAM2Model",
    "SpatialMemory",
]
