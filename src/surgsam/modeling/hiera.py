"""Hiera: the hierarchical, mostly-windowed vision transformer trunk of SAM 2's image encoder.

Tokens live in a ``B x H x W x C`` layout. A 7x7/stride-4 convolution makes the stride-4
tokens; four stages of blocks follow, and the first block of each of the next ``q_pool``
stages halves the resolution by max-pooling its queries (and its shortcut) while widening
channels by ``dim_mul`` and heads by ``head_mul``. Most blocks attend inside non-overlapping
windows (the grid is zero-padded up to a multiple of the window); ``global_att_blocks`` attend
over the whole map. Parameter names equal those of Meta's checkpoints.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from .common import MLP, DropPath, InferenceCache, inference_fast_ops
from .presets import HieraConfig


def _to_windows(x: torch.Tensor, size: int) -> tuple[torch.Tensor, tuple[int, int]]:
    """``B x H x W x C`` -> ``(B*nh*nw) x size x size x C`` and the window grid ``(nh, nw)``.

    The map is zero-padded at the bottom/right up to a multiple of ``size``.
    """
    b, h, w, c = x.shape
    nh, nw = -(-h // size), -(-w // size)
    pad_h, pad_w = nh * size - h, nw * size - w
    if pad_h or pad_w:
        x = F.pad(x, (0, 0, 0, pad_w, 0, pad_h))
    x = x.reshape(b, nh, size, nw, size, c).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(b * nh * nw, size, size, c), (nh, nw)


def _from_windows(win: torch.Tensor, grid: tuple[int, int], hw: tuple[int, int]) -> torch.Tensor:
    """Inverse of :func:`_to_windows`: ``(B*nh*nw) x s x s x C`` -> ``B x H x W x C`` (padding cropped)."""
    nh, nw = grid
    s, c = win.shape[1], win.shape[-1]
    b = win.shape[0] // (nh * nw)
    x = win.reshape(b, nh, nw, s, s, c).permute(0, 1, 3, 2, 4, 5).reshape(b, nh * s, nw * s, c)
    h, w = hw
    if nh * s != h or nw * s != w:
        x = x[:, :h, :w, :]
    return x


def _maxpool_hw(x: torch.Tensor, stride: tuple[int, int]) -> torch.Tensor:
    """Max-pool a ``B x H x W x C`` map with kernel = stride (floor mode)."""
    return F.max_pool2d(x.permute(0, 3, 1, 2), kernel_size=stride, stride=stride).permute(0, 2, 3, 1)


class PatchEmbed(nn.Module):
    """``B x 3 x H x W`` image -> ``B x H/4 x W/4 x C`` tokens (7x7 conv, stride 4, padding 3)."""

    def __init__(self, embed_dim: int, in_chans: int = 3) -> None:
        super().__init__()
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=7, stride=4, padding=3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).permute(0, 2, 3, 1)


class MultiScaleAttention(nn.Module):
    """Multi-head self-attention on a ``B x h x w x dim`` map, optionally with pooled queries.

    With ``q_stride`` the output is ``B x h/s x w/s x dim_out``: each pooled query attends to
    all ``h*w`` keys of its input. ``kernel`` replaces the attention product at inference
    (see :class:`surgsam.modeling.two_way_transformer.Attention`).
    """

    kernel: Callable[..., torch.Tensor] | None = None

    def __init__(self, dim: int, dim_out: int, num_heads: int, q_stride: tuple[int, int] | None = None) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.q_stride = q_stride
        self.qkv = nn.Linear(dim, 3 * dim_out)
        self.proj = nn.Linear(dim_out, dim_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, h, w, _ = x.shape
        # b x hw x (3 * heads * hd) -> 3 x b x heads x hw x hd
        q, k, v = self.qkv(x).reshape(b, h * w, 3, self.num_heads, -1).permute(2, 0, 3, 1, 4).unbind(0)
        if self.q_stride is not None:
            hd = q.shape[-1]
            q = q.transpose(1, 2).reshape(b, h, w, self.num_heads * hd)
            q = _maxpool_hw(q, self.q_stride)
            h, w = q.shape[1], q.shape[2]
            q = q.reshape(b, h * w, self.num_heads, hd).transpose(1, 2)
        if self.kernel is not None and not self.training:
            out = self.kernel(q, k, v, None)
        else:
            out = F.scaled_dot_product_attention(q, k, v)  # b x heads x hw' x hd
        out = out.transpose(1, 2).reshape(b, h, w, -1)
        return self.proj(out)


class MultiScaleBlock(nn.Module):
    """Pre-norm transformer block: (windowed) attention + GELU MLP, ``B x H x W x C`` in and out.

    ``window_size == 0`` means global attention. With ``q_stride`` the block downsamples; when
    ``dim != dim_out`` the shortcut goes through ``proj`` (applied to the normed input) and the
    same pooling.
    """

    def __init__(
        self,
        dim: int,
        dim_out: int,
        num_heads: int,
        window_size: int = 0,
        q_stride: tuple[int, int] | None = None,
        mlp_ratio: float = 4.0,
        drop_path: float = 0.0,
    ) -> None:
        super().__init__()
        self.dim, self.dim_out = dim, dim_out
        self.window_size = window_size
        self.q_stride = (int(q_stride[0]), int(q_stride[1])) if q_stride is not None else None
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = MultiScaleAttention(dim, dim_out, num_heads, q_stride=self.q_stride)
        self.drop_path = DropPath(drop_path) if drop_path > 0.0 else nn.Identity()
        self.norm2 = nn.LayerNorm(dim_out, eps=1e-6)
        self.mlp = MLP(dim_out, int(dim_out * mlp_ratio), dim_out, num_layers=2, activation=nn.GELU)
        if dim != dim_out:
            self.proj = nn.Linear(dim, dim_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        normed = self.norm1(x)
        shortcut = self.proj(normed) if self.dim != self.dim_out else x
        if self.q_stride is not None:
            shortcut = _maxpool_hw(shortcut, self.q_stride)
        if self.window_size > 0:
            windows, grid = _to_windows(normed, self.window_size)
            attn = _from_windows(self.attn(windows), grid, (shortcut.shape[1], shortcut.shape[2]))
        else:
            attn = self.attn(normed)
        x = shortcut + self.drop_path(attn)
        return x + self.drop_path(self.mlp(self.norm2(x)))


class Hiera(nn.Module):
    """Hiera trunk: ``B x 3 x H x W`` -> 4 maps ``B x C_i x H/s_i x W/s_i`` (``s_i`` = 4, 8, 16, 32).

    ``channel_list`` lists the output widths from the coarsest to the finest level (the order an
    FPN neck's ``backbone_channel_list`` uses).
    """

    def __init__(self, cfg: HieraConfig) -> None:
        super().__init__()
        if len(cfg.stages) != len(cfg.window_spec):
            raise ValueError("stages and window_spec must have the same length")
        if not 0 <= cfg.q_pool < len(cfg.stages):
            raise ValueError(f"q_pool must be in [0, {len(cfg.stages) - 1}], got {cfg.q_pool}")
        self.cfg = cfg
        depth = sum(cfg.stages)
        self.stage_ends = [sum(cfg.stages[: i + 1]) - 1 for i in range(len(cfg.stages))]
        pool_blocks = {end + 1 for end in self.stage_ends[: cfg.q_pool]}
        global_blocks = set(cfg.global_att_blocks)

        self.patch_embed = PatchEmbed(cfg.embed_dim)
        # windowed absolute position embedding: a bicubic-resized background + a tiled window term
        self.pos_embed = nn.Parameter(torch.zeros(1, cfg.embed_dim, *cfg.window_pos_embed_bkg_spatial_size))
        w0 = cfg.window_spec[0]
        self.pos_embed_window = nn.Parameter(torch.zeros(1, cfg.embed_dim, w0, w0))

        dim, heads, stage = cfg.embed_dim, cfg.num_heads, 0
        rates = [cfg.drop_path_rate * i / (depth - 1) if depth > 1 else 0.0 for i in range(depth)]
        self.blocks = nn.ModuleList()
        for i in range(depth):
            # a new stage's first block still uses the previous stage's window size
            window = 0 if i in global_blocks else cfg.window_spec[stage]
            dim_out = dim
            if i - 1 in self.stage_ends:
                dim_out, heads, stage = int(dim * cfg.dim_mul), int(heads * cfg.head_mul), stage + 1
            self.blocks.append(
                MultiScaleBlock(
                    dim,
                    dim_out,
                    heads,
                    window_size=window,
                    drop_path=rates[i],
                    q_stride=cfg.q_stride if i in pool_blocks else None,
                )
            )
            dim = dim_out
        self.channel_list = [self.blocks[e].dim_out for e in reversed(self.stage_ends)]
        self._cache = InferenceCache()

    def _pos_embed_hw(self, h: int, w: int) -> torch.Tensor:
        """``1 x h x w x C`` position embedding for an ``h x w`` token grid (computed once per
        grid at inference, see :class:`~.common.InferenceCache`)."""
        if not inference_fast_ops():
            return self._compute_pos_embed(h, w)
        # plain ints: under the engine's torch.jit.trace sizes are tensors, which would miss
        # the cache and record the computation in the trace
        h, w = int(h), int(w)
        weights = (self.pos_embed, self.pos_embed_window)
        return self._cache.get(("pos_embed", h, w), weights, lambda: self._compute_pos_embed(h, w))

    def _compute_pos_embed(self, h: int, w: int) -> torch.Tensor:
        bkg = F.interpolate(self.pos_embed, size=(h, w), mode="bicubic")
        win: torch.Tensor = self.pos_embed_window
        wh, ww = win.shape[-2:]
        win = win.tile(1, 1, -(-h // wh), -(-w // ww))[:, :, :h, :w]
        return (bkg + win).permute(0, 2, 3, 1)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """``x``: ``B x 3 x H x W`` -> ``[B x C_0 x H/4 x W/4, ..., B x C_3 x H/32 x W/32]``."""
        x = self.patch_embed(x)
        x = x + self._pos_embed_hw(x.shape[1], x.shape[2])
        feats: list[torch.Tensor] = []
        ends = set(self.stage_ends)
        for i, block in enumerate(self.blocks):
            x = block(x)
            if i in ends:
                feats.append(x.permute(0, 3, 1, 2))
        return feats


__all__ = ["Hiera", "MultiScaleBlock", "MultiScaleAttention", "PatchEmbed"]
