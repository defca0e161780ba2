"""FPN neck and the image encoder (Hiera trunk + neck) of SAM 2.

Module names give Meta's checkpoint keys: ``trunk.*`` and ``neck.convs.{i}.conv.*``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .hiera import Hiera
from .position_encoding import PositionEmbeddingSine
from .presets import SAM2Config


@dataclass
class ImageFeatures:
    """Output of :class:`ImageEncoder`, levels ordered from the finest to the coarsest.

    Attributes:
        vision_features: ``B x d x H/16 x W/16``, the coarsest kept level (= ``backbone_fpn[-1]``).
        vision_pos_enc: per level ``B x d x h_i x w_i`` sine position encodings.
        backbone_fpn: per level ``B x d x h_i x w_i`` FPN features (strides 4, 8, 16 with scalp=1).
    """

    vision_features: torch.Tensor
    vision_pos_enc: list[torch.Tensor]
    backbone_fpn: list[torch.Tensor]

    def to_dict(self) -> dict[str, torch.Tensor | list[torch.Tensor]]:
        """The same content as the dict Meta's ``ImageEncoder.forward`` returns."""
        return {
            "vision_features": self.vision_features,
            "vision_pos_enc": self.vision_pos_enc,
            "backbone_fpn": self.backbone_fpn,
        }


class _Lateral(nn.Module):
    """1x1 convolution from a trunk level's width to ``d_model`` (held as ``conv``)."""

    def __init__(self, in_ch: int, out_ch: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_ch, out_ch, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class FpnNeck(nn.Module):
    """Feature pyramid without output convs: lateral 1x1 convs plus a top-down path.

    ``backbone_channel_list`` gives the trunk widths from the coarsest level to the finest, and
    ``convs[j]`` projects the j-th of them. Level ``i`` (0 = finest) adds the 2x nearest-upsampled
    result of level ``i+1`` only if ``i`` is in ``fpn_top_down_levels``; the other levels are the
    lateral features alone.
    """

    def __init__(
        self,
        d_model: int,
        backbone_channel_list: Sequence[int],
        fpn_top_down_levels: Sequence[int] | None = (2, 3),
        position_encoding: nn.Module | None = None,
    ) -> None:
        super().__init__()
        self.d_model = d_model
        self.backbone_channel_list = list(backbone_channel_list)
        self.position_encoding = position_encoding if position_encoding is not None else PositionEmbeddingSine(d_model)
        self.convs = nn.ModuleList(_Lateral(c, d_model) for c in self.backbone_channel_list)
        levels = range(len(self.convs)) if fpn_top_down_levels is None else fpn_top_down_levels
        self.fpn_top_down_levels = [int(i) for i in levels]

    def forward(self, xs: Sequence[torch.Tensor]) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """``xs``: trunk maps, finest first -> (features, position encodings), both finest first.

        Every output map is ``B x d_model x h_i x w_i`` with the size of ``xs[i]``.
        """
        n = len(self.convs)
        if len(xs) != n:
            raise ValueError(f"expected {n} trunk levels, got {len(xs)}")
        feats: list[torch.Tensor] = [torch.empty(0)] * n
        pos: list[torch.Tensor] = [torch.empty(0)] * n
        above: torch.Tensor | None = None  # result of the next coarser level
        for i in reversed(range(n)):
            cur = self.convs[n - 1 - i](xs[i])
            if above is not None and i in self.fpn_top_down_levels:
                # upsample in float32 (as SAM 2 does), so the sum follows type promotion
                cur = cur + F.interpolate(above.float(), scale_factor=2.0, mode="nearest")
            above = cur
            feats[i] = cur
            pos[i] = self.position_encoding(cur).to(cur.dtype)
        return feats, pos


class ImageEncoder(nn.Module):
    """Trunk + neck: ``B x 3 x H x W`` image -> :class:`ImageFeatures`.

    ``scalp`` drops that many of the coarsest levels (SAM 2 uses 1: keeps strides 4, 8, 16).
    """

    def __init__(self, trunk: nn.Module, neck: FpnNeck, scalp: int = 1) -> None:
        super().__init__()
        trunk_channels = getattr(trunk, "channel_list", None)
        if trunk_channels is not None and list(trunk_channels) != list(neck.backbone_channel_list):
            raise ValueError(f"trunk channels {trunk_channels} != neck channels {neck.backbone_channel_list}")
        self.trunk = trunk
        self.neck = neck
        self.scalp = scalp

    def forward(self, image: torch.Tensor) -> ImageFeatures:
        """``image``: ``B x 3 x H x W`` (H, W multiples of 32) -> :class:`ImageFeatures`."""
        feats, pos = self.neck(self.trunk(image))
        if self.scalp > 0:
            feats, pos = feats[: -self.scalp], pos[: -self.scalp]
        return ImageFeatures(vision_features=feats[-1], vision_pos_enc=pos, backbone_fpn=feats)


def build_image_encoder(cfg: SAM2Config) -> ImageEncoder:
    """The image encoder of ``cfg``: Hiera trunk + FPN neck of width ``cfg.d_model``, scalp 1."""
    trunk = Hiera(cfg.hiera)
    neck = FpnNeck(
        d_model=cfg.d_model,
        backbone_channel_list=list(reversed(cfg.hiera.stage_dims)),
        fpn_top_down_levels=cfg.fpn_top_down_levels,
        position_encoding=PositionEmbeddingSine(cfg.d_model),
    )
    return ImageEncoder(trunk, neck, scalp=1)


__all__ = ["ImageFeatures", "FpnNeck", "ImageEncoder", "build_image_encoder"]
