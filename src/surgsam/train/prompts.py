"""Prompt simulation for training, as SAM 2 trains (SAM2Train).

Per batch (all objects share one decision, like Meta's trainer):

* initial conditioning frame(s): with ``prob_point_input`` (0.5) click-type input, of which a
  box with ``prob_box_input`` (0.5, so 0.25 overall) and otherwise one positive click drawn
  uniformly inside the object; else (0.5) the ground-truth mask itself is the prompt.
* with click-type input, ``num_correction_clicks`` (7) correction clicks on the frames to
  correct (the initial frame, plus a random other frame with ``num_frames_to_correct`` = 2):
  each click is drawn uniformly from the error region of the current prediction, positive
  in false negatives, negative in false positives (with ``prob_sample_from_gt`` it is drawn
  as if the prediction were empty, i.e. inside the object).
* image samples (one frame) always use click-type input.

Coordinates are model-input pixels ``(x, y)`` (integers; the prompt encoder adds 0.5).
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import torch

from ..modeling.prompt_encoder import LABEL_BOX_BR, LABEL_BOX_TL

__all__ = [
    "PromptConfig",
    "PromptPlan",
    "plan_prompts",
    "initial_clicks",
    "sample_error_clicks",
    "sample_box",
    "mask_to_box",
]


@dataclass(frozen=True)
class PromptConfig:
    """Prompt simulation settings (defaults: Meta's SAM 2.1 fine-tuning configs).

    box_noise: box corners jitter by up to this fraction of the box side ...
    box_noise_px: ... and at most this many pixels of a 1024-px input (scaled with S).
    """

    prob_point_input: float = 0.5
    prob_box_input: float = 0.5
    num_correction_clicks: int = 7
    num_init_cond_frames: int = 1
    rand_init_cond_frames: bool = True
    num_frames_to_correct: int = 2
    rand_frames_to_correct: bool = True
    add_corrected_as_cond: bool = True
    prob_sample_from_gt: float = 0.1
    box_noise: float = 0.1
    box_noise_px: float = 20.0

    def __post_init__(self) -> None:
        if self.num_init_cond_frames < 1:
            raise ValueError("num_init_cond_frames must be >= 1")
        if self.num_correction_clicks < 0:
            raise ValueError("num_correction_clicks must be >= 0")


@dataclass
class PromptPlan:
    """What one batch is prompted with.

    kind: ``"point"`` (one click), ``"box"`` or ``"mask"`` on the initial conditioning frames.
    num_frames: T.
    init_cond_frames: prompted frames (frame 0 first); correct_frames: frames that receive
    correction clicks; cond_frames: frames whose memory is a conditioning memory.
    """

    kind: str
    num_frames: int
    init_cond_frames: list[int]
    correct_frames: list[int]
    cond_frames: list[int]

    @property
    def processing_order(self) -> list[int]:
        """Initial conditioning frames first, then the others in time order (SAM2Train)."""
        rest = [t for t in range(self.num_frames) if t not in self.init_cond_frames]
        return list(self.init_cond_frames) + rest


def plan_prompts(num_frames: int, cfg: PromptConfig, rng: random.Random) -> PromptPlan:
    """Draw the prompt type and the prompted / corrected frames of a batch of ``num_frames``."""
    p_point = 1.0 if num_frames == 1 else cfg.prob_point_input  # images: always clicks (SAM task)
    n_init = 1 if num_frames == 1 else min(cfg.num_init_cond_frames, num_frames)
    n_corr = 1 if num_frames == 1 else min(cfg.num_frames_to_correct, num_frames)
    use_points = rng.random() < p_point
    if cfg.rand_init_cond_frames and n_init > 1:
        n_init = rng.randint(1, n_init)
    if use_points and cfg.rand_frames_to_correct and n_corr > n_init:
        n_corr = rng.randint(n_init, n_corr)
    init = [0] + sorted(rng.sample(range(1, num_frames), n_init - 1))
    if not use_points:
        kind, correct = "mask", []
    else:
        kind = "box" if rng.random() < cfg.prob_box_input else "point"
        others = [t for t in range(num_frames) if t not in init]
        extra = max(0, n_corr - n_init)
        correct = init + sorted(rng.sample(others, min(extra, len(others))))
        if cfg.num_correction_clicks == 0:
            correct = []
    cond = sorted(set(init) | (set(correct) if cfg.add_corrected_as_cond else set()))
    return PromptPlan(kind, num_frames, init, correct, cond)


def mask_to_box(masks: torch.Tensor) -> torch.Tensor:
    """``N x H x W`` bool -> ``N x 4`` (x0, y0, x1, y1) tight boxes in pixels (zeros if empty)."""
    n, h, w = masks.shape
    ys = torch.arange(h, device=masks.device)
    xs = torch.arange(w, device=masks.device)
    rows, cols = masks.any(2), masks.any(1)  # N x H, N x W
    big = torch.iinfo(torch.long).max
    y0 = torch.where(rows, ys, big).amin(1)
    y1 = torch.where(rows, ys, -1).amax(1)
    x0 = torch.where(cols, xs, big).amin(1)
    x1 = torch.where(cols, xs, -1).amax(1)
    box = torch.stack([x0, y0, x1, y1], 1)
    empty = ~rows.any(1)
    return torch.where(empty[:, None], torch.zeros_like(box), box).float()


def sample_box(
    gt: torch.Tensor, cfg: PromptConfig, generator: torch.Generator | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Noisy box prompts from ``N x S x S`` masks: (``N x 2 x 2`` corners, ``N x 2`` labels 2/3)."""
    n, h, w = gt.shape
    box = mask_to_box(gt)
    if cfg.box_noise > 0:
        bound = torch.tensor(cfg.box_noise_px * max(h, w) / 1024.0, device=gt.device)
        dx = torch.minimum((box[:, 2] - box[:, 0]) * cfg.box_noise, bound)
        dy = torch.minimum((box[:, 3] - box[:, 1]) * cfg.box_noise, bound)
        noise = 2 * torch.rand(n, 4, device=gt.device, generator=generator) - 1
        box = box + noise * torch.stack([dx, dy, dx, dy], 1)
        hi = torch.tensor([w - 1, h - 1, w - 1, h - 1], device=gt.device, dtype=box.dtype)
        box = torch.minimum(box.clamp(min=0), hi)
    labels = torch.tensor([LABEL_BOX_TL, LABEL_BOX_BR], dtype=torch.int32, device=gt.device).expand(n, 2)
    return box.view(n, 2, 2), labels.contiguous()


def sample_error_clicks(
    gt: torch.Tensor, pred: torch.Tensor | None, generator: torch.Generator | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """One click per object, uniform over its error region (SAM 2's "uniform" sampling).

    Args:
        gt, pred: ``N x H x W`` bool (pred None = an empty prediction: a click inside gt).
    Returns (``N x 1 x 2`` float (x, y) pixels, ``N x 1`` int32 labels): a positive click in
    a false-negative pixel or a negative one in a false-positive pixel; when the prediction
    is exactly right, a negative click in the background.
    """
    gt = gt.bool()
    pred = torch.zeros_like(gt) if pred is None else pred.bool()
    n, h, w = gt.shape
    fp, fn = pred & ~gt, gt & ~pred
    all_correct = ~(fp | fn).flatten(1).any(1)[:, None, None]
    noise = torch.rand(n, h, w, 2, device=gt.device, generator=generator)
    noise[..., 0] *= fp | (all_correct & ~gt)  # channel 0: negative clicks
    noise[..., 1] *= fn  # channel 1: positive clicks
    idx = noise.flatten(1).argmax(1)
    labels = (idx % 2).to(torch.int32)
    pix = idx // 2
    pts = torch.stack([pix % w, pix // w], 1).float()
    return pts[:, None], labels[:, None]


def initial_clicks(
    kind: str, gt: torch.Tensor, cfg: PromptConfig, generator: torch.Generator | None = None
) -> tuple[torch.Tensor, torch.Tensor] | None:
    """The prompt of an initial conditioning frame for ``N x S x S`` targets: clicks for
    ``"point"`` / ``"box"``, None for ``"mask"`` (the mask is the prompt)."""
    if kind == "mask":
        return None
    if kind == "box":
        return sample_box(gt, cfg, generator)
    if kind == "point":
        return sample_error_clicks(gt, None, generator)
    raise ValueError(f"unknown prompt kind {kind!r}")
