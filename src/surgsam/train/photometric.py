"""Photometric augmentation of training clips: one random change of colour and light per clip.

A clip's frames get the same draw (a video's look does not change from frame to frame): channel
gains (white balance / colour temperature), brightness, contrast around the clip's mean
luminance, saturation and gamma. Geometry, masks and labels are untouched. The ranges are the
generic ones of colour-jitter augmentation, not fitted to any held-out look.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

__all__ = ["Photometric", "draw_photometric"]

# Rec. 601 luma weights (R, G, B)
_LUMA = torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)


@dataclass(frozen=True)
class Photometric:
    """One draw. ``gains``: per-channel factors (R, G, B); ``brightness``/``contrast``/
    ``saturation``: factors (1 = unchanged); ``gamma``: exponent on [0, 1] intensities."""

    gains: tuple[float, float, float]
    brightness: float
    contrast: float
    saturation: float
    gamma: float

    def apply(self, frames: torch.Tensor) -> torch.Tensor:
        """``T x 3 x H x W`` uint8 -> the same shape, uint8 (rounded, clipped to 0..255)."""
        x = frames.float() / 255.0
        x = x * torch.tensor(self.gains).view(1, 3, 1, 1) * self.brightness
        luma = (x * _LUMA).sum(1, keepdim=True)  # T x 1 x H x W
        x = luma + (x - luma) * self.saturation
        mean = luma.mean()
        x = mean + (x - mean) * self.contrast
        x = x.clamp(0.0, 1.0) ** self.gamma
        return (x * 255.0).round().to(torch.uint8)


def draw_photometric(rng: np.random.Generator) -> Photometric:
    """A random :class:`Photometric` (six draws from ``rng``, always the same number)."""
    gains = np.exp(rng.normal(0.0, 0.1, size=3))
    brightness, contrast, saturation = rng.uniform(0.7, 1.3), rng.uniform(0.7, 1.3), rng.uniform(0.6, 1.4)
    gamma = float(np.exp(rng.uniform(np.log(0.75), np.log(1.35))))
    return Photometric(
        (float(gains[0]), float(gains[1]), float(gains[2])),
        float(brightness),
        float(contrast),
        float(saturation),
        gamma,
    )
