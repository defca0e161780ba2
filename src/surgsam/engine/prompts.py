"""Validation of input frames and user prompts, and conversion of prompts (frame pixels ->
model-input pixels): the one place that checks them, for the video engine and the image
predictor alike.

Limits, checked before any work is done (:data:`MAX_OBJ_ID`, :data:`MAX_CLICKS`): object ids
are 1..255, the pixel values of a palette PNG mask (which also bounds a session to 255
objects); one prompt holds at most 64 clicks.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ..io.prompt_args import parse_pairs as parse_pairs  # re-exported: it lives with the torch-free CLI prompts
from ..modeling.prompt_encoder import LABEL_BOX_BR, LABEL_BOX_TL
from .state import Clicks

#: Object ids are ``MIN_OBJ_ID..MAX_OBJ_ID``: the values a palette PNG mask can hold (0 is background).
MIN_OBJ_ID = 1
MAX_OBJ_ID = 255
#: The most clicks one ``add_prompt`` call may give (SAM 2 is trained with a handful; each costs decoder work).
MAX_CLICKS = 64


def check_frame(frame: object, what: str = "a frame") -> torch.Tensor:
    """``H x W x 3`` uint8 RGB (numpy array or torch tensor, any device) -> a torch uint8 tensor
    sharing its memory where it can (a read-only array is copied: torch needs writable memory).
    Not an array: TypeError; wrong shape or empty: ValueError; another dtype: TypeError."""
    if isinstance(frame, np.ndarray):
        shape, dtype = frame.shape, frame.dtype
        uint8 = frame.dtype == np.uint8
    elif isinstance(frame, torch.Tensor):
        shape, dtype = tuple(frame.shape), frame.dtype
        uint8 = frame.dtype == torch.uint8
    else:
        hint = (
            " (for a PIL image use np.asarray(img.convert('RGB')))" if type(frame).__module__.startswith("PIL") else ""
        )
        raise TypeError(
            f"{what} must be an H x W x 3 uint8 array (a numpy array or torch tensor), got {type(frame).__name__}{hint}"
        )
    if len(shape) != 3 or shape[2] != 3:
        raise ValueError(f"{what} must be H x W x 3 (RGB, channels last), got shape {tuple(shape)}")
    if shape[0] == 0 or shape[1] == 0:
        raise ValueError(f"{what} is empty: shape {tuple(shape)}")
    if not uint8:
        raise TypeError(f"{what} must have dtype uint8 (0..255), got {dtype}")
    if isinstance(frame, torch.Tensor):
        return frame.detach()
    return torch.from_numpy(np.ascontiguousarray(frame) if frame.flags.writeable else frame.copy())


def check_obj_id(obj_id: object) -> int:
    """``obj_id`` as an int, or a clear error: not an integer (TypeError), outside 1..255 (ValueError)."""
    if not isinstance(obj_id, (int, np.integer)) or isinstance(obj_id, (bool, np.bool_)):
        raise TypeError(f"obj_id must be an int, got {type(obj_id).__name__}")
    oid = int(obj_id)
    if not MIN_OBJ_ID <= oid <= MAX_OBJ_ID:
        raise ValueError(
            f"object ids must be {MIN_OBJ_ID}..{MAX_OBJ_ID} (the pixel values of a palette PNG mask), got {oid}"
        )
    return oid


def check_clicks(points: object, labels: object) -> tuple[np.ndarray, np.ndarray] | None:
    """Check the form of clicks without a frame: ``points`` ``P x 2`` numbers (or one ``[x, y]``),
    ``labels`` ``P`` integers 0/1, ``1 <= P <= MAX_CLICKS``. Returns ``(P x 2 float32, P int64)``
    or None when there are no points. Raises TypeError / ValueError naming what is wrong."""
    if points is None:
        if labels is not None:
            raise ValueError("labels given without points")
        return None
    if isinstance(points, (str, bytes, dict)):
        raise TypeError(f"points must be a P x 2 list or array of (x, y) numbers, got a {type(points).__name__}")
    if isinstance(points, torch.Tensor):
        points = points.detach().cpu().numpy()
    try:
        pts = np.asarray(points)
    except ValueError:
        raise ValueError("points must be a P x 2 list of (x, y) pairs; the rows have different lengths") from None
    if pts.dtype == object or pts.dtype.kind not in "iuf":
        raise TypeError(f"point coordinates must be numbers, got {pts.dtype} values")
    if pts.ndim == 1 and pts.shape[0] == 2:
        pts = pts[None]  # one click given as [x, y]
    if pts.size == 0:
        raise ValueError("empty list of points")
    if pts.ndim != 2 or pts.shape[1] != 2:
        raise ValueError(f"points must be P x 2 (x, y) pairs, got shape {tuple(pts.shape)}")
    if pts.shape[0] > MAX_CLICKS:
        raise ValueError(
            f"{pts.shape[0]} clicks in one prompt; the limit is {MAX_CLICKS} (surgsam.engine.prompts.MAX_CLICKS)"
        )
    if labels is None:
        raise ValueError("points need labels (1 = positive, 0 = negative)")
    if isinstance(labels, (str, bytes, dict)):
        raise TypeError(f"labels must be a list of 0/1 integers, got a {type(labels).__name__}")
    if isinstance(labels, torch.Tensor):
        labels = labels.detach().cpu().numpy()
    try:
        lab = np.asarray(labels)
    except ValueError:
        raise ValueError("labels must be a flat list of 0/1 integers") from None
    if lab.dtype == object or lab.dtype.kind not in "biuf":
        raise TypeError(
            f"point labels must be the integers 0 or 1, got {lab.dtype} values {lab.reshape(-1)[:5].tolist()}"
        )
    if lab.ndim == 0:
        lab = lab[None]
    if lab.ndim != 1:
        raise ValueError(f"labels must be a flat list of P values, got shape {tuple(lab.shape)}")
    if lab.shape[0] != pts.shape[0]:
        raise ValueError(f"{pts.shape[0]} points but {lab.shape[0]} labels")
    if lab.dtype.kind == "f" and not bool(np.all(np.isfinite(lab) & (lab == np.round(lab)))):
        raise ValueError(f"point labels must be 0 (negative) or 1 (positive), got {lab.tolist()}")
    lab = lab.astype(np.int64)
    if not bool(np.isin(lab, (0, 1)).all()):
        raise ValueError(f"point labels must be 0 (negative) or 1 (positive), got {lab.tolist()}")
    return pts.astype(np.float32), lab


def check_box(box: object) -> np.ndarray | None:
    """Check the form of a box without a frame: 4 finite numbers (x0, y0, x1, y1) with
    ``x1 > x0`` and ``y1 > y0``. Returns it as float32, or None."""
    if box is None:
        return None
    if isinstance(box, (str, bytes, dict)):
        raise TypeError(f"a box is (x0, y0, x1, y1) numbers, got a {type(box).__name__}")
    if isinstance(box, torch.Tensor):
        box = box.detach().cpu().numpy()
    try:
        b = np.asarray(box)
    except ValueError:
        raise ValueError("a box is (x0, y0, x1, y1): four numbers") from None
    if b.dtype == object or b.dtype.kind not in "iuf":
        raise TypeError(f"box coordinates must be numbers, got {b.dtype} values")
    b = b.astype(np.float32).reshape(-1)
    if b.size != 4:
        raise ValueError(f"a box is (x0, y0, x1, y1), got {b.size} numbers")
    if not np.isfinite(b).all():
        raise ValueError(f"box has non-finite coordinates (NaN or inf): {b.tolist()}")
    if b[2] <= b[0] or b[3] <= b[1]:
        raise ValueError(f"box must have x1 > x0 and y1 > y0, got {b.tolist()}")
    return b


def check_clicks_in_frame(
    points: object, labels: object, size: tuple[int, int]
) -> tuple[np.ndarray, np.ndarray] | None:
    """:func:`check_clicks`, and every click inside the ``H x W`` frame (``0 <= x < W``,
    ``0 <= y < H``, finite)."""
    checked = check_clicks(points, labels)
    if checked is not None:
        _check_inside(torch.from_numpy(checked[0]), size, "point")
    return checked


def check_box_in_frame(box: object, size: tuple[int, int]) -> np.ndarray | None:
    """:func:`check_box`, and the box inside the ``H x W`` frame (on its border is fine)."""
    b = check_box(box)
    if b is None:
        return None
    h, w = size
    if b[0] < 0 or b[1] < 0 or b[2] > w or b[3] > h:
        raise ValueError(f"box {b.tolist()} lies outside the {w}x{h} frame")
    return b


def check_prompt(obj_id: object, points: object = None, labels: object = None, box: object = None) -> int:
    """The up-front checks of one prompt that need no frame (id, click form and count, box
    form); returns the id as an int. Masks are checked against the frame later."""
    oid = check_obj_id(obj_id)
    check_clicks(points, labels)
    check_box(box)
    return oid


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
    """Check clicks (``P x 2`` (x, y) inside the ``H x W`` frame, labels 0/1; see
    :func:`check_clicks_in_frame`) and convert."""
    checked = check_clicks_in_frame(points, labels, size)
    if checked is None:
        return None
    pts, lab = (torch.from_numpy(a) for a in checked)
    return Clicks(_scale(pts, size, image_size)[None].to(device), lab.to(torch.int32)[None].to(device))


def prepare_box(
    box: Sequence[float] | np.ndarray, size: tuple[int, int], image_size: int, device: torch.device
) -> Clicks:
    """Check a box (x0, y0, x1, y1) inside the frame and turn it into two corner clicks."""
    checked = check_box_in_frame(box, size)
    if checked is None:
        raise ValueError("a box is (x0, y0, x1, y1), got None")
    corners = torch.from_numpy(checked).reshape(2, 2)
    labels = torch.tensor([[LABEL_BOX_TL, LABEL_BOX_BR]], dtype=torch.int32)
    return Clicks(_scale(corners, size, image_size)[None].to(device), labels.to(device))


def prepare_mask(
    mask: np.ndarray | torch.Tensor, size: tuple[int, int], image_size: int, device: torch.device
) -> torch.Tensor:
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
            raise ValueError(
                "a mask prompt must be binary (0/1, 0/255 or bool); for a label map pass (labels == obj_id)"
            )
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
        raise ValueError(f"{what} coordinates must be finite (no NaN or inf), got {pts.tolist()}")
    bad = (pts[:, 0] < 0) | (pts[:, 0] >= w) | (pts[:, 1] < 0) | (pts[:, 1] >= h)
    if bad.any():
        raise ValueError(f"{what} {pts[bad][0].tolist()} lies outside the {w}x{h} frame")
