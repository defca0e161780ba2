"""Typed state of a streaming session: per-object state, prompts and per-frame results."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from ..memory import MemoryBank


@dataclass
class Clicks:
    """Clicks (and box corners, labels 2/3) on one frame, in model-input pixels.

    points: ``1 x P x 2``; labels: ``1 x P`` int32.
    """

    points: torch.Tensor
    labels: torch.Tensor

    def extend(self, other: "Clicks") -> "Clicks":
        return Clicks(torch.cat([self.points, other.points], 1), torch.cat([self.labels, other.labels], 1))


@dataclass
class FrameOutput:
    """One object's prediction on the current frame (kept only until the next frame).

    low_res_logits: ``1 x 1 x 4h x 4w``; obj_ptr: ``1 x C``; object_score_logit: ``1 x 1``.
    frame_logits: ``1 x 1 x H x W`` the logits already upsampled to the frame's size (exactly
    :func:`upsample_logits` of ``low_res_logits``), when the decoder made them; else None.
    """

    low_res_logits: torch.Tensor
    iou: float
    obj_ptr: torch.Tensor
    object_score_logit: torch.Tensor
    from_prompt: bool  # memory still to encode (binarised) when the frame is finalised
    is_cond: bool
    clicks: Clicks | None = None
    frame_logits: torch.Tensor | None = None


@dataclass
class ObjectState:
    """Everything the session holds for one object: its bank and the current frame's output."""

    obj_id: int
    bank: MemoryBank = field(default_factory=MemoryBank)
    first_frame: int = 0
    output: FrameOutput | None = None  # on the session's current frame, if any
    # ``1 x K x C`` extra sparse decoder prompt for every tracked frame (e.g. ReSurgSAM2's
    # sentence token); None for objects prompted only with clicks / boxes / masks.
    extra_prompt: torch.Tensor | None = None

    @property
    def is_tracking(self) -> bool:
        return bool(self.bank.cond)


@dataclass
class FrameResult:
    """Masks of all objects on one frame.

    obj_ids: the N object ids, in the order of the other fields.
    masks: ``N x H x W`` bool at the frame's size.
    object_scores: ``N`` probability that each object is visible (sigmoid of its score).
    ious: ``N`` predicted IoU of each mask.
    low_res_logits: ``N x 1 x 4h x 4w`` mask logits (model resolution / 4).
    latency_ms: wall time of the call that produced the result.
    searching: ids (among ``obj_ids``) not found yet, e.g. a text-referred object still in its
        detection stage (its mask, score and IoU are what ``ReferringSegmenter``'s
        ``search_output`` shows: its detection, or empty with 0). Empty for prompted objects.
    """

    frame_idx: int
    obj_ids: list[int]
    masks: np.ndarray
    object_scores: np.ndarray
    ious: np.ndarray
    low_res_logits: torch.Tensor
    latency_ms: float = 0.0
    searching: list[int] = field(default_factory=list)

    @property
    def frame_size(self) -> tuple[int, int]:
        return self.masks.shape[-2], self.masks.shape[-1]

    def logits(self) -> torch.Tensor:
        """``N x H x W`` float mask logits at the frame's size (bilinear, as Meta's predictor)."""
        if not self.obj_ids:
            return torch.zeros(0, *self.frame_size)
        return upsample_logits(self.low_res_logits, self.frame_size)[:, 0]

    def mask(self, obj_id: int) -> np.ndarray:
        """``H x W`` bool mask of one object."""
        if obj_id not in self.obj_ids:
            raise KeyError(f"object {obj_id} is not in this frame's result (objects: {self.obj_ids})")
        return self.masks[self.obj_ids.index(obj_id)]


def upsample_logits(low_res: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """``N x 1 x h x w`` -> ``N x 1 x H x W`` float32 (bilinear, align_corners=False)."""
    return F.interpolate(low_res.float(), size=size, mode="bilinear", align_corners=False)
