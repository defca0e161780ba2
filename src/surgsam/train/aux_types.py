"""Auxiliary per-pixel object-type loss: a training-only head that makes the image features
tell instrument types apart.

The ``nano``'s features hardly separate instrument types (a linear probe on them: 44 % for 7
types), so the tracker drifts onto look-alike neighbours and the referring branch cannot tell
which instrument a sentence names. The synthetic data knows every object's category (the Meta
json of the Ref-EndoVis layout), so this module adds a supervised signal for it:

* targets: per pixel, the category of the object there (the Ref-EndoVis vocabulary, 9
  instrument types + 3 tissues, :data:`TYPE_NAMES`), 0 for background, :data:`IGNORE` for
  objects of unknown category and void pixels (:func:`type_map`);
* :class:`TypeHead`: 1x1 convolutions on the image encoder's stride-16 features and/or the
  decoder's stride-4 map (:attr:`AuxTypeConfig.level`), logits on the stride-4 grid;
* :func:`type_loss`: cross-entropy over the non-ignored pixels, by default class-balanced
  (the mean over the classes present of each class's mean), plus the instruments' accuracy
  for the log.

The head belongs to the training step (:class:`~surgsam.train.model_step.TrainStep`), never to
the model: checkpoints hold exactly the model's keys and load strictly; the head's weights
travel in the trainer's ``.state.pt`` files so that a resumed run is exact.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..data.endovis import ENDOVIS18_TISSUE
from ..data.refendovis import CATEGORY_IDS
from ..modeling.sam2 import FrameFeatures, SAM2Model

__all__ = [
    "AuxTypeConfig",
    "TYPE_NAMES",
    "INSTRUMENT_CLASSES",
    "IGNORE",
    "type_index",
    "type_map",
    "video_categories",
    "TypeHead",
    "type_loss",
    "aux_param_groups",
]

# class k (1-based) is TYPE_NAMES[k - 1]; Ref-EndoVis's category ids, so k = CATEGORY_IDS[name]
TYPE_NAMES: tuple[str, ...] = tuple(sorted(CATEGORY_IDS, key=CATEGORY_IDS.__getitem__))
INSTRUMENT_CLASSES: tuple[int, ...] = tuple(
    i + 1 for i, n in enumerate(TYPE_NAMES) if n not in ENDOVIS18_TISSUE.values()
)
IGNORE = 255  # target value of pixels that do not count (unknown category, void)
_ALIASES = {
    "suction instrument": "suction",
    "kidney parenchyma": "kidney-parenchyma",
    "covered kidney": "covered-kidney",
    "small intestine": "small-intestine",
}
#: Which features the type head reads: the stride-16 map, the stride-4 map, or both (summed).
TypeLevel = Literal["s16", "s4", "s16+s4"]
LEVELS: tuple[TypeLevel, ...] = ("s16", "s4", "s16+s4")
#: How the type loss averages: every class present weighs the same, or every pixel.
TypeBalance = Literal["class", "pixel"]


@dataclass(frozen=True)
class AuxTypeConfig:
    """weight: factor of the type loss in the total (0 = off: no head, no type maps, the
    training step is exactly the one without this module); level: which features the head
    reads: ``s16`` the image encoder's top level (what memory attention and the referring
    fusion see), ``s4`` the decoder's projected stride-4 map, ``s16+s4`` the sum of both;
    balance: ``class``: every class present in the batch weighs the same (the mean over
    classes of each class's mean pixel loss); ``pixel``: plain mean over pixels, where
    background and tissue are about 90 % of the pixels and a head that only tells
    "instrument" from the rest already does well (seen: 8 % type accuracy on instrument
    pixels after 500 steps); lr_scale: the head's learning rate / the run's base lr (a linear read-out starts random and
    should follow the features quickly, so that what reaches the encoder is the gradient of a
    fitted read-out, not of a random one)."""

    weight: float = 0.0
    level: TypeLevel = "s16"
    balance: TypeBalance = "class"
    lr_scale: float = 10.0

    def __post_init__(self) -> None:
        if self.weight < 0:
            raise ValueError(f"aux type loss weight must be >= 0, got {self.weight}")
        if self.level not in LEVELS:
            raise ValueError(f"aux type level must be one of {LEVELS}, got {self.level!r}")
        if self.balance not in ("class", "pixel"):
            raise ValueError(f"aux type balance must be 'class' or 'pixel', got {self.balance!r}")
        if self.lr_scale <= 0:
            raise ValueError(f"aux type lr_scale must be > 0, got {self.lr_scale}")

    @property
    def enabled(self) -> bool:
        return self.weight > 0

    @property
    def num_classes(self) -> int:
        return len(TYPE_NAMES) + 1  # + background


def type_index(name: str) -> int:
    """Class of a category name (1 .. len(TYPE_NAMES)); :data:`IGNORE` when unknown."""
    key = name.strip().lower()
    key = _ALIASES.get(key, key)
    return CATEGORY_IDS.get(key, IGNORE)


def type_map(labels: np.ndarray, categories: Mapping[int, str] | None, void_id: int | None = None) -> np.ndarray:
    """``H x W`` object-id map -> ``H x W`` uint8 type classes (0 background, :data:`IGNORE`
    for objects without a known category and for ``void_id``)."""
    lab = np.asarray(labels)
    size = max(256, int(lab.max(initial=0)) + 1)
    lut = np.full(size, IGNORE, dtype=np.uint8)
    lut[0] = 0
    for k, name in (categories or {}).items():
        if 0 < int(k) < size:
            lut[int(k)] = type_index(name)
    if void_id is not None and 0 < int(void_id) < size:
        lut[int(void_id)] = IGNORE
    return lut[lab.astype(np.int64, copy=False)]


def video_categories(video) -> dict[int, str] | None:
    """``{obj_id: category}`` of a dataset video (Ref-EndoVis Meta), None if it has none."""
    meta = getattr(video, "meta", None)
    cats = getattr(meta, "categories", None)
    return dict(cats) if cats else None


class TypeHead(nn.Module):
    """Per-pixel type logits from :class:`FrameFeatures`.

    ``forward(feats)``: features ``B x C x h x w`` (stride 16) and ``high_res[0]``
    ``B x C/8 x 4h x 4w`` -> logits ``B x K x 4h x 4w`` (K = types + background); the
    stride-16 logits are upsampled bilinearly.
    """

    def __init__(self, channels_s16: int, channels_s4: int, num_classes: int, level: TypeLevel = "s16") -> None:
        super().__init__()
        if level not in LEVELS:
            raise ValueError(f"level must be one of {LEVELS}, got {level!r}")
        parts = level.split("+")
        self.level = level
        self.s16 = nn.Conv2d(channels_s16, num_classes, 1) if "s16" in parts else None
        self.s4 = nn.Conv2d(channels_s4, num_classes, 1) if "s4" in parts else None

    @classmethod
    def for_model(cls, model: SAM2Model, cfg: AuxTypeConfig) -> "TypeHead":
        """A head sized for ``model``'s feature widths."""
        return cls(model.cfg.d_model, model.sam_mask_decoder.conv_s0.out_channels, cfg.num_classes, cfg.level)

    def forward(self, feats: FrameFeatures) -> torch.Tensor:
        hi = feats.high_res[0]
        out = None
        if self.s16 is not None:
            x = self.s16(feats.features)
            out = F.interpolate(x, hi.shape[-2:], mode="bilinear", align_corners=False)
        if self.s4 is not None:
            x = self.s4(hi)
            out = x if out is None else out + x
        assert out is not None
        return out


def type_loss(
    logits: torch.Tensor, targets: torch.Tensor, balance: TypeBalance = "class"
) -> tuple[torch.Tensor, torch.Tensor]:
    """Cross-entropy of ``B x K x H x W`` logits against ``B x S x S`` uint8 targets (taken at
    the logits' grid by nearest sampling) over the pixels that are not :data:`IGNORE`: the mean
    over the classes present of each class's mean (``balance="class"``) or over pixels
    (``"pixel"``).

    Returns ``(loss, accuracy)``: the accuracy (no gradient) is over the instruments' pixels
    (:data:`INSTRUMENT_CLASSES`; NaN when there are none).
    """
    tgt = targets
    if tgt.shape[-2:] != logits.shape[-2:]:
        tgt = F.interpolate(tgt[:, None].float(), logits.shape[-2:], mode="nearest-exact")[:, 0]
    tgt = tgt.long()
    valid = tgt != IGNORE
    if not bool(valid.any()):  # nothing to learn here; keeps the graph for DDP
        return logits.float().sum() * 0.0, torch.tensor(float("nan"), device=logits.device)
    if balance == "pixel":
        loss = F.cross_entropy(logits.float(), tgt, ignore_index=IGNORE)
    else:
        ce = F.cross_entropy(logits.float(), tgt, ignore_index=IGNORE, reduction="none")[valid]  # P
        classes, which = torch.unique(tgt[valid], return_inverse=True)
        sums = ce.new_zeros(len(classes)).index_add(0, which, ce)
        counts = torch.bincount(which, minlength=len(classes)).to(ce.dtype)
        loss = (sums / counts).mean()
    with torch.no_grad():
        inst = torch.isin(tgt, torch.tensor(INSTRUMENT_CLASSES, device=tgt.device))
        hit = (logits.argmax(1) == tgt) & inst
        acc = (
            hit.sum().float() / inst.sum().float()
            if bool(inst.any())
            else torch.tensor(float("nan"), device=logits.device)
        )
    return loss, acc


def aux_param_groups(head: TypeHead, lr: float, weight_decay: float) -> list[dict]:
    """AdamW groups of the head (``name`` ``aux_type``): weight decay on the conv weights only."""
    decay = [(n, p) for n, p in head.named_parameters() if p.ndim > 1]
    flat = [(n, p) for n, p in head.named_parameters() if p.ndim <= 1]
    groups = []
    for params, wd in ((decay, weight_decay), (flat, 0.0)):
        if params:
            groups.append(
                {
                    "params": [p for _, p in params],
                    "param_names": [f"aux_type.{n}" for n, _ in params],
                    "lr": lr,
                    "base_lr": lr,
                    "weight_decay": wd,
                    "name": "aux_type",
                }
            )
    return groups
