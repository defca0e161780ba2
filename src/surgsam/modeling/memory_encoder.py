"""Memory encoder: fuses a frame's features with its predicted mask into a compact memory."""

from __future__ import annotations

import torch
from torch import nn

from .common import DropPath, LayerNorm2d, activate_, inference_fast_ops
from .position_encoding import PositionEmbeddingSine


class MaskDownSampler(nn.Module):
    """Mask ``B x 1 x H x W`` -> ``B x embed_dim x H/16 x W/16`` by four stride-2 convolutions,
    each multiplying the channels by 4, then a 1x1 projection."""

    def __init__(self, embed_dim: int, kernel_size: int = 3, stride: int = 2, padding: int = 1, total_stride: int = 16):
        super().__init__()
        layers: list[nn.Module] = []
        c_in = 1
        n = 0
        while stride ** (n + 1) <= total_stride:
            c_out = c_in * stride * stride
            layers += [nn.Conv2d(c_in, c_out, kernel_size, stride, padding), LayerNorm2d(c_out), nn.GELU()]
            c_in = c_out
            n += 1
        if stride**n != total_stride:
            raise ValueError(f"total_stride {total_stride} is not a power of stride {stride}")
        layers.append(nn.Conv2d(c_in, embed_dim, kernel_size=1))
        self.encoder = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not inference_fast_ops():
            return self.encoder(x)
        for layer in self.encoder:  # activations in place on the fresh normalised maps
            x = activate_(layer, x) if isinstance(layer, nn.GELU) else layer(x)
        return x


class CXBlock(nn.Module):
    """ConvNeXt block: depthwise 7x7 conv -> LN -> 4x MLP (GELU) -> layer scale -> residual."""

    def __init__(
        self, dim: int, kernel_size: int = 7, padding: int = 3, drop_path: float = 0.0, layer_scale_init: float = 1e-6
    ):
        super().__init__()
        self.dwconv = nn.Conv2d(dim, dim, kernel_size, padding=padding, groups=dim)
        self.norm = LayerNorm2d(dim, eps=1e-6)
        self.pwconv1 = nn.Linear(dim, 4 * dim)
        self.act = nn.GELU()
        self.pwconv2 = nn.Linear(4 * dim, dim)
        self.gamma = nn.Parameter(layer_scale_init * torch.ones(dim))
        self.drop_path = DropPath(drop_path)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.norm(self.dwconv(x)).permute(0, 2, 3, 1)
        if inference_fast_ops():  # the same arithmetic on the fresh hidden maps, in place
            y = self.pwconv2(activate_(self.act, self.pwconv1(y))).mul_(self.gamma)
        else:
            y = self.gamma * self.pwconv2(self.act(self.pwconv1(y)))
        return x + self.drop_path(y.permute(0, 3, 1, 2))


class Fuser(nn.Module):
    """A stack of :class:`CXBlock` applied to the mask-augmented features."""

    def __init__(self, dim: int, num_layers: int):
        super().__init__()
        self.layers = nn.ModuleList(CXBlock(dim) for _ in range(num_layers))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = layer(x)
        return x


class MemoryEncoder(nn.Module):
    """(features ``B x C x h x w``, mask logits ``B x 1 x H x W``) ->
    (memory ``B x out_dim x h x w``, its sine position encoding, same shape)."""

    def __init__(self, in_dim: int, out_dim: int, fuser_layers: int = 2):
        super().__init__()
        self.mask_downsampler = MaskDownSampler(in_dim)
        self.pix_feat_proj = nn.Conv2d(in_dim, in_dim, kernel_size=1)
        self.fuser = Fuser(in_dim, fuser_layers)
        self.position_encoding = PositionEmbeddingSine(out_dim)
        self.out_proj: nn.Module = nn.Conv2d(in_dim, out_dim, kernel_size=1) if out_dim != in_dim else nn.Identity()

    def forward(
        self, pix_feat: torch.Tensor, masks: torch.Tensor, skip_mask_sigmoid: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if not skip_mask_sigmoid:
            masks = torch.sigmoid(masks)
        x = self.pix_feat_proj(pix_feat) + self.mask_downsampler(masks)
        x = self.out_proj(self.fuser(x))
        return x, self.position_encoding(x).to(x.dtype)
