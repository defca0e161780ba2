"""One label per pixel: the single rule that turns per-object masks into an object-id map.

Every place that writes or scores an id map (DAVIS palette PNGs from ``surgsam segment``, the
demo, the app and ``surgsam eval --save-pred``; the evaluator's J, F, Dice and IoU) goes through
:func:`resolve_overlaps`, so what is scored is exactly what is written.

The rule is the one SAM 2's own VOS evaluation applies when it writes palette PNGs
(facebookresearch/sam2 ``tools/vos_inference.py``: without ``--per_obj_png_file`` it builds the
predictor with ``non_overlap_masks=true``, so every output frame goes through
``SAM2VideoPredictor._apply_non_overlapping_constraints`` before ``put_per_obj_mask`` paints the
PNG). ReSurgSAM2's ``tools/rvos_inference.py`` writes its combined palette PNGs the same way:

1. **With logits** (``N x H x W`` mask logits at the frame's size, the usual case): at each
   pixel only the object with the highest logit may keep it; every other object's logit there is
   pushed below zero. A pixel is therefore labelled ``k`` iff ``k``'s mask is on there and no
   other object whose mask is on has a higher logit. When ``masks == logits > 0`` (how the engine
   makes them) this is exactly SAM 2's constraint followed by thresholding at 0. Ties (equal
   logits) go to the lowest object id: SAM 2 takes the first object in its predictor's order,
   which in ``vos_inference.py`` and ``rvos_inference.py`` is ascending id order.
2. **Without logits** (binary masks only: copied masks, the oracle, per-object PNG folders,
   a caller that did not pass them): the lowest id wins where masks overlap. That is what
   ``put_per_obj_mask`` does with overlapping binary masks (it paints objects in descending id
   order, so the lowest id ends on top).

Pixels no mask covers are background (0). Only the output is resolved: as in SAM 2, every
object's memory keeps its own, possibly overlapping, mask.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

__all__ = ["label_map_from_dict", "label_map_from_result", "resolve_overlaps"]


def _numpy(x: Any) -> np.ndarray:
    if hasattr(x, "detach"):  # a torch tensor, possibly on an accelerator
        x = x.detach().float().cpu().numpy() if x.dtype.is_floating_point else x.detach().cpu().numpy()
    return np.asarray(x)


def resolve_overlaps(
    obj_ids: Sequence[int] | Any,
    masks: Any,
    logits: Any | None = None,
    *,
    shape: tuple[int, int] | None = None,
) -> np.ndarray:
    """``N`` per-object masks -> one ``H x W`` int32 id map (0 = background), SAM 2's rule.

    Args:
        obj_ids: ``N`` distinct positive object ids.
        masks: ``N x H x W`` bool (or integer, non-zero = inside) masks; numpy or torch.
        logits: optional ``N x H x W`` float mask logits (the masks' scores at the frame's size).
            Where masks overlap, the highest logit wins (ties: lowest id). ``None``: the lowest
            id wins (see the module docstring).
        shape: ``(H, W)``, needed only when there are no objects.
    """
    ids = np.asarray(_numpy(obj_ids), dtype=np.int64).reshape(-1)
    if masks is None:
        if ids.size or shape is None:
            raise ValueError("masks=None is only valid with no objects and shape=(H, W)")
        return np.zeros(tuple(shape), dtype=np.int32)
    m = _numpy(masks)
    if m.ndim == 4 and m.shape[1] == 1:
        m = m[:, 0]
    if m.ndim != 3 or m.shape[0] != ids.size:
        raise ValueError(f"{ids.size} object ids need N x H x W masks, got shape {m.shape}")
    if m.dtype.kind == "f":
        raise ValueError(f"masks must be boolean, got {m.dtype}: pass scores as logits=")
    if shape is not None and m.shape[1:] != tuple(shape):
        raise ValueError(f"masks are {m.shape[1:]} but shape is {tuple(shape)} (H, W)")
    if (ids <= 0).any():
        raise ValueError(f"object ids must be positive (0 is background), got {ids.tolist()}")
    if len(set(ids.tolist())) != ids.size:
        raise ValueError(f"object ids must be distinct, got {ids.tolist()}")
    m = m.astype(bool, copy=False)
    out = np.zeros(m.shape[1:], dtype=np.int32)
    if ids.size == 0:
        return out
    order = np.argsort(ids, kind="stable")  # ascending ids: argmax's first hit is the lowest id
    ids, m = ids[order], m[order]
    if logits is None:
        winner = np.argmax(m, axis=0)
    else:
        s = _numpy(logits)
        if s.ndim == 4 and s.shape[1] == 1:
            s = s[:, 0]
        if s.shape != m.shape:
            raise ValueError(f"logits must match the masks ({m.shape}), got {s.shape}")
        s = s.astype(np.float32, copy=False)[order]
        if np.isnan(s[m]).any():
            raise ValueError("logits are NaN where a mask is on")
        winner = np.argmax(np.where(m, s, -np.inf), axis=0)
    covered = m.any(axis=0)
    out[covered] = ids[winner[covered]]
    return out


def label_map_from_dict(
    masks: Mapping[int, Any], shape: tuple[int, int], logits: Mapping[int, Any] | None = None
) -> np.ndarray:
    """:func:`resolve_overlaps` for ``{obj_id: H x W bool}`` (and optionally ``{obj_id: H x W
    logits}`` for the same ids)."""
    ids = list(masks)
    if not ids:
        return np.zeros(tuple(shape), dtype=np.int32)
    stacked = np.stack([np.asarray(_numpy(masks[k])) for k in ids])
    if stacked.shape[1:] != tuple(shape):
        bad = next(k for k in ids if np.shape(masks[k]) != tuple(shape))
        raise ValueError(f"mask of object {bad} is {np.shape(masks[bad])}, expected {tuple(shape)}")
    scores = None if logits is None else np.stack([_numpy(logits[k]) for k in ids])
    return resolve_overlaps(ids, stacked, scores)


def label_map_from_result(result: Any, id_map: Mapping[int, int] | None = None) -> np.ndarray:
    """The id map of an engine ``FrameResult`` (``obj_ids``, ``masks``, ``logits()``), resolved
    with its logits. ``id_map`` renames object ids (e.g. session ids -> dataset ids); objects
    missing from it are left out. Results without usable logits fall back to lowest-id-wins."""
    ids = [int(k) for k in result.obj_ids]
    masks = np.asarray(result.masks).astype(bool)
    logits = None
    if ids and callable(getattr(result, "logits", None)):
        try:
            cand = _numpy(result.logits())
        except (AttributeError, RuntimeError, TypeError, ValueError):  # a stand-in without real logits
            cand = None
        if cand is not None and cand.shape == masks.shape:
            logits = cand
    if id_map is not None:
        keep = [i for i, k in enumerate(ids) if k in id_map]
        ids = [int(id_map[ids[i]]) for i in keep]
        masks = masks[keep]
        logits = None if logits is None else logits[keep]
    return resolve_overlaps(ids, masks, logits, shape=masks.shape[1:] if masks.ndim == 3 else None)
