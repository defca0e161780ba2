"""CSTMamba cross-modal fusion (ReSurgSAM2): text tokens and spatial-temporal visual tokens.

Query tokens are ``[CLS, text tokens]``; visual tokens are the top-level features of the
current frame and of up to ``num_frames - 1`` previous frames, each with its sine position
encoding plus a learned temporal embedding. A two-way transformer (depth 2) alternates token
self-attention, spatial-temporal Mamba layers over the visual tokens, token-to-image and
image-to-token cross-attention. The module returns the CLS token (an extra decoder prompt) and
the current frame's fused visual tokens (which replace the raw features in the decoder).

Parameter names follow ReSurgSAM2's ``cross_modal_fusion.*`` checkpoint entries.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import cast

import torch
import torch.nn.functional as F
from torch import nn

from ..modeling.two_way_transformer import Attention
from .mamba import MambaLayer
from .projection import DropoutMLP
from .selective_scan import Backend


def attend(
    attn: Attention, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, key_padding: torch.Tensor | None
) -> torch.Tensor:
    """``attn(q, k, v)`` with padded keys (``B x Nk`` bool, True = padding) left out."""
    if key_padding is None:
        return attn(q, k, v)
    heads = lambda t: t.reshape(t.shape[0], t.shape[1], attn.num_heads, -1).transpose(1, 2)  # noqa: E731
    mask = ~key_padding[:, None, None, :]  # B x 1 x 1 x Nk, True = attend
    p = attn.dropout_p if attn.training else 0.0
    out = F.scaled_dot_product_attention(
        heads(attn.q_proj(q)), heads(attn.k_proj(k)), heads(attn.v_proj(v)), attn_mask=mask, dropout_p=p
    )
    b, h, n, c = out.shape
    return attn.out_proj(out.transpose(1, 2).reshape(b, n, h * c))


class FusionBlock(nn.Module):
    """Token self-attention -> Mamba layers over the visual tokens -> token-to-image attention
    -> token MLP -> image-to-token attention, each with a residual and LayerNorm (the first
    block's self-attention has neither PE nor residual, as in SAM's decoder)."""

    def __init__(
        self,
        dim: int,
        num_heads: int,
        mlp_dim: int,
        downsample_rate: int,
        skip_first_layer_pe: bool,
        mamba_layers: Sequence[MambaLayer],
        dropout: float,
    ) -> None:
        super().__init__()
        self.self_attn = Attention(dim, num_heads)
        self.norm1 = nn.LayerNorm(dim)
        self.cross_attn_token_to_image = Attention(dim, num_heads, downsample_rate)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = DropoutMLP(dim, mlp_dim, dim, 2, dropout)
        self.norm3 = nn.LayerNorm(dim)
        self.norm4 = nn.LayerNorm(dim)
        self.cross_attn_image_to_token = Attention(dim, num_heads, downsample_rate)
        self.mamba_layers = nn.ModuleList(mamba_layers)
        self.skip_first_layer_pe = skip_first_layer_pe

    @property
    def mambas(self) -> list[MambaLayer]:
        """``mamba_layers`` with their type."""
        return cast("list[MambaLayer]", list(self.mamba_layers))

    def forward(
        self,
        queries: torch.Tensor,
        keys: torch.Tensor,
        query_pe: torch.Tensor,
        key_pe: torch.Tensor,
        vol: tuple[int, int, int],
        query_padding: torch.Tensor | None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """queries ``B x Nq x C``, keys ``B x T*h*w x C`` (frame-major), ``vol = (T, h, w)``."""
        if self.skip_first_layer_pe:
            queries = attend(self.self_attn, queries, queries, queries, query_padding)
        else:
            q = queries + query_pe
            queries = queries + attend(self.self_attn, q, q, queries, query_padding)
        queries = self.norm1(queries)
        for layer in self.mamba_layers:
            keys = layer(keys, vol)
        q, k = queries + query_pe, keys + key_pe
        queries = self.norm2(queries + self.cross_attn_token_to_image(q, k, keys))
        queries = self.norm3(queries + self.mlp(queries))
        q, k = queries + query_pe, keys + key_pe
        keys = self.norm4(keys + attend(self.cross_attn_image_to_token, k, q, queries, query_padding))
        return queries, keys


class FusionTransformer(nn.Module):
    """``depth`` :class:`FusionBlock` s and a final token-to-image attention + LayerNorm."""

    def __init__(self, blocks: Sequence[FusionBlock], dim: int, num_heads: int, downsample_rate: int) -> None:
        super().__init__()
        self.layers = nn.ModuleList(blocks)
        self.final_attn_token_to_image = Attention(dim, num_heads, downsample_rate)
        self.norm_final_attn = nn.LayerNorm(dim)

    @property
    def blocks(self) -> list[FusionBlock]:
        """``layers`` with their type."""
        return cast("list[FusionBlock]", list(self.layers))

    def forward(
        self,
        keys: torch.Tensor,
        key_pe: torch.Tensor,
        tokens: torch.Tensor,
        vol: tuple[int, int, int],
        token_padding: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """keys/key_pe ``B x T*h*w x C``, tokens ``B x Nq x C`` -> (tokens, keys) updated."""
        queries = tokens
        for layer in self.layers:
            queries, keys = layer(queries, keys, tokens, key_pe, vol, token_padding)
        attn = self.final_attn_token_to_image(queries + tokens, keys + key_pe, keys)
        return self.norm_final_attn(queries + attn), keys


@dataclass
class FusionOutput:
    """features: ``B x C x h x w`` fused current-frame features; cls: ``B x 1 x C`` CLS token."""

    features: torch.Tensor
    cls: torch.Tensor


def temporal_slots(num_previous: int, num_frames: int) -> tuple[list[int], list[int]]:
    """Which frame and which temporal embedding fill each of the ``num_frames`` slots.

    Returns (frame index per slot: 0 = current, ``j + 1`` = ``previous[j]``; temporal-embedding
    index per slot). Missing previous frames are padded with the current frame, placed right
    after it, as ReSurgSAM2 does: with 3 slots the embeddings are ``[0, 1, 2]`` and the
    padded layouts are ``[cur, cur, prev0]`` -> ``[0, 1, 1]`` and ``[cur, cur, cur]`` ->
    ``[0, 1, 2]``.
    """
    if num_previous >= num_frames:
        raise ValueError(f"at most {num_frames - 1} previous frames, got {num_previous}")
    pad = num_frames - 1 - num_previous

    def emb(j: int) -> int:
        if num_frames == 3:
            return 1 if j == 0 else 2
        return pad + j + 1

    frames = [0] + [0] * pad + [j + 1 for j in range(num_previous)]
    embs = [0] + [emb(j) for j in range(pad)] + [emb(j) for j in range(num_previous)]
    return frames, embs


class CrossModalFusion(nn.Module):
    """CSTMamba: fuses text tokens with the visual tokens of the current and previous frames.

    Args:
        dim: width C (the SAM model's ``d_model``).
        depth: fusion blocks; num_heads, mlp_dim, downsample_rate: their attention and MLP.
        mamba_per_block: Mamba layers per block; drop-path rates rise linearly from 0 to
            ``drop_path_rate`` over all of them.
        num_frames: visual frames fused (current + previous), = temporal embeddings.
    """

    def __init__(
        self,
        dim: int = 256,
        depth: int = 2,
        num_heads: int = 8,
        mlp_dim: int = 2048,
        downsample_rate: int = 2,
        dropout: float = 0.1,
        mamba_per_block: int = 2,
        d_state: int = 16,
        d_conv: int = 4,
        expand: int = 2,
        dt_rank: int | None = None,
        mlp_ratio: int = 4,
        kernel_size: int = 7,
        drop_path_rate: float = 0.2,
        num_frames: int = 3,
        scan_backend: Backend = "auto",
    ) -> None:
        super().__init__()
        self.dim, self.num_frames = dim, num_frames
        # Registered first: it is the first cross_modal_fusion entry of the released state dicts.
        self.temporal_pos_embed = nn.Parameter(torch.zeros(1, num_frames, dim))
        n_mamba = depth * mamba_per_block
        rates = [drop_path_rate * i / (n_mamba - 1) if n_mamba > 1 else 0.0 for i in range(n_mamba)]  # linear 0 -> max
        blocks = []
        for i in range(depth):
            layers = [
                MambaLayer(
                    dim,
                    d_state,
                    d_conv,
                    expand,
                    dt_rank,
                    mlp_ratio,
                    kernel_size,
                    drop_path=rates[i * mamba_per_block + j],
                    scan_backend=scan_backend,
                )
                for j in range(mamba_per_block)
            ]
            blocks.append(FusionBlock(dim, num_heads, mlp_dim, downsample_rate, i == 0, layers, dropout))
        self.transformer = FusionTransformer(blocks, dim, num_heads, downsample_rate)
        self.cls_token = nn.Embedding(1, dim)
        for block in self.transformer.blocks:
            for attn in (block.self_attn, block.cross_attn_token_to_image, block.cross_attn_image_to_token):
                _init_attention(attn)
        _init_attention(self.transformer.final_attn_token_to_image)

    @property
    def drop_path_rates(self) -> list[float]:
        """Drop-path rate of every Mamba layer, in order."""
        return [m.drop_path.drop_prob for b in self.transformer.blocks for m in b.mambas]

    def set_scan_backend(self, backend: Backend) -> None:
        """Select the selective-scan implementation of every Mamba layer."""
        for block in self.transformer.blocks:
            for layer in block.mambas:
                layer.mamba.scan_backend = backend

    def forward(
        self,
        features: torch.Tensor,
        pos: torch.Tensor,
        previous: Sequence[torch.Tensor],
        text_tokens: torch.Tensor,
        text_padding: torch.Tensor | None = None,
    ) -> FusionOutput:
        """Fuse one frame with its predecessors and the text.

        Args:
            features: ``B x C x h x w`` top-level features of the current frame; pos: their
                sine position encoding (the same grid for every frame).
            previous: up to ``num_frames - 1`` earlier frames' top-level features
                (``B x C x h x w`` each), NEWEST FIRST; missing ones are padded with the
                current frame.
            text_tokens: ``B x L x C`` projected text tokens; text_padding: ``B x L`` bool
                (True = padding), or None when no sequence is padded.
        """
        b, c, h, w = features.shape
        frames, embs = temporal_slots(len(previous), self.num_frames)
        maps = [features, *previous]
        keys = torch.cat([maps[i].flatten(2).transpose(1, 2) for i in frames], 1)  # B x T*hw x C
        pos_t = pos.flatten(2).transpose(1, 2).to(keys.dtype)
        tpe = self.temporal_pos_embed[0, embs].to(keys.dtype)  # T x C
        key_pe = (pos_t.unsqueeze(1) + tpe[None, :, None, :]).reshape(b, -1, c)
        cls = self.cls_token.weight.to(text_tokens.dtype).expand(b, -1, -1)
        tokens = torch.cat([cls, text_tokens], 1)
        padding = None
        if text_padding is not None and bool(text_padding.any()):
            padding = torch.cat([text_padding.new_zeros(b, 1), text_padding.bool()], 1)
        hs, keys = self.transformer(keys, key_pe, tokens, (len(frames), h, w), padding)
        current = keys[:, : h * w].transpose(1, 2).reshape(b, c, h, w)
        return FusionOutput(current, hs[:, :1])


def _init_attention(attn: Attention) -> None:
    for lin in (attn.q_proj, attn.k_proj, attn.v_proj, attn.out_proj):
        nn.init.trunc_normal_(lin.weight, std=0.02)
        nn.init.zeros_(lin.bias)


__all__ = ["CrossModalFusion", "FusionBlock", "FusionTransformer", "FusionOutput", "temporal_slots", "attend"]
