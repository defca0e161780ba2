"""SAM 2's training loss: focal x20 + dice x1 + IoU-prediction L1 x1 + object-score BCE x1.

For every decoder call of every frame (correction steps included), summed over them:

* multimask outputs (M = 3): only the candidate with the lowest ``20 focal + dice`` is
  back-propagated for focal and dice; the IoU head is supervised on all M candidates (target:
  the real IoU of each thresholded candidate with the ground truth), averaged over them;
* mask, dice and IoU terms count only where the object is present in the ground truth;
  the object-score BCE counts everywhere;
* every term is summed over objects and divided by ``num_objects`` (the mean number of
  objects per rank under DDP).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

__all__ = [
    "LossConfig",
    "LossTerms",
    "DecoderStep",
    "sigmoid_focal_loss",
    "dice_loss",
    "iou_targets",
    "sam2_loss",
    "frame_loss",
]


@dataclass(frozen=True)
class LossConfig:
    """SAM 2's loss weights (its defaults). ``weight_absent`` multiplies the object-score term
    of objects absent from the frame (the only term they pay); 1 is SAM 2's loss, more teaches
    the tracker harder to let a departed object go instead of following a neighbour."""

    weight_mask: float = 20.0
    weight_dice: float = 1.0
    weight_iou: float = 1.0
    weight_class: float = 1.0
    focal_alpha: float = 0.25
    focal_gamma: float = 2.0
    supervise_all_iou: bool = True
    iou_use_l1: bool = True
    weight_absent: float = 1.0

    def __post_init__(self) -> None:
        if not self.weight_absent >= 0:  # also refuses NaN
            raise ValueError(f"weight_absent must be >= 0, got {self.weight_absent}")


@dataclass
class DecoderStep:
    """One decoder call for N objects: ``N x M x S x S`` high-res candidate logits, ``N x M``
    predicted IoUs, ``N x 1`` object-score logits."""

    multimask_logits: torch.Tensor
    ious: torch.Tensor
    object_score_logits: torch.Tensor


@dataclass
class LossTerms:
    """Unweighted loss terms (scalars) and the weighted total that is back-propagated.
    ``aux_type`` / ``aux_type_acc``: the auxiliary type loss and its foreground accuracy
    (:mod:`.aux_types`), None when it is off; they are not part of ``+``."""

    mask: torch.Tensor
    dice: torch.Tensor
    iou: torch.Tensor
    cls: torch.Tensor
    total: torch.Tensor
    aux_type: torch.Tensor | None = None
    aux_type_acc: torch.Tensor | None = None

    def __add__(self, other: "LossTerms") -> "LossTerms":
        return LossTerms(
            self.mask + other.mask,
            self.dice + other.dice,
            self.iou + other.iou,
            self.cls + other.cls,
            self.total + other.total,
        )

    def as_dict(self) -> dict[str, float]:
        """Plain floats for logging (``loss``, ``loss_mask``, ...)."""
        names = ["loss", "loss_mask", "loss_dice", "loss_iou", "loss_class"]
        parts = [self.total, self.mask, self.dice, self.iou, self.cls]
        if self.aux_type is not None:
            names += ["loss_aux_type", "aux_type_acc"]
            acc = self.aux_type_acc if self.aux_type_acc is not None else torch.full_like(self.aux_type, float("nan"))
            parts += [self.aux_type, acc]
        vals = torch.stack([x.detach().float() for x in parts]).tolist()
        return dict(zip(names, vals))


def sigmoid_focal_loss(
    logits: torch.Tensor, targets: torch.Tensor, alpha: float = 0.25, gamma: float = 2.0
) -> torch.Tensor:
    """Focal loss per mask, averaged over pixels: ``N x M x H x W`` -> ``N x M``.
    ``alpha < 0`` disables the class weighting; ``gamma = 0`` gives plain BCE."""
    logits, targets = logits.float(), targets.float()
    prob = logits.sigmoid()
    ce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    p_t = prob * targets + (1 - prob) * (1 - targets)
    loss = ce * (1 - p_t) ** gamma if gamma else ce
    if alpha >= 0:
        loss = (alpha * targets + (1 - alpha) * (1 - targets)) * loss
    return loss.flatten(2).mean(-1)


def dice_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Soft dice loss with +1 smoothing per mask: ``N x M x H x W`` -> ``N x M``."""
    p = logits.float().sigmoid().flatten(2)
    t = targets.float().flatten(2)
    return 1 - (2 * (p * t).sum(-1) + 1) / (p.sum(-1) + t.sum(-1) + 1)


def iou_targets(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Real IoU of each thresholded candidate (logit > 0) with the target: ``N x M``."""
    p = logits.flatten(2) > 0
    t = targets.flatten(2) > 0
    inter = (p & t).sum(-1).float()
    union = (p | t).sum(-1).float()
    return inter / union.clamp(min=1.0)


def frame_loss(
    step: DecoderStep, target: torch.Tensor, num_objects: float, cfg: LossConfig = LossConfig()
) -> LossTerms:
    """Loss of one decoder call against ``N x S x S`` bool targets."""
    logits = step.multimask_logits.float()
    tgt = target[:, None].expand_as(logits)
    focal = sigmoid_focal_loss(logits, tgt, cfg.focal_alpha, cfg.focal_gamma)  # N x M
    dice = dice_loss(logits, tgt)
    iou_t = iou_targets(logits.detach(), tgt)
    pred_iou = step.ious.float()
    iou = (
        F.l1_loss(pred_iou, iou_t, reduction="none")
        if cfg.iou_use_l1
        else F.mse_loss(pred_iou, iou_t, reduction="none")
    )
    present = target.flatten(1).any(1, keepdim=True).float()  # N x 1
    cls = F.binary_cross_entropy_with_logits(step.object_score_logits.float(), present, reduction="none")  # N x 1
    if logits.shape[1] > 1:
        best = (focal * cfg.weight_mask + dice * cfg.weight_dice).argmin(1)
        rows = torch.arange(logits.shape[0], device=logits.device)
        focal, dice = focal[rows, best][:, None], dice[rows, best][:, None]
        iou = iou.mean(1, keepdim=True) if cfg.supervise_all_iou else iou[rows, best][:, None]
    mask_l = (focal * present).sum() / num_objects
    dice_l = (dice * present).sum() / num_objects
    iou_l = (iou * present).sum() / num_objects
    cls_l = cls.sum() / num_objects  # logged unweighted, like the other terms
    cls_w = (cls * (present + cfg.weight_absent * (1 - present))).sum() / num_objects  # == cls_l at weight 1
    total = cfg.weight_mask * mask_l + cfg.weight_dice * dice_l + cfg.weight_iou * iou_l + cfg.weight_class * cls_w
    return LossTerms(mask_l, dice_l, iou_l, cls_l, total)


def sam2_loss(
    steps_per_frame: Sequence[Sequence[DecoderStep]],
    targets: torch.Tensor,
    num_objects: float,
    cfg: LossConfig = LossConfig(),
) -> LossTerms:
    """Sum of :func:`frame_loss` over frames and their decoder calls.

    Args:
        steps_per_frame: for each frame t, its decoder calls (initial + corrections).
        targets: ``T x N x S x S`` bool ground truth.
        num_objects: normaliser (at least 1).
    """
    num_objects = max(float(num_objects), 1.0)
    total: LossTerms | None = None
    for t, steps in enumerate(steps_per_frame):
        for step in steps:
            terms = frame_loss(step, targets[t], num_objects, cfg)
            total = terms if total is None else total + terms
    if total is None:
        raise ValueError("no decoder outputs to compute a loss on")
    return total
