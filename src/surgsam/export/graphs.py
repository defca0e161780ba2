"""The per-frame computation as two fixed-shape ``nn.Module`` graphs, for ONNX export.

* :class:`ImageEncoderGraph`: one RGB frame at the model's size -> backbone features.
* :class:`PromptStepGraph`: a prompted (conditioning) frame for B objects: a mask, or clicks
  / a box, without memory -> the mask, the object pointer and the frame's memory features,
  i.e. what seeds an object's memory bank (the engine's ``add_prompt`` on a new object).
* :class:`TrackStepGraph`: one tracked frame for B objects: memory attention over a padded
  memory (fixed slots, see :meth:`SAM2Model.padded_memory_tokens`) -> mask decoder (best of
  3 candidates) -> memory encoder, i.e. everything the engine's ``step`` runs per object
  after the image encoder. The memory bank and the policy stay on the host.

Tensor names live in the torch-free :mod:`surgsam.export.runtime`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..modeling.sam2 import FrameFeatures, SAM2Model
from .runtime import ENCODER_INPUTS, ENCODER_OUTPUTS, PROMPT_INPUTS, PROMPT_OUTPUTS, STEP_INPUTS, STEP_OUTPUTS

__all__ = [
    "ENCODER_INPUTS",
    "ENCODER_OUTPUTS",
    "PROMPT_INPUTS",
    "PROMPT_OUTPUTS",
    "STEP_INPUTS",
    "STEP_OUTPUTS",
    "ImageEncoderGraph",
    "PromptStepGraph",
    "TrackStepGraph",
]


class ImageEncoderGraph(nn.Module):
    """``1 x 3 x S x S`` float RGB in 0..255 (already resized) -> features ``1 x C x h x w``,
    their position encoding, and the decoder's stride-4 / stride-8 maps."""

    def __init__(self, model: SAM2Model) -> None:
        super().__init__()
        self.model = model

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, ...]:
        m = self.model
        x = (image / 255.0 - m.pixel_mean) / m.pixel_std
        f = m.encode_image(x)
        return f.features, f.pos, f.high_res[0], f.high_res[1]


class TrackStepGraph(nn.Module):
    """One tracking step for B objects on a frame whose features are given.

    Inputs: ``features``/``pos`` ``B x C x h x w``, ``high_res_0`` ``B x C/8 x 4h x 4w``,
    ``high_res_1`` ``B x C/4 x 2h x 2w``, ``memory``/``memory_pos`` ``B x M x Cm`` and
    ``memory_mask`` ``B x M`` bool, padded to ``slots`` = (spatial memories, pointers).
    Outputs: best low-res logits ``B x 1 x 4h x 4w``, high-res logits ``B x 1 x S x S``,
    IoU predictions ``B x 3``, object pointer ``B x C``, object-score logit ``B x 1``, and
    the frame's memory features ``B x Cm x h x w`` (the position encoding of memories is a
    constant the host keeps).
    """

    def __init__(self, model: SAM2Model, slots: tuple[int, int]) -> None:
        super().__init__()
        self.model = model
        self.slots = slots

    def forward(
        self, features, pos, high_res_0, high_res_1, memory, memory_pos, memory_mask
    ) -> tuple[torch.Tensor, ...]:
        m = self.model
        frame = FrameFeatures(features, pos, (high_res_0, high_res_1))
        pix = m.attend_memory(frame, memory, memory_pos, self.slots[1], memory_mask)
        out = m.predict_masks(pix, (high_res_0, high_res_1), multimask_output=True)
        mem = m.encode_memory(features, out.high_res_masks, out.object_score_logits)
        return out.low_res_masks, out.high_res_masks, out.ious, out.obj_ptr, out.object_score_logits, mem.features


class PromptStepGraph(nn.Module):
    """A prompted frame that starts B objects: no memory is attended (SAM 2 adds
    ``no_mem_embed`` on an initial conditioning frame), exactly as the engine's ``add_prompt``
    for a new object, then the frame's memory is encoded to seed the object's bank.

    Inputs: ``features`` ``B x C x h x w`` (raw, before memory), ``high_res_0`` /
    ``high_res_1`` as for the tracking step; ``points`` ``B x P x 2`` in model-input pixels and
    ``labels`` ``B x P`` int32 (1 positive, 0 negative, 2/3 box corners; one point labelled -1
    for a mask prompt); ``mask`` ``B x 1 x S x S`` float 0/1 at the model's input size;
    ``use_mask`` ``B`` bool (True: the mask is the output, the decoder only gives the pointer;
    False: the clicks are decoded, best of 3 candidates for a single click).
    Outputs: ``low_res_masks`` ``B x 1 x 4h x 4w``, ``iou`` ``B x 1`` (the best predicted
    IoU; 1 for a mask), ``obj_ptr`` ``B x C``, ``object_score_logits`` ``B x 1`` and the
    memory features ``B x Cm x h x w`` of the binarised mask (``binarize=False``: of
    ``sigmoid(logits)``, see the engine's ``binarize_prompt_memory``).
    """

    def __init__(self, model: SAM2Model, binarize: bool = True) -> None:
        super().__init__()
        self.model = model
        self.binarize = binarize

    def forward(self, features, high_res_0, high_res_1, points, labels, mask, use_mask) -> tuple[torch.Tensor, ...]:
        m = self.model
        hr = (high_res_0, high_res_1)
        # clicks / box: the frame without memory; the engine decodes a single click best-of-3
        pix = m.condition_on_memory(FrameFeatures(features, features, hr), [], [])
        decoded = m.decode_prompts(pix, hr, points, labels)  # one decoder pass for both selections
        multi, single = m.select_masks(decoded, True), m.select_masks(decoded, False)
        one_click = torch.ones_like(labels).sum(dim=1) <= 1  # B (P is the same for every row)
        # a mask: used as the output, the decoder only supplies the object pointer
        given = m.mask_as_output(features, hr, mask)

        def pick(cond: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
            return torch.where(cond.view(-1, *([1] * (a.ndim - 1))), a, b)

        def best_iou(ious: torch.Tensor) -> torch.Tensor:
            return ious.max(dim=1, keepdim=True).values

        low = pick(use_mask, given.low_res_masks, pick(one_click, multi.low_res_masks, single.low_res_masks))
        iou = pick(use_mask, best_iou(given.ious), pick(one_click, best_iou(multi.ious), best_iou(single.ious)))
        ptr = pick(use_mask, given.obj_ptr, pick(one_click, multi.obj_ptr, single.obj_ptr))
        score = pick(
            use_mask, given.object_score_logits, pick(one_click, multi.object_score_logits, single.object_score_logits)
        )
        # the engine encodes a prompted frame's memory from its low-res logits, upsampled
        high = F.interpolate(low, (m.image_size, m.image_size), mode="bilinear", align_corners=False)
        mem = m.encode_memory(features, high, score, binarize=self.binarize)
        return low, iou, ptr, score, mem.features
