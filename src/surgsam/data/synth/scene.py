"""The tissue scene: a world canvas larger than the view, with procedural tissue texture,
vessels, fat, wet gloss, and labelled tissue objects (kidney parenchyma, covered kidney, small
intestine). The camera (see :mod:`.render`) looks at a moving window of it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from .style import StyleSpec, TissuePalette, style_spec

__all__ = ["TISSUE_CLASSES", "World", "make_world", "value_noise"]

# Tissue objects of EndoVis18 style videos: id -> (category, base RGB in [0, 1] of the default style;
# other styles: ``TissuePalette.organs``).
TISSUE_CLASSES: dict[int, tuple[str, tuple[float, float, float]]] = {
    11: ("kidney-parenchyma", (0.42, 0.13, 0.12)),
    12: ("covered-kidney", (0.84, 0.66, 0.36)),
    17: ("small-intestine", (0.86, 0.50, 0.46)),
}


@dataclass
class World:
    """World canvas: ``texture`` (H x W x 3 float32 in [0, 1]), ``gloss`` (H x W, where the wet
    surface reflects), ``labels`` (H x W uint8 tissue ids, 0 elsewhere), ``categories``.
    """

    texture: np.ndarray
    gloss: np.ndarray
    labels: np.ndarray
    categories: dict[int, str]

    @property
    def size(self) -> tuple[int, int]:
        return self.texture.shape[0], self.texture.shape[1]


def _resize_f(a: np.ndarray, h: int, w: int) -> np.ndarray:
    return np.asarray(
        Image.fromarray(np.ascontiguousarray(a, dtype=np.float32)).resize((w, h), Image.Resampling.BICUBIC)
    )


def value_noise(
    rng: np.random.Generator, h: int, w: int, cell: float, octaves: int = 4, persistence: float = 0.5
) -> np.ndarray:
    """Fractal value noise, ``h x w`` float32 normalised to [0, 1]; ``cell`` = size of the
    coarsest feature in pixels; each octave halves it and scales its amplitude by ``persistence``.
    """
    out = np.zeros((h, w), dtype=np.float32)
    amp, total = 1.0, 0.0
    for _ in range(octaves):
        gh, gw = max(2, int(h / cell) + 2), max(2, int(w / cell) + 2)
        out += amp * _resize_f(rng.random((gh, gw), dtype=np.float32), h, w)
        total += amp
        amp *= persistence
        cell = max(1.0, cell / 2)
    out /= total
    lo, hi = float(out.min()), float(out.max())
    return (out - lo) / max(hi - lo, 1e-6)


def _blur(a: np.ndarray, radius: float) -> np.ndarray:
    """Gaussian blur of a [0, 1] float map (through 8-bit PIL, precise enough for masks)."""
    im = Image.fromarray(np.clip(a * 255, 0, 255).astype(np.uint8))
    return np.asarray(im.filter(ImageFilter.GaussianBlur(radius)), dtype=np.float32) / 255.0


def _curves(rng: np.random.Generator, h: int, w: int, n: int, width: tuple[int, int], length: int) -> np.ndarray:
    """``n`` smooth random curves (vessels, folds) drawn as a [0, 1] map."""
    im = Image.new("L", (w, h), 0)
    draw = ImageDraw.Draw(im)
    for _ in range(n):
        x, y = rng.uniform(0, w), rng.uniform(0, h)
        ang = rng.uniform(0, 2 * np.pi)
        wd = int(rng.integers(width[0], width[1] + 1))
        pts = [(x, y)]
        for _ in range(length):
            ang += rng.normal(0, 0.25)
            step = rng.uniform(3, 7)
            x, y = x + step * np.cos(ang), y + step * np.sin(ang)
            pts.append((x, y))
            if rng.random() < 0.04:  # a branch thins out
                wd = max(1, wd - 1)
        draw.line(pts, fill=255, width=wd, joint="curve")
    return np.asarray(im, dtype=np.float32) / 255.0


def _blob(rng: np.random.Generator, h: int, w: int, cx: float, cy: float, r: float, wobble: float = 0.35) -> np.ndarray:
    """A soft irregular blob (``h x w`` in [0, 1], 0.5 at its edge) with random radial harmonics."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    dx, dy = xx - cx, yy - cy
    ang = np.arctan2(dy, dx)
    rad = np.ones_like(ang)
    for k in range(1, 5):
        rad += wobble / k * rng.uniform(-1, 1) * np.cos(k * ang + rng.uniform(0, 2 * np.pi))
    d = np.sqrt(dx * dx + dy * dy) / (r * np.maximum(rad, 0.3))
    return np.clip((1.0 - d) * 6.0 + 0.5, 0.0, 1.0)


def _gloss(rng: np.random.Generator, h: int, w: int, scale: int, strength: float) -> np.ndarray:
    """Where the wet surface can glint: small bright spots (fine noise, peaks only), in [0, ~1.3]."""
    spots = value_noise(rng, h, w, scale / 28, octaves=2)
    broad = value_noise(rng, h, w, scale / 6, octaves=2)
    return (strength * (0.75 * spots + 0.45 * broad)).astype(np.float32)


def _mix(a: np.ndarray, b, t: np.ndarray) -> np.ndarray:
    return a * (1 - t[..., None]) + np.asarray(b, dtype=np.float32) * t[..., None]


def make_world(
    rng: np.random.Generator,
    h: int,
    w: int,
    tissue_ids: list[int],
    *,
    style: StyleSpec | None = None,
    style_rng: np.random.Generator | None = None,
) -> World:
    """Build a ``h x w`` world with background tissue and the given tissue objects.

    ``style`` (default: the default style) sets colours and texture; a non-default style draws
    its own randomness (speckle, veins) from ``style_rng`` only, so ``rng`` is consumed the same
    way in every style."""
    style = style or style_spec("default")
    pal = style.palette
    extras = not style.is_default
    if extras and style_rng is None:
        raise ValueError(f"style {style.name!r} needs a style_rng")
    scale = min(h, w)
    big = value_noise(rng, h, w, scale / 2.5, octaves=3)
    mid = value_noise(rng, h, w, scale / 9, octaves=3)
    fine = value_noise(rng, h, w, scale / 40, octaves=2)

    hue = rng.uniform(-0.04, 0.04)
    muscle = np.array([pal.muscle[0] + hue, pal.muscle[1], pal.muscle[2]], dtype=np.float32)
    pink = np.array([pal.pink[0], pal.pink[1] + hue, pal.pink[2]], dtype=np.float32)
    tex = _mix(np.broadcast_to(muscle, (h, w, 3)).copy(), pink, np.clip((big - 0.35) * 2.2, 0, 1))
    tex *= (0.78 + 0.35 * mid)[..., None]
    tex *= (0.92 + 0.16 * fine)[..., None]

    # fat patches: pale yellow where a mid-scale noise crosses a threshold
    fat_n = value_noise(rng, h, w, scale / 5, octaves=3)
    thr = rng.uniform(0.62, 0.75)
    if extras:
        thr -= pal.fat_bias
    fat = np.clip((fat_n - thr) * 5, 0, 1) * (0.55 + 0.45 * mid)
    fat_col = np.array(pal.fat, dtype=np.float32) * (0.8 + 0.3 * fine)[..., None]
    tex = tex * (1 - fat[..., None]) + fat_col * fat[..., None]

    # crevices: dark where the large-scale noise is low
    crev = np.clip((0.18 - big) * 6, 0, 1) + np.clip((0.12 - mid) * 5, 0, 1) * 0.6
    tex *= (1 - pal.crevice * np.clip(crev, 0, 1))[..., None]

    # vessels: thin dark red curves, blurred
    ves = _blur(_curves(rng, h, w, int(rng.integers(8, 18)), (1, 3), 60), 1.2)
    tex = _mix(tex, list(pal.vessel), ves * 0.6)
    if extras:
        assert style_rng is not None
        tex = _style_texture(style_rng, tex, pal, h, w, scale)

    gloss = _gloss(rng, h, w, scale, 1.0)
    labels = np.zeros((h, w), dtype=np.uint8)
    categories: dict[int, str] = {}
    for k in tissue_ids:
        name = TISSUE_CLASSES[k][0]
        col = pal.organs[k]
        categories[k] = name
        cx, cy = rng.uniform(0.25, 0.75) * w, rng.uniform(0.25, 0.75) * h
        region = _blob(rng, h, w, cx, cy, rng.uniform(0.16, 0.28) * scale)
        tex, gl = _tissue_layer(rng, k, col, tex, region, h, w, scale, pal.septa)
        gloss = np.where(region > 0.5, gl, gloss)
        labels[region > 0.5] = k
        # a darker rim where the organ meets the background (it sits above it)
        rim = np.clip(region * 2.0, 0, 1) - np.clip((region - 0.5) * 2.0, 0, 1)
        tex *= (1 - 0.35 * _blur(rim, 2.0))[..., None]
    tex = np.clip(tex, 0, 1).astype(np.float32)
    return World(tex, gloss.astype(np.float32), labels, categories)


def _style_texture(
    rng: np.random.Generator, tex: np.ndarray, pal: TissuePalette, h: int, w: int, scale: int
) -> np.ndarray:
    """A non-default style's extra texture: fine granular speckle and thin bluish veins."""
    if pal.speckle > 0:
        grain = value_noise(rng, h, w, max(2.0, scale / 70), octaves=2)
        tex = tex * (1 - pal.speckle / 2 + pal.speckle * grain)[..., None]
    if pal.veins > 0:
        veins = _blur(_curves(rng, h, w, pal.veins, (1, 2), 80), 0.8)
        tex = _mix(tex, list(pal.vein_color), veins * 0.45)
    return tex


def _tissue_layer(rng, k: int, col, tex: np.ndarray, region: np.ndarray, h: int, w: int, scale: int, septa):
    """Paint one tissue object into ``tex``; returns the new texture and its gloss map."""
    base = np.broadcast_to(np.asarray(col, dtype=np.float32), (h, w, 3)).copy()
    n1 = value_noise(rng, h, w, scale / 12, octaves=3)
    if k == 11:  # kidney parenchyma: smooth, dark, glossy, fine mottling
        base *= (0.8 + 0.35 * n1)[..., None]
        gloss = _gloss(rng, h, w, scale, 1.15)
    elif k == 12:  # covered kidney: lobular yellow fat with darker septa
        cells = value_noise(rng, h, w, scale / 14, octaves=2)
        ridges = _blur(1 - np.clip(np.abs(cells - 0.5) * 5, 0, 1), 1.0)
        base *= (0.85 + 0.25 * n1)[..., None]
        base = _mix(base, list(septa), ridges * 0.35)
        gloss = _gloss(rng, h, w, scale, 0.95)
    else:  # small intestine: pink loops with fold lines
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        warp = value_noise(rng, h, w, scale / 6, octaves=3) * scale / 2
        ang = rng.uniform(0, np.pi)
        folds = 0.5 + 0.5 * np.sin((xx * np.cos(ang) + yy * np.sin(ang) + warp) * (2 * np.pi / (scale / 7)))
        folds = folds**0.6  # broad bright loops, narrow dark creases
        base *= (0.62 + 0.42 * folds)[..., None]
        base *= (0.85 + 0.25 * n1)[..., None]
        gloss = _gloss(rng, h, w, scale, 1.0) * (0.6 + 0.5 * folds)
    a = np.clip((region - 0.35) * 3.3, 0, 1)  # soft colour edge, hard label edge at 0.5
    return tex * (1 - a[..., None]) + base * a[..., None], gloss
