"""Positional encodings of 2-D feature maps and of prompt coordinates.

* :class:`PositionEmbeddingSine` -- fixed sine/cosine encoding of a feature grid (used by the
  FPN neck; numerically equal to SAM 2's).
* :class:`PositionEmbeddingRandom` -- random-Fourier-feature encoding (used by the prompt
  encoder; its ``positional_encoding_gaussian_matrix`` buffer is part of the checkpoints).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .common import inference_fast_ops


class PositionEmbeddingSine(nn.Module):
    """Sine/cosine encoding of the (row, column) position of every cell of a grid.

    The first ``num_pos_feats // 2`` output channels encode the row, the rest the column; in
    each half, channel ``2j`` is ``sin(p / T**(2j/n))`` and ``2j+1`` is ``cos`` of the same
    angle (``n = num_pos_feats // 2``). With ``normalize`` the positions ``1..H`` (``1..W``)
    are rescaled to ``(0, scale]``. The output is float32 whatever the input dtype.
    """

    def __init__(
        self,
        num_pos_feats: int,
        temperature: float = 10000,
        normalize: bool = True,
        scale: float | None = None,
    ) -> None:
        super().__init__()
        if num_pos_feats % 2:
            raise ValueError(f"num_pos_feats must be even, got {num_pos_feats}")
        if scale is not None and not normalize:
            raise ValueError("scale is only meaningful with normalize=True")
        self.num_pos_feats = num_pos_feats
        self.temperature = temperature
        self.normalize = normalize
        self.scale = 2 * math.pi if scale is None else scale
        # (H, W, device) -> C x H x W float32 grid; not a buffer, so never in the state dict.
        self._grids: dict[tuple[int, int, torch.device], torch.Tensor] = {}

    def _axis(self, n: int, device: torch.device) -> torch.Tensor:
        """Encoding of positions ``1..n`` along one axis: ``n x num_pos_feats//2``."""
        half = self.num_pos_feats // 2
        pos = torch.arange(1, n + 1, dtype=torch.float32, device=device)
        if self.normalize:
            pos = pos / (pos[-1:] + 1e-6) * self.scale
        idx = torch.arange(half, dtype=torch.float32, device=device)
        freqs = self.temperature ** (2 * torch.div(idx, 2, rounding_mode="floor") / half)
        ang = pos[:, None] / freqs  # n x half
        even = torch.arange(half, device=device) % 2 == 0
        return torch.where(even, ang.sin(), ang.cos())

    def _grid(self, h: int, w: int, device: torch.device) -> torch.Tensor:
        """``num_pos_feats x h x w`` float32 encoding of an ``h x w`` grid."""
        rows = self._axis(h, device).t()[:, :, None].expand(-1, h, w)
        cols = self._axis(w, device).t()[:, None, :].expand(-1, h, w)
        return torch.cat([rows, cols], dim=0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x``: ``B x C x H x W`` (only its shape and device are used) -> ``B x num_pos_feats x H x W``."""
        b, (h, w), device = x.shape[0], x.shape[-2:], x.device
        if torch.compiler.is_compiling():  # no Python-side cache inside a traced graph
            return self._grid(h, w, device).unsqueeze(0).repeat(b, 1, 1, 1)
        key = (int(h), int(w), device)
        grid = self._grids.get(key)
        if grid is None:
            with torch.inference_mode(False), torch.no_grad():
                grid = self._grid(h, w, device)
            self._grids[key] = grid
        if inference_fast_ops():  # the same values as a broadcast view (nothing writes to them)
            return grid.unsqueeze(0).expand(b, -1, -1, -1)
        return grid.unsqueeze(0).repeat(b, 1, 1, 1)


class PositionEmbeddingRandom(nn.Module):
    """Encoding by random spatial frequencies: ``[sin(2 pi f), cos(2 pi f)]``, ``f = (2p - 1) G``.

    ``G`` is the ``2 x num_pos_feats`` buffer ``positional_encoding_gaussian_matrix``, so the
    output has ``2 * num_pos_feats`` channels.
    """

    positional_encoding_gaussian_matrix: torch.Tensor

    def __init__(self, num_pos_feats: int = 64, scale: float | None = None) -> None:
        super().__init__()
        if scale is None or scale <= 0.0:
            scale = 1.0
        self.register_buffer("positional_encoding_gaussian_matrix", scale * torch.randn(2, num_pos_feats))

    def _encode(self, coords: torch.Tensor) -> torch.Tensor:
        """``... x 2`` (x, y) coordinates normalised to ``[0, 1]`` -> ``... x 2*num_pos_feats``."""
        gauss = self.positional_encoding_gaussian_matrix
        proj = (2 * coords.to(gauss.dtype) - 1) @ gauss
        proj = 2 * math.pi * proj
        return torch.cat([proj.sin(), proj.cos()], dim=-1)

    def forward(self, size: tuple[int, int]) -> torch.Tensor:
        """Encoding of the centres of an ``H x W`` grid: ``size = (H, W)`` -> ``C x H x W``."""
        h, w = size
        device = self.positional_encoding_gaussian_matrix.device
        ys = (torch.arange(h, dtype=torch.float32, device=device) + 0.5) / h
        xs = (torch.arange(w, dtype=torch.float32, device=device) + 0.5) / w
        xy = torch.stack([xs[None, :].expand(h, w), ys[:, None].expand(h, w)], dim=-1)  # H x W x 2
        return self._encode(xy).permute(2, 0, 1)

    def forward_with_coords(self, coords: torch.Tensor, image_size: tuple[int, int]) -> torch.Tensor:
        """Points in pixels: ``coords`` ``B x N x 2`` (x, y), ``image_size = (H, W)`` -> ``B x N x C``."""
        if not coords.is_floating_point():
            coords = coords.float()
        h, w = image_size
        norm = torch.stack([coords[..., 0] / w, coords[..., 1] / h], dim=-1)
        return self._encode(norm.float())


__all__ = ["PositionEmbeddingSine", "PositionEmbeddingRandom"]
