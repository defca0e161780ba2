"""The per-frame computation as two fixed-shape ``nn.Module`` graphs, for ONNX export.

* :class:`ImageEncoderGraph`: one RGB frame at the model's size -> backbone features.
* :class:`TrackStepGraph`: one tracked frame for B objects: memory attention over a padded
  memory (fixed slots, see :meth:`SAM2Model.padded_memory_tokens`) -> mask decoder (best of
  3 candidates) -> memory encoder, i.e. everything the engine's ``step`` runs per object
  after the image encoder. The memory bank and the policy stay on the host.
"""

from __future__ import annotations

import torch
from torch import nn

from ..modeling.sam2 import FrameFeatures, SAM2Model

ENCODER_INPUTS = ("image",)
ENCODER_OUTPUTS = ("features", "pos", "high_res_0", "high_res_1")
STEP_INPUTS = ("features", "pos", "high_res_0", "high_res_1", "memory", "memory_pos", "memory_mask")
STEP_OUTPUTS = ("low_res_masks", "high_res_masks", "ious", "obj_ptr", "object_score_logits", "memory_features")


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

    def forward(self, features, pos, high_res_0, high_res_1, memory, memory_pos, memory_mask) -> tuple[torch.Tensor, ...]:
        m = self.model
        frame = FrameFeatures(features, pos, (high_res_0, high_res_1))
        pix = m.attend_memory(frame, memory, memory_pos, self.slots[1], memory_mask)
        out = m.predict_masks(pix, (high_res_0, high_res_1), multimask_output=True)
        mem = m.encode_memory(features, out.high_res_masks, out.object_score_logits)
        return out.low_res_masks, out.high_res_masks, out.ious, out.obj_ptr, out.object_score_logits, mem.features
