"""A tiny deterministic synthetic video (textured background, two moving objects) for tests."""

from __future__ import annotations

import numpy as np


def moving_objects_video(n: int = 20, h: int = 180, w: int = 240, seed: int = 0):
    """Returns (frames: n x h x w x 3 uint8, masks: {obj_id: n x h x w bool})."""
    rng = np.random.default_rng(seed)
    base = rng.integers(60, 120, size=(h // 4 + 1, w // 4 + 1, 3)).astype(np.float32)
    base = np.kron(base, np.ones((4, 4, 1)))[:h, :w]
    yy, xx = np.mgrid[:h, :w]
    xx, yy = xx * (240 / w), yy * (180 / h)  # geometry is defined on a 240 x 180 canvas
    frames, masks = [], {1: [], 2: []}
    for t in range(n):
        img = base + rng.normal(0, 6, size=base.shape)
        cx, cy = 50 + 4 * t, 70 + 2 * np.sin(t / 3) * 10
        disc = (xx - cx) ** 2 + (yy - cy) ** 2 < 28**2
        bx, by = 190 - 3 * t, 120
        rect = (np.abs(xx - bx) < 30) & (np.abs(yy - by) < 14)
        img[disc] = (200, 60, 60)
        img[rect & ~disc] = (180, 180, 190)
        frames.append(np.clip(img, 0, 255).astype(np.uint8))
        masks[1].append(disc)
        masks[2].append(rect & ~disc)
    return np.stack(frames), {k: np.stack(v) for k, v in masks.items()}
