"""Image-level prediction: one image, any number of prompt rounds (points, a box, a mask).

``ImagePredictor`` follows Meta's ``SAM2ImagePredictor`` (sam2 1.1.0) step for step:

* the image is resized to the model's square input and normalised (``SAM2Model.preprocess``;
  bilinear with antialiasing where Meta uses torchvision's ``Resize``),
* ``no_mem_embed`` is added to the top-level features, as for a first video frame,
* click coordinates are divided by the original width/height and scaled to the input size;
  a box becomes two points labelled 2 and 3 placed *before* the clicks,
* the prompt encoder and the mask decoder run directly (multimask as asked; in single-mask
  mode the decoder falls back to the best multimask output when the single mask is
  unstable); unlike video tracking, no object-score gating is applied,
* low-res logits are upsampled to the original size (bilinear, ``align_corners=False``) and
  thresholded at 0; the returned low-res logits are clamped to [-32, 32].

Example::

    model = surgsam.build_model("sam2.1_hiera_s", image_size=512, checkpoint="sam2.1_hiera_small.pt")
    pred = surgsam.ImagePredictor(model)
    pred.set_image(frame)                      # H x W x 3 uint8 RGB
    out = pred.predict(points=[[410, 220]], labels=[1])
    mask = out.masks[out.scores.argmax()]      # H x W bool
    out2 = pred.predict(points=[[410, 220], [380, 300]], labels=[1, 0],
                        mask_input=out.low_res_logits[out.scores.argmax()][None],
                        multimask_output=False)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Union

import numpy as np
import torch
import torch.nn.functional as F

from .engine.prompts import check_box_in_frame, check_clicks_in_frame, check_frame
from .modeling.sam2 import SAM2Model

ArrayLike = Union[np.ndarray, torch.Tensor, Sequence[Any]]

LOW_RES_CLAMP = 32.0  # Meta clamps returned low-res logits to +-32


@dataclass
class ImagePrediction:
    """Masks for one prompt round.

    masks: ``M x H x W`` bool at the original image size (M = 3 with multimask output, else 1).
    scores: ``M`` predicted IoU of each mask.
    low_res_logits: ``M x 4h x 4w`` float32 logits (256 x 256 at 1024 px, 128 x 128 at
        512 px); ``low_res_logits[i][None]`` can be passed back as ``mask_input``.
    """

    masks: np.ndarray
    scores: np.ndarray
    low_res_logits: np.ndarray

    @property
    def best(self) -> int:
        """Index of the mask with the highest predicted IoU."""
        return int(np.argmax(self.scores))


class ImagePredictor:
    """Segment objects in a single image from clicks, a box and/or a previous mask.

    Args:
        model: a :class:`~surgsam.modeling.SAM2Model` (``build_model(...)``), normally in
            eval mode (the single-mask stability fallback is an inference-time behaviour).
        mask_threshold: logit threshold for the binary masks (Meta's default 0).
    """

    def __init__(self, model: SAM2Model, *, mask_threshold: float = 0.0) -> None:
        self.model = model
        self.mask_threshold = float(mask_threshold)
        self.reset()

    # ------------------------------------------------------------------ state
    def reset(self) -> None:
        """Forget the current image."""
        self._features: torch.Tensor | None = None
        self._high_res: tuple[torch.Tensor, torch.Tensor] | None = None
        self._orig_hw: tuple[int, int] | None = None

    @property
    def is_image_set(self) -> bool:
        return self._features is not None

    @property
    def orig_hw(self) -> tuple[int, int]:
        """(H, W) of the current image."""
        self._require_image()
        assert self._orig_hw is not None
        return self._orig_hw

    @property
    def low_res_size(self) -> tuple[int, int]:
        """(4h, 4w): the side of ``low_res_logits`` and of a ``mask_input``."""
        return self.model.sam_prompt_encoder.mask_input_size

    def get_image_embedding(self) -> torch.Tensor:
        """``1 x C x h x w`` top-level features of the current image (``no_mem_embed`` added)."""
        self._require_image()
        assert self._features is not None
        return self._features

    # ------------------------------------------------------------------ image
    @torch.no_grad()
    def set_image(self, image: np.ndarray | torch.Tensor) -> None:
        """Compute the image features once; later ``predict`` calls reuse them.

        Args:
            image: ``H x W x 3`` uint8 RGB, a numpy array or a torch tensor (any device).
        """
        frame = check_frame(image, "image")
        self.reset()
        h, w = frame.shape[:2]
        x = frame.to(self.model.device).permute(2, 0, 1).unsqueeze(0)  # 1 x 3 x H x W uint8
        feats = self.model.encode_image(self.model.preprocess(x))
        # An image is an "initial conditioning frame" without memory: Meta adds no_mem_embed.
        self._features = self.model.condition_on_memory(feats, [], [])
        self._high_res = feats.high_res
        self._orig_hw = (int(h), int(w))

    # ------------------------------------------------------------------ prompts
    @torch.no_grad()
    def predict(
        self,
        points: ArrayLike | None = None,
        labels: ArrayLike | None = None,
        box: ArrayLike | None = None,
        mask_input: ArrayLike | None = None,
        *,
        multimask_output: bool = True,
    ) -> ImagePrediction:
        """Predict masks for the current image.

        Args:
            points: ``N x 2`` clicks as (x, y) in original-image pixels.
            labels: ``N`` labels, 1 = foreground, 0 = background.
            box: ``(x0, y0, x1, y1)`` in original-image pixels.
            mask_input: ``1 x 4h x 4w`` (or ``4h x 4w``) low-res logits, typically
                ``prev.low_res_logits[prev.best][None]`` from an earlier call.
            multimask_output: return 3 candidate masks (best for a single ambiguous click)
                instead of 1.
        """
        self._require_image()
        assert self._features is not None and self._high_res is not None and self._orig_hw is not None
        h, w = self._orig_hw
        dev = self.model.device
        pts = check_clicks_in_frame(points, labels, (h, w))
        bx = check_box_in_frame(box, (h, w))
        mask = _check_mask_input(mask_input, self.low_res_size)
        if pts is None and bx is None and mask is None:
            raise ValueError("empty prompt: give points (with labels), a box, or a mask_input")

        s = float(self.model.image_size)
        coords_list, labels_list = [], []
        if bx is not None:
            corners = _to_model_coords(torch.as_tensor(bx, dtype=torch.float32).reshape(1, 2, 2), h, w, s)
            coords_list.append(corners)
            labels_list.append(torch.tensor([[2, 3]], dtype=torch.int32))
        if pts is not None:
            coords, labs = pts
            coords_list.append(_to_model_coords(torch.as_tensor(coords, dtype=torch.float32)[None], h, w, s))
            labels_list.append(torch.as_tensor(labs, dtype=torch.int32)[None])
        point_prompt = None
        if coords_list:
            point_prompt = (torch.cat(coords_list, dim=1).to(dev), torch.cat(labels_list, dim=1).to(dev))
        mask_t = torch.as_tensor(mask, dtype=torch.float32, device=dev)[None, None] if mask is not None else None

        pe = self.model.sam_prompt_encoder
        sparse, dense = pe(points=point_prompt, boxes=None, masks=mask_t)
        dec = self.model.sam_mask_decoder(
            self._features, pe.get_dense_pe(), sparse, dense, multimask_output, False, self._high_res
        )
        low = dec.masks.float()  # 1 x M x 4h x 4w
        up = F.interpolate(low, (h, w), mode="bilinear", align_corners=False)
        masks = up > self.mask_threshold
        low = low.clamp(-LOW_RES_CLAMP, LOW_RES_CLAMP)
        return ImagePrediction(
            masks=masks[0].cpu().numpy(),
            scores=dec.iou_pred[0].float().cpu().numpy(),
            low_res_logits=low[0].cpu().numpy(),
        )

    def _require_image(self) -> None:
        if self._features is None:
            raise RuntimeError("no image set: call set_image(image) before predict()")


# ---------------------------------------------------------------------- validation
# frames, clicks and boxes are checked by surgsam.engine.prompts, as in the video engine
def _as_float_array(x: Any, name: str) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    try:
        arr = np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError) as e:
        raise ValueError(f"{name} must be numeric, got {x!r}") from e
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contains NaN or infinite values")
    return arr


def _check_mask_input(mask: Any, size: tuple[int, int]) -> np.ndarray | None:
    if mask is None:
        return None
    m = _as_float_array(mask, "mask_input")
    if m.ndim > 2 and m.shape[0] != 1:
        raise ValueError(
            f"mask_input must be a single 1 x {size[0]} x {size[1]} logit map, got shape {m.shape}; "
            f"to refine the best mask of a previous call pass prev.low_res_logits[prev.best][None]"
        )
    while m.ndim > 2 and m.shape[0] == 1:
        m = m[0]
    if m.shape != tuple(size):
        raise ValueError(
            f"mask_input must be 1 x {size[0]} x {size[1]} low-res logits (the model's 4h x 4w), "
            f"got shape {np.shape(mask)}"
        )
    return m.astype(np.float32)


def _to_model_coords(xy: torch.Tensor, h: int, w: int, size: float) -> torch.Tensor:
    """Original-image pixels -> model-input pixels: divide by (W, H), scale by the input side
    (the same float32 operations as Meta's ``SAM2Transforms.transform_coords``)."""
    xy = xy.clone()
    xy[..., 0] = xy[..., 0] / w
    xy[..., 1] = xy[..., 1] / h
    return xy * size
