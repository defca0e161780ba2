"""Validation and conversion of user prompts (frame pixels -> model-input pixels)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ..modeling.prompt_encoder import LABEL_BOX_BR, LABEL_BOX_TL
from .state import Clicks


def _scale(xy: torch.Tensor, size: tuple[int, int], image_size: int) -> torch.Tensor:
    """(x, y) frame pixels -> model-input pixels (the frame is resized to a square)."""
    h, w = size
    return xy / torch.tensor([w, h], dtype=torch.float32) * image_size


def prepare_points(
    points: Sequence[Sequence[float]] | np.ndarray | None,
    labels: Sequence[int] | np.ndarray | None,
    size: tuple[int, int],
    image_size: int,
    device: torch.device,
) -> Clicks | None:
    """Check clicks (``P x 2`` (x, y) inside the ``H x W`` frame, labels 0/1) and convert."""
    if points is None:
        if labels is not None:
            raise ValueError("labels given without points")
        return None
    pts = torch.as_tensor(np.asarray(points, dtype=np.float32)).reshape(-1, 2) if len(points) else torch.zeros(0, 2)
    if labels is None:
        raise ValueError("points need labels (1 = positive, 0 = negative)")
    lab = torch.as_tensor(np.asarray(labels, dtype=np.int64)).reshape(-1)
    if pts.shape[0] == 0:
        raise ValueError("empty list of points")
    if lab.shape[0] != pts.shape[0]:
        raise ValueError(f"{pts.shape[0]} points but {lab.shape[0]} labels")
    if not torch.isin(lab, torch.tensor([0, 1])).all():
        raise ValueError(f"point labels must be 0 (negative) or 1 (positive), got {lab.tolist()}")
    _check_inside(pts, size, "point")
    return Clicks(_scale(pts, size, image_size)[None].to(device), lab.to(torch.int32)[None].to(device))


def prepare_box(box: Sequence[float] | np.ndarray, size: tuple[int, int], image_size: int, device: torch.device) -> Clicks:
    """Check a box (x0, y0, x1, y1) inside the frame and turn it into two corner clicks."""
    b = torch.as_tensor(np.asarray(box, dtype=np.float32)).reshape(-1)
    if b.numel() != 4:
        raise ValueError(f"a box is (x0, y0, x1, y1), got {b.numel()} numbers")
    if not torch.isfinite(b).all():
        raise ValueError(f"box has non-finite coordinates: {b.tolist()}")
    if b[2] <= b[0] or b[3] <= b[1]:
        raise ValueError(f"box must have x1 > x0 and y1 > y0, got {b.tolist()}")
    corners = b.reshape(2, 2)
    h, w = size
    if (corners < 0).any() or (corners[:, 0] > w).any() or (corners[:, 1] > h).any():
        raise ValueError(f"box {b.tolist()} lies outside the {w}x{h} frame")
    labels = torch.tensor([[LABEL_BOX_TL, LABEL_BOX_BR]], dtype=torch.int32)
    return Clicks(_scale(corners, size, image_size)[None].to(device), labels.to(device))


def prepare_mask(mask: np.ndarray | torch.Tensor, size: tuple[int, int], image_size: int, device: torch.device) -> torch.Tensor:
    """Check an ``H x W`` mask at the frame's size; returns ``1 x 1 x S x S`` float 0/1 at
    the model's input size (bilinear + antialias, then >= 0.5, as Meta's predictor)."""
    m = torch.as_tensor(np.asarray(mask)) if not isinstance(mask, torch.Tensor) else mask.detach().cpu()
    if m.ndim == 3 and m.shape[0] == 1:
        m = m[0]
    if m.ndim != 2:
        raise ValueError(f"a mask prompt must be H x W, got shape {tuple(m.shape)}")
    if tuple(m.shape) != tuple(size):
        raise ValueError(f"mask of size {tuple(m.shape)} for a frame of size {tuple(size)}")
    if m.dtype == torch.bool:
        m = m.float()
    elif m.is_floating_point() or m.dtype in (torch.uint8, torch.int32, torch.int64):
        vals = torch.unique(m)
        if not bool(((vals == 0) | (vals == 1) | (vals == 255)).all()):
            raise ValueError("a mask prompt must be binary (0/1, 0/255 or bool); for a label map pass (labels == obj_id)")
        m = (m > 0).float()
    else:
        raise ValueError(f"unsupported mask dtype {m.dtype}")
    if not bool(m.any()):
        raise ValueError("empty mask prompt: the mask has no foreground pixel")
    m = m[None, None].to(device)
    if tuple(m.shape[-2:]) != (image_size, image_size):
        m = F.interpolate(m, (image_size, image_size), mode="bilinear", align_corners=False, antialias=True)
        m = (m >= 0.5).float()
        if not bool(m.any()):
            raise ValueError(f"mask prompt vanishes at the model's {image_size}px input (too small); use clicks")
    return m


def _check_inside(pts: torch.Tensor, size: tuple[int, int], what: str) -> None:
    h, w = size
    if not torch.isfinite(pts).all():
        raise ValueError(f"{what} coordinates must be finite, got {pts.tolist()}")
    bad = (pts[:, 0] < 0) | (pts[:, 0] >= w) | (pts[:, 1] < 0) | (pts[:, 1] >= h)
    if bad.any():
        raise ValueError(f"{what} {pts[bad][0].tolist()} lies outside the {w}x{h} frame")
