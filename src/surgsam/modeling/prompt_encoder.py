"""Prompt encoder: clicks, boxes and low-res masks -> sparse and dense decoder prompts."""

from __future__ import annotations

from typing import cast

import torch
from torch import nn

from .common import InferenceCache, LayerNorm2d
from .position_encoding import PositionEmbeddingRandom

# Point labels understood by the encoder. Boxes are given as two points labelled 2 and 3.
LABEL_PAD, LABEL_NEG, LABEL_POS, LABEL_BOX_TL, LABEL_BOX_BR = -1, 0, 1, 2, 3


class PromptEncoder(nn.Module):
    """Embeds prompts for the mask decoder.

    Args:
        embed_dim: width of the prompt tokens (the model's ``d_model``).
        image_embedding_size: (h, w) of the top-level feature map.
        input_image_size: (H, W) of the model input in pixels.
        mask_in_chans: hidden channels of the mask-downscaling convolutions.
    """

    def __init__(
        self,
        embed_dim: int,
        image_embedding_size: tuple[int, int],
        input_image_size: tuple[int, int],
        mask_in_chans: int = 16,
    ) -> None:
        super().__init__()
        self.embed_dim = embed_dim
        self.image_embedding_size = (int(image_embedding_size[0]), int(image_embedding_size[1]))
        self.input_image_size = (int(input_image_size[0]), int(input_image_size[1]))
        self.mask_input_size = (4 * image_embedding_size[0], 4 * image_embedding_size[1])
        self.pe_layer = PositionEmbeddingRandom(embed_dim // 2)
        # One learned offset per label 0..3 (negative, positive, box corner 1, box corner 2).
        self.point_embeddings = nn.ModuleList(nn.Embedding(1, embed_dim) for _ in range(4))
        self.not_a_point_embed = nn.Embedding(1, embed_dim)
        q = mask_in_chans // 4
        self.mask_downscaling = nn.Sequential(
            nn.Conv2d(1, q, kernel_size=2, stride=2),
            LayerNorm2d(q),
            nn.GELU(),
            nn.Conv2d(q, mask_in_chans, kernel_size=2, stride=2),
            LayerNorm2d(mask_in_chans),
            nn.GELU(),
            nn.Conv2d(mask_in_chans, embed_dim, kernel_size=1),
        )
        self.no_mask_embed = nn.Embedding(1, embed_dim)
        self._cache = InferenceCache()  # the grid encoding and the empty prompt, at inference

    def _label_embedding(self, label: int) -> torch.Tensor:
        """``1 x C`` learned offset of point label ``label`` (0..3)."""
        return cast(nn.Embedding, self.point_embeddings[label]).weight

    def get_dense_pe(self) -> torch.Tensor:
        """Positional encoding of the feature grid: ``1 x C x h x w`` (computed once at inference)."""
        gauss = self.pe_layer.positional_encoding_gaussian_matrix
        return self._cache.get("dense_pe", (gauss,), lambda: self.pe_layer(self.image_embedding_size).unsqueeze(0))

    def empty_prompts(self, bs: int, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        """What :meth:`forward` gives ``bs`` objects without clicks, box or mask (one padding
        point each, given as a zero point of ``dtype`` labelled -1): sparse ``bs x 2 x C`` and
        dense ``bs x C x h x w``, the same for every object (views of one row, computed once
        at inference)."""
        weights = (
            self.pe_layer.positional_encoding_gaussian_matrix,
            self.not_a_point_embed.weight,
            *(self._label_embedding(lab) for lab in range(len(self.point_embeddings))),
            self.no_mask_embed.weight,
        )
        device = self.no_mask_embed.weight.device

        def compute() -> torch.Tensor:
            points = torch.zeros(1, 1, 2, dtype=dtype, device=device)
            labels = -torch.ones(1, 1, dtype=torch.int32, device=device)
            return self(points=(points, labels))[0]

        sparse = self._cache.get(("empty", dtype), weights, compute)
        h, w = self.image_embedding_size
        dense = self.no_mask_embed.weight.reshape(1, -1, 1, 1).expand(bs, -1, h, w)
        return sparse.expand(bs, -1, -1), dense

    def embed_points(self, coords: torch.Tensor, labels: torch.Tensor, pad: bool) -> torch.Tensor:
        """``B x N x 2`` pixel coords (model input frame) + ``B x N`` labels -> ``B x N' x C``.

        With ``pad`` a not-a-point token is appended (SAM's convention when no box is given).
        """
        coords = coords + 0.5  # pixel centres
        if pad:
            coords = torch.cat([coords, coords.new_zeros(coords.shape[0], 1, 2)], dim=1)
            labels = torch.cat([labels, -labels.new_ones(labels.shape[0], 1)], dim=1)
        emb = self.pe_layer.forward_with_coords(coords, self.input_image_size)
        labels = labels.unsqueeze(-1)
        emb = torch.where(labels == LABEL_PAD, self.not_a_point_embed.weight.expand_as(emb), emb)
        for lab in range(len(self.point_embeddings)):
            emb = torch.where(labels == lab, emb + self._label_embedding(lab), emb)
        return emb

    def embed_boxes(self, boxes: torch.Tensor) -> torch.Tensor:
        """``B x 4`` boxes (x0, y0, x1, y1 in input pixels) -> ``B x 2 x C`` corner tokens."""
        corners = boxes.reshape(-1, 2, 2) + 0.5
        emb = self.pe_layer.forward_with_coords(corners, self.input_image_size)
        offsets = torch.cat([self._label_embedding(2), self._label_embedding(3)], 0)
        return emb + offsets.unsqueeze(0)

    def embed_masks(self, masks: torch.Tensor) -> torch.Tensor:
        """``B x 1 x 4h x 4w`` mask logits -> ``B x C x h x w``."""
        return self.mask_downscaling(masks)

    def forward(
        self,
        points: tuple[torch.Tensor, torch.Tensor] | None = None,
        boxes: torch.Tensor | None = None,
        masks: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Returns (sparse ``B x N x C``, dense ``B x C x h x w``) prompt embeddings."""
        if points is not None:
            bs = points[0].shape[0]
        elif boxes is not None:
            bs = boxes.shape[0]
        elif masks is not None:
            bs = masks.shape[0]
        else:
            bs = 1
        weight = self.no_mask_embed.weight
        parts = [weight.new_zeros(bs, 0, self.embed_dim)]
        if points is not None:
            parts.append(self.embed_points(points[0], points[1], pad=boxes is None))
        if boxes is not None:
            parts.append(self.embed_boxes(boxes))
        sparse = torch.cat(parts, dim=1)
        if masks is not None:
            dense = self.embed_masks(masks)
        else:
            h, w = self.image_embedding_size
            dense = weight.reshape(1, -1, 1, 1).expand(bs, -1, h, w)
        return sparse, dense
