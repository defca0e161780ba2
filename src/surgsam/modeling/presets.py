"""Typed configuration of the SAM 2 network and the registry of named presets.

A preset is a :class:`SAM2Config`; ``get_preset(name, image_size=...)`` returns a copy with the
image size set. Every field that changes a parameter shape or the numerics lives here, so a
saved checkpoint can carry its config and be rebuilt exactly.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Any


@dataclass(frozen=True)
class HieraConfig:
    """Hiera trunk (hierarchical windowed ViT) of the image encoder."""

    embed_dim: int = 96
    num_heads: int = 1
    stages: tuple[int, ...] = (1, 2, 7, 2)
    global_att_blocks: tuple[int, ...] = (5, 7, 9)
    window_pos_embed_bkg_spatial_size: tuple[int, int] = (7, 7)
    window_spec: tuple[int, ...] = (8, 4, 14, 7)
    q_pool: int = 3
    q_stride: tuple[int, int] = (2, 2)
    dim_mul: float = 2.0
    head_mul: float = 2.0
    drop_path_rate: float = 0.0

    @property
    def stage_dims(self) -> tuple[int, ...]:
        """Channel width of each stage's output, e.g. (96, 192, 384, 768)."""
        return tuple(int(self.embed_dim * self.dim_mul**i) for i in range(len(self.stages)))


@dataclass(frozen=True)
class SAM2Config:
    """The whole network. Defaults are SAM 2.1 as released by Meta."""

    name: str = "sam2.1_hiera_t"
    hiera: HieraConfig = field(default_factory=HieraConfig)
    image_size: int = 1024
    version: str = "2.1"  # "2" or "2.1": 2.1 adds no_obj_embed_spatial and signed obj-ptr tpos
    d_model: int = 256  # FPN / transformer width
    mem_dim: int = 64  # memory-encoder output channels
    backbone_stride: int = 16
    num_maskmem: int = 7  # 1 conditioning + 6 previous frames
    max_obj_ptrs_in_encoder: int = 16
    # memory attention
    mem_attn_layers: int = 4
    mem_attn_ffn: int = 2048
    mem_attn_dropout: float = 0.1
    rope_theta: float = 10000.0
    # memory encoder
    mem_fuser_layers: int = 2
    sigmoid_scale_for_mem_enc: float = 20.0
    sigmoid_bias_for_mem_enc: float = -10.0
    # mask decoder
    decoder_depth: int = 2
    decoder_mlp_dim: int = 2048
    decoder_heads: int = 8
    num_multimask_outputs: int = 3
    iou_head_depth: int = 3
    iou_head_hidden_dim: int = 256
    # behaviour flags of the released configs
    fpn_top_down_levels: tuple[int, ...] = (2, 3)
    no_obj_embed_spatial: bool = True
    add_tpos_enc_to_obj_ptrs: bool = True
    proj_tpos_enc_in_obj_ptrs: bool = True
    use_signed_tpos_enc_to_obj_ptrs: bool = True
    # decoder post-processing used by Meta's predictors (dynamic multimask via stability)
    dynamic_multimask_via_stability: bool = True
    dynamic_multimask_stability_delta: float = 0.05
    dynamic_multimask_stability_thresh: float = 0.98

    @property
    def feat_size(self) -> int:
        """Side of the top-level (stride-16) feature map: 64 at 1024 px, 32 at 512 px."""
        return self.image_size // self.backbone_stride

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "SAM2Config":
        """Inverse of :meth:`to_dict`; unknown keys are an error (a config from elsewhere)."""
        d = dict(d)
        hiera = d.pop("hiera", {})
        known = {f for f in cls.__dataclass_fields__}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown SAM2Config fields: {sorted(unknown)}")
        hiera = {k: tuple(v) if isinstance(v, list) else v for k, v in hiera.items()}
        d = {k: tuple(v) if isinstance(v, list) else v for k, v in d.items()}
        return cls(hiera=HieraConfig(**hiera), **d)


def _sam2_family(version: str) -> dict[str, SAM2Config]:
    v1 = version == "2"
    flags: dict[str, Any] = dict(
        version=version,
        no_obj_embed_spatial=not v1,
        proj_tpos_enc_in_obj_ptrs=not v1,
        use_signed_tpos_enc_to_obj_ptrs=not v1,
        add_tpos_enc_to_obj_ptrs=not v1,
    )
    prefix = "sam2_hiera" if v1 else "sam2.1_hiera"
    trunks = {
        "tiny": HieraConfig(96, 1, (1, 2, 7, 2), (5, 7, 9), (7, 7), (8, 4, 14, 7)),
        "small": HieraConfig(96, 1, (1, 2, 11, 2), (7, 10, 13), (7, 7), (8, 4, 14, 7)),
        "base_plus": HieraConfig(112, 2, (2, 3, 16, 3), (12, 16, 20), (14, 14), (8, 4, 14, 7)),
        "large": HieraConfig(144, 2, (2, 6, 36, 4), (23, 33, 43), (7, 7), (8, 4, 16, 8)),
    }
    return {f"{prefix}_{size}": SAM2Config(name=f"{prefix}_{size}", hiera=h, **flags) for size, h in trunks.items()}


def _build_registry() -> dict[str, SAM2Config]:
    reg: dict[str, SAM2Config] = {}
    reg.update(_sam2_family("2"))
    reg.update(_sam2_family("2.1"))
    # A few-MB network with the full SAM 2.1 wiring, for tests and the embedded demo model.
    reg["nano"] = SAM2Config(
        name="nano",
        hiera=HieraConfig(
            embed_dim=16,
            num_heads=1,
            stages=(1, 1, 2, 1),
            global_att_blocks=(3,),
            window_pos_embed_bkg_spatial_size=(4, 4),
            window_spec=(8, 4, 4, 4),
        ),
        image_size=256,
        d_model=64,
        mem_dim=32,
        mem_attn_layers=2,
        mem_attn_ffn=256,
        mem_attn_dropout=0.0,  # trained on unlimited synthetic clips; CPU dropout cost ~14% of a step
        decoder_depth=2,
        decoder_mlp_dim=256,
        decoder_heads=4,
        iou_head_hidden_dim=64,
    )
    return reg


_ALIASES = {
    # short names used by Meta's config files and by the surgical releases
    "sam2_hiera_t": "sam2_hiera_tiny",
    "sam2_hiera_s": "sam2_hiera_small",
    "sam2_hiera_b+": "sam2_hiera_base_plus",
    "sam2_hiera_l": "sam2_hiera_large",
    "sam2.1_hiera_t": "sam2.1_hiera_tiny",
    "sam2.1_hiera_s": "sam2.1_hiera_small",
    "sam2.1_hiera_b+": "sam2.1_hiera_base_plus",
    "sam2.1_hiera_l": "sam2.1_hiera_large",
}


def list_presets() -> list[str]:
    """Canonical preset names (aliases such as ``sam2.1_hiera_s`` are accepted too)."""
    return sorted(_build_registry())


def get_preset(name: str, image_size: int | None = None) -> SAM2Config:
    """The config of a named preset, optionally at another image size (multiple of 32)."""
    reg = _build_registry()
    key = _ALIASES.get(name, name)
    if key not in reg:
        raise KeyError(f"unknown model preset {name!r}; known: {', '.join(sorted(reg))}")
    return with_image_size(reg[key], image_size)


def with_image_size(cfg: SAM2Config, image_size: int | None) -> SAM2Config:
    """``cfg`` at another input size (a positive multiple of 32); None keeps it."""
    if image_size is None:
        return cfg
    if int(image_size) != image_size or image_size <= 0 or image_size % 32:
        raise ValueError(f"image_size must be a positive multiple of 32, got {image_size}")
    return replace(cfg, image_size=int(image_size))
