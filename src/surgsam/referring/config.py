"""Typed configuration of the referring parts (text projections, CSTMamba fusion) and presets.

The SAM 2 network keeps its own :class:`~surgsam.modeling.presets.SAM2Config`; this config
only describes what ReSurgSAM2 adds. Widths tied to SAM (``d_model``) are taken from it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from typing import Any


@dataclass(frozen=True)
class ReferringConfig:
    """ReSurgSAM2's referring branch; defaults are its released (stage-2) settings."""

    name: str = "resurgsam2"
    # text side
    text_encoder: str = "clip"  # default encoder name for build_text_encoder
    text_dim: int = 512  # width of the encoder's token embeddings (CLIP ViT-B/32: 512)
    proj_hidden: int = 2048  # token projection text_dim -> proj_hidden -> proj_hidden -> d_model
    proj_dropout: float = 0.1
    sentence_hidden: int | None = None  # sentence MLP d_model -> 4*d_model (None) -> ... -> d_model
    sentence_dropout: float = 0.2
    # multiplies the encoder's pooled sentence embedding before the token projection. CLIP's
    # pooled state is O(1) per dimension; MiniLM's is L2-normalised (RMS 1/sqrt(384) ~ 0.05,
    # against ~0.4 for its token states), small next to the projection's bias, so MiniLM
    # presets use sqrt(384). Older checkpoints (no such field) load with 1.
    pooled_scale: float = 1.0
    # CSTMamba fusion
    fusion_depth: int = 2
    fusion_heads: int = 8
    fusion_mlp_dim: int = 2048
    fusion_dropout: float = 0.1
    attn_downsample_rate: int = 2
    mamba_per_block: int = 2
    d_state: int = 16
    d_conv: int = 4
    expand: int = 2
    dt_rank: int | None = None  # ceil(d_model / 16) when None
    mlp_ratio: int = 4
    dwconv_kernel: int = 7
    drop_path_rate: float = 0.2
    num_frames: int = 3  # current + 2 previous frames
    # detection-stage decoding (SAM 2.1 configs: multimask output with no clicks)
    multimask_output: bool = True

    def __post_init__(self) -> None:
        positive = (
            "text_dim",
            "proj_hidden",
            "fusion_depth",
            "fusion_heads",
            "fusion_mlp_dim",
            "d_state",
            "d_conv",
            "expand",
            "num_frames",
        )
        for f in positive:
            if getattr(self, f) < 1:
                raise ValueError(f"{f} must be >= 1, got {getattr(self, f)}")
        if not self.pooled_scale > 0:
            raise ValueError(f"pooled_scale must be > 0, got {self.pooled_scale}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "ReferringConfig":
        """Inverse of :meth:`to_dict`; unknown keys are an error."""
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown ReferringConfig fields: {sorted(unknown)}")
        return cls(**d)


def pooled_scale_for(text_encoder: str) -> float:
    """The :attr:`ReferringConfig.pooled_scale` for a text encoder name: sqrt(384) for MiniLM,
    whose sentence embedding is unit-norm, 1 for the others (O(1) per dimension already)."""
    return 384**0.5 if text_encoder == "minilm" else 1.0


_PRESETS: dict[str, ReferringConfig] = {
    # ReSurgSAM2 as released: CLIP ViT-B/32 text tower.
    "resurgsam2": ReferringConfig(),
    # The same network on the embedded all-MiniLM-L6-v2 encoder (384-wide tokens): trainable
    # offline; its token_projection differs in shape from the released checkpoints.
    "resurgsam2_minilm": ReferringConfig(
        name="resurgsam2_minilm", text_encoder="minilm", text_dim=384, pooled_scale=pooled_scale_for("minilm")
    ),
    # A few-hundred-KB referring branch for tests (pair it with the SAM "nano" preset).
    "tiny": ReferringConfig(
        name="tiny",
        text_encoder="clip-tiny",
        text_dim=32,
        proj_hidden=64,
        sentence_hidden=64,
        fusion_heads=4,
        fusion_mlp_dim=128,
        d_state=4,
        dt_rank=4,
        mlp_ratio=2,
        dwconv_kernel=3,
    ),
}


def list_referring_presets() -> list[str]:
    return sorted(_PRESETS)


def get_referring_preset(name: str, **overrides: Any) -> ReferringConfig:
    """A named referring config, with any field overridden."""
    if name not in _PRESETS:
        raise KeyError(f"unknown referring preset {name!r}; known: {', '.join(sorted(_PRESETS))}")
    return replace(_PRESETS[name], **overrides) if overrides else _PRESETS[name]


__all__ = ["ReferringConfig", "get_referring_preset", "list_referring_presets", "pooled_scale_for"]
