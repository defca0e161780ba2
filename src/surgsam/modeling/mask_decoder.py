"""Mask decoder: prompt tokens + image features -> masks, IoU predictions, object score."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .common import MLP, LayerNorm2d, activate_, inference_fast_ops
from .two_way_transformer import TwoWayTransformer


@dataclass
class DecoderOutput:
    """Raw decoder outputs for a batch of B prompts.

    masks: ``B x M x 4h x 4w`` low-res mask logits (M = 3 multimask, else 1; all
        ``1 + 3`` from :meth:`MaskDecoder.predict_all`, the single-mask output first).
    iou_pred: ``B x M`` predicted IoU (sigmoid, in [0, 1]).
    sam_tokens: ``B x M x C`` mask output tokens (used for object pointers).
    object_score_logits: ``B x 1`` logit that the object is present.
    """

    masks: torch.Tensor
    iou_pred: torch.Tensor
    sam_tokens: torch.Tensor
    object_score_logits: torch.Tensor


class MaskDecoder(nn.Module):
    """SAM 2's decoder with the released settings: high-res skips, sigmoid IoU head,
    MLP object-score head, multimask tokens used for object pointers.

    Args:
        transformer_dim: token/feature width C.
        transformer: the :class:`TwoWayTransformer`.
        num_multimask_outputs: masks in multimask mode (3).
        dynamic_multimask_via_stability: in single-mask inference, fall back to the best
            multimask output when the single mask is unstable (Meta's predictors do this).
    """

    def __init__(
        self,
        transformer_dim: int,
        transformer: TwoWayTransformer,
        num_multimask_outputs: int = 3,
        iou_head_depth: int = 3,
        iou_head_hidden_dim: int = 256,
        dynamic_multimask_via_stability: bool = True,
        dynamic_multimask_stability_delta: float = 0.05,
        dynamic_multimask_stability_thresh: float = 0.98,
    ) -> None:
        super().__init__()
        c = transformer_dim
        self.transformer_dim = c
        self.transformer = transformer
        self.num_multimask_outputs = num_multimask_outputs
        self.num_mask_tokens = num_multimask_outputs + 1
        self.iou_token = nn.Embedding(1, c)
        self.mask_tokens = nn.Embedding(self.num_mask_tokens, c)
        self.obj_score_token = nn.Embedding(1, c)
        self.output_upscaling = nn.Sequential(
            nn.ConvTranspose2d(c, c // 4, kernel_size=2, stride=2),
            LayerNorm2d(c // 4),
            nn.GELU(),
            nn.ConvTranspose2d(c // 4, c // 8, kernel_size=2, stride=2),
            nn.GELU(),
        )
        # 1x1 projections of the stride-4 and stride-8 backbone features (high-res skips).
        self.conv_s0 = nn.Conv2d(c, c // 8, kernel_size=1)
        self.conv_s1 = nn.Conv2d(c, c // 4, kernel_size=1)
        self.output_hypernetworks_mlps = nn.ModuleList(MLP(c, c, c // 8, 3) for _ in range(self.num_mask_tokens))
        self.iou_prediction_head = MLP(
            c, iou_head_hidden_dim, self.num_mask_tokens, iou_head_depth, sigmoid_output=True
        )
        self.pred_obj_score_head = MLP(c, c, 1, 3)
        self.dynamic_multimask_via_stability = dynamic_multimask_via_stability
        self.stability_delta = dynamic_multimask_stability_delta
        self.stability_thresh = dynamic_multimask_stability_thresh

    def forward(
        self,
        image_embeddings: torch.Tensor,
        image_pe: torch.Tensor,
        sparse_prompt_embeddings: torch.Tensor,
        dense_prompt_embeddings: torch.Tensor,
        multimask_output: bool,
        repeat_image: bool,
        high_res_features: tuple[torch.Tensor, torch.Tensor],
    ) -> DecoderOutput:
        """Decode masks for B prompts.

        Args:
            image_embeddings: ``B' x C x h x w`` (B' = 1 with ``repeat_image``, else B).
            image_pe: ``1 x C x h x w`` dense positional encoding.
            sparse_prompt_embeddings: ``B x N x C``; dense_prompt_embeddings: ``B x C x h x w``.
            high_res_features: already projected (conv_s0, conv_s1) stride-4 and stride-8 maps,
                ``B' x C/8 x 4h x 4w`` and ``B' x C/4 x 2h x 2w``.
        """
        return self.select(
            self.predict_all(
                image_embeddings,
                image_pe,
                sparse_prompt_embeddings,
                dense_prompt_embeddings,
                repeat_image,
                high_res_features,
            ),
            multimask_output,
        )

    def predict_all(
        self,
        image_embeddings: torch.Tensor,
        image_pe: torch.Tensor,
        sparse_prompt_embeddings: torch.Tensor,
        dense_prompt_embeddings: torch.Tensor,
        repeat_image: bool,
        high_res_features: tuple[torch.Tensor, torch.Tensor],
    ) -> DecoderOutput:
        """:meth:`forward` before :meth:`select`: all ``1 + num_multimask_outputs`` candidates
        (the single-mask output first), so both selections can share one decoder pass."""
        return DecoderOutput(
            *self._predict(
                image_embeddings,
                image_pe,
                sparse_prompt_embeddings,
                dense_prompt_embeddings,
                repeat_image,
                high_res_features,
            )
        )

    def select(self, out: DecoderOutput, multimask_output: bool) -> DecoderOutput:
        """The multimask candidates, or the single mask (stability fallback at inference), of
        :meth:`predict_all`'s output."""
        masks, iou_pred, mask_tokens, obj_logits = out.masks, out.iou_pred, out.sam_tokens, out.object_score_logits
        if multimask_output:
            masks, iou_pred = masks[:, 1:], iou_pred[:, 1:]
            sam_tokens = mask_tokens[:, 1:]
        else:
            if self.dynamic_multimask_via_stability and not self.training:
                masks, iou_pred = self._stable_single_mask(masks, iou_pred)
            else:
                masks, iou_pred = masks[:, :1], iou_pred[:, :1]
            sam_tokens = mask_tokens[:, :1]
        return DecoderOutput(masks, iou_pred, sam_tokens, obj_logits)

    def _predict(
        self,
        image_embeddings: torch.Tensor,
        image_pe: torch.Tensor,
        sparse: torch.Tensor,
        dense: torch.Tensor,
        repeat_image: bool,
        high_res_features: tuple[torch.Tensor, torch.Tensor],
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        b = sparse.shape[0]
        out_tokens = torch.cat([self.obj_score_token.weight, self.iou_token.weight, self.mask_tokens.weight], 0)
        tokens = torch.cat([out_tokens.unsqueeze(0).expand(b, -1, -1), sparse], dim=1)
        if repeat_image:
            image_embeddings = image_embeddings.repeat_interleave(b, dim=0)
        src = image_embeddings + dense
        pos = image_pe.expand(b, -1, -1, -1)
        _, c, h, w = src.shape
        hs, src = self.transformer(src, pos, tokens)
        iou_token = hs[:, 1]
        mask_tokens = hs[:, 2 : 2 + self.num_mask_tokens]

        src = src.transpose(1, 2).reshape(b, c, h, w)
        up1, norm1, act1, up2, act2 = self.output_upscaling
        feat_s0, feat_s1 = high_res_features  # batch 1 broadcasts over the B prompts
        if inference_fast_ops():  # the activations in place on fresh maps
            x = activate_(act1, norm1(up1(src) + feat_s1))
            x = activate_(act2, up2(x) + feat_s0)
        else:
            x = act1(norm1(up1(src) + feat_s1))
            x = act2(up2(x) + feat_s0)
        hyper = torch.stack([mlp(mask_tokens[:, i]) for i, mlp in enumerate(self.output_hypernetworks_mlps)], 1)
        bx, cx, hx, wx = x.shape
        masks = (hyper @ x.reshape(bx, cx, hx * wx)).reshape(bx, -1, hx, wx)
        iou_pred = self.iou_prediction_head(iou_token)
        obj_logits = self.pred_obj_score_head(hs[:, 0])
        return masks, iou_pred, mask_tokens, obj_logits

    def _stable_single_mask(self, masks: torch.Tensor, iou_pred: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Keep the single-mask output where it is stable under +-delta thresholding, else take
        the multimask output with the highest predicted IoU."""
        single, single_iou = masks[:, :1], iou_pred[:, :1]
        multi, multi_iou = masks[:, 1:], iou_pred[:, 1:]
        best = multi_iou.argmax(dim=-1)
        rows = torch.arange(multi.shape[0], device=masks.device)
        best_mask, best_iou = multi[rows, best].unsqueeze(1), multi_iou[rows, best].unsqueeze(1)
        flat = single.flatten(-2)
        inter = (flat > self.stability_delta).sum(-1).float()
        union = (flat > -self.stability_delta).sum(-1).float()
        stability = torch.where(union > 0, inter / union, torch.ones_like(inter))
        stable = stability >= self.stability_thresh  # B x 1
        masks_out = torch.where(stable[..., None, None], single, best_mask)
        iou_out = torch.where(stable, single_iou, best_iou)
        return masks_out, iou_out
