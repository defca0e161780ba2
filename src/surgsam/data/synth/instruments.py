"""Procedural robotic instruments: a shaft from a port outside the view, an articulated wrist,
and type-specific tips (jaws that differ in length, width, curvature, fenestration, colour;
a scissors' insulating sleeve; a clip; a suction tube; an ultrasound probe).

Everything is drawn analytically with anti-aliased edges and cylinder shading, in the pixel
bounding box of the instrument only.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

from .style import Finish

__all__ = [
    "INSTRUMENT_TYPES",
    "InstrumentPose",
    "InstrumentType",
    "JawSpec",
    "finished",
    "render_instrument",
    "types_for",
]

BLACK = (0.07, 0.07, 0.08)
SILVER = (0.62, 0.63, 0.66)
BRIGHT = (0.78, 0.78, 0.80)
STEEL = (0.34, 0.35, 0.37)
BEIGE = (0.80, 0.70, 0.54)
BLUE_GREY = (0.20, 0.25, 0.34)
LIGHT_BLUE_GREY = (0.48, 0.54, 0.64)
GOLD = (0.88, 0.68, 0.24)
WHITE = (0.86, 0.87, 0.89)


@dataclass(frozen=True)
class JawSpec:
    """Jaw geometry in units of the shaft radius at the wrist; ``max_open`` in radians."""

    length: float
    width0: float
    width1: float
    curvature: float
    fenestrated: bool
    color: tuple[float, float, float]
    max_open: float


@dataclass(frozen=True)
class InstrumentType:
    """One instrument model: category name, look, and the actions it performs (ids)."""

    name: str
    shaft_color: tuple[float, float, float]
    shaft_scale: float
    wrist_color: tuple[float, float, float] | None
    jaw: JawSpec | None
    actions: tuple[int, ...]
    sleeve_color: tuple[float, float, float] | None = None
    extra: str | None = None  # "clip", "probe" or "tube"
    cautery: bool = False
    weight: float = 1.0  # how often it is drawn


INSTRUMENT_TYPES: dict[str, InstrumentType] = {
    t.name: t
    for t in [
        InstrumentType(
            "bipolar forceps",
            BLACK,
            1.0,
            SILVER,
            JawSpec(2.6, 0.42, 0.14, 0.16, False, SILVER, 0.7),
            (1, 6, 5, 13, 7),
            cautery=True,
            weight=1.4,
        ),
        InstrumentType(
            "prograsp forceps",
            BLACK,
            1.0,
            SILVER,
            JawSpec(2.4, 0.55, 0.34, 0.0, True, STEEL, 0.8),
            (1, 6, 7, 5, 2),
            weight=1.4,
        ),
        InstrumentType(
            "large needle driver",
            BLACK,
            1.0,
            STEEL,
            JawSpec(1.6, 0.62, 0.40, 0.0, False, STEEL, 0.5),
            (1, 4, 3, 2),
            weight=1.0,
        ),
        InstrumentType(
            "monopolar curved scissors",
            BLACK,
            1.0,
            SILVER,
            JawSpec(2.2, 0.40, 0.06, 0.22, False, BRIGHT, 0.6),
            (1, 8, 13),
            sleeve_color=BEIGE,
            cautery=True,
            weight=1.2,
        ),
        InstrumentType(
            "vessel sealer",
            BLUE_GREY,
            1.15,
            None,
            JawSpec(3.0, 0.72, 0.50, 0.08, False, LIGHT_BLUE_GREY, 0.35),
            (1, 12, 13),
            cautery=True,
            weight=0.7,
        ),
        InstrumentType(
            "grasping retractor",
            BLACK,
            1.05,
            SILVER,
            JawSpec(3.0, 0.80, 0.95, 0.0, True, STEEL, 0.3),
            (1, 7),
            weight=0.6,
        ),
        InstrumentType("suction", SILVER, 0.55, None, None, (1, 9), extra="tube", weight=0.7),
        InstrumentType(
            "clip applier",
            BLACK,
            1.0,
            SILVER,
            JawSpec(2.0, 0.50, 0.30, 0.05, False, SILVER, 0.5),
            (1, 10),
            extra="clip",
            weight=0.6,
        ),
        InstrumentType("ultrasound probe", (0.25, 0.25, 0.27), 0.45, None, None, (1, 11), extra="probe", weight=0.5),
    ]
}

_V17 = (
    "bipolar forceps",
    "prograsp forceps",
    "large needle driver",
    "vessel sealer",
    "grasping retractor",
    "monopolar curved scissors",
)
_V18 = (
    "bipolar forceps",
    "prograsp forceps",
    "large needle driver",
    "monopolar curved scissors",
    "ultrasound probe",
    "suction",
    "clip applier",
)


def types_for(version: int) -> list[InstrumentType]:
    """Instrument types of the EndoVis 2017 or 2018 vocabulary."""
    return [INSTRUMENT_TYPES[n] for n in (_V17 if version == 17 else _V18)]


@dataclass(frozen=True)
class InstrumentPose:
    """An instrument in view pixels: shaft from ``port`` to ``wrist`` (radii ``r_port``,
    ``r_wrist``), wrist bend and jaw bend (radians, relative), jaw ``opening`` (0..1),
    highlight offset across the shaft (-1..1).
    """

    port: tuple[float, float]
    wrist: tuple[float, float]
    r_port: float
    r_wrist: float
    bend: float
    jaw_bend: float
    opening: float
    highlight: float = -0.3


def _seg(xx, yy, a, b, ra, rb):
    """Tapered capsule from ``a`` to ``b``: (alpha, v across in -1..1, t along in 0..1)."""
    dx, dy = b[0] - a[0], b[1] - a[1]
    L2 = max(dx * dx + dy * dy, 1e-6)
    L = math.sqrt(L2)
    t = np.clip(((xx - a[0]) * dx + (yy - a[1]) * dy) / L2, 0.0, 1.0)
    px, py = a[0] + t * dx, a[1] + t * dy
    d = np.hypot(xx - px, yy - py)
    r = ra + (rb - ra) * t
    v = ((xx - a[0]) * (-dy / L) + (yy - a[1]) * (dx / L)) / np.maximum(r, 1e-3)
    return np.clip(r - d + 0.5, 0.0, 1.0), np.clip(v, -1.0, 1.0), t


def _jaw(xx, yy, o, ang, L, w0, w1, curv, fenestrated):
    """One jaw from ``o`` along ``ang``: (alpha, v across in -1..1)."""
    ux, uy = math.cos(ang), math.sin(ang)
    u = (xx - o[0]) * ux + (yy - o[1]) * uy
    v = (xx - o[0]) * -uy + (yy - o[1]) * ux
    s = np.clip(u / L, 0.0, 1.0)
    vc = v - curv * L * s * s
    half = w0 + (w1 - w0) * s
    half = half * np.sqrt(np.clip((1.0 - s) / 0.12, 0.0, 1.0)) if w1 < w0 * 0.5 else half  # pointed tips
    a = np.clip(half - np.abs(vc) + 0.5, 0.0, 1.0) * np.clip(u + 0.5, 0.0, 1.0) * np.clip(L - u + 0.5, 0.0, 1.0)
    if fenestrated:
        hole = (
            np.clip(0.55 * half - np.abs(vc) + 0.5, 0.0, 1.0) * np.clip(u - 0.3 * L, 0, 1) * np.clip(0.8 * L - u, 0, 1)
        )
        a = a * (1.0 - hole)
    return a, np.clip(vc / np.maximum(half, 1e-3), -1.0, 1.0)


def _shade(color, v, highlight, spec, alpha, width=0.2):
    """Cylinder shading of a part: base colour * diffuse + specular stripe (half width
    ``width`` across the cylinder), premultiplied."""
    diffuse = 0.38 + 0.62 * np.sqrt(np.clip(1.0 - v * v, 0.0, 1.0))
    stripe = np.exp(-(((v - highlight) / width) ** 2))
    rgb = np.asarray(color, dtype=np.float32)[None, None, :] * diffuse[..., None] + (spec * stripe)[..., None]
    return rgb * alpha[..., None]


def _over(dst_rgb, dst_a, rgb, a):
    dst_rgb *= (1.0 - a)[..., None]
    dst_rgb += rgb
    dst_a *= 1.0 - a
    dst_a += a


def finished(itype: InstrumentType, finish: Finish) -> InstrumentType:
    """The instrument type in another finish: black shafts (and wrists) take ``finish.shaft``,
    metal parts (silver, steel, bright) are multiplied by ``finish.metal``; type-specific
    colours (the scissors' sleeve, the vessel sealer's blue-grey, the probe) are kept."""
    metals = (SILVER, BRIGHT, STEEL)

    def recolor(c):
        if c == BLACK:
            return finish.shaft
        if c in metals:
            return tuple(float(min(1.0, x * m)) for x, m in zip(c, finish.metal))
        return c

    jaw = None if itype.jaw is None else replace(itype.jaw, color=recolor(itype.jaw.color))
    wrist = None if itype.wrist_color is None else recolor(itype.wrist_color)
    return replace(itype, shaft_color=recolor(itype.shaft_color), wrist_color=wrist, jaw=jaw)


def render_instrument(pose: InstrumentPose, itype: InstrumentType, h: int, w: int, *, finish: Finish | None = None):
    """Draw an instrument into an ``h x w`` view, in the type's own colours or in ``finish``
    (:func:`finished` colours, its specular strength and highlight width).

    Returns ``(box, rgb, alpha, tip)``: ``box = (y0, y1, x0, x1)`` (``None`` if off-screen),
    premultiplied ``rgb`` (bh x bw x 3 float32) and ``alpha`` (bh x bw) inside it, and the tip
    point in view pixels.
    """
    r1 = pose.r_wrist * itype.shaft_scale
    r0 = pose.r_port * itype.shaft_scale
    sx, sy = pose.wrist[0] - pose.port[0], pose.wrist[1] - pose.port[1]
    base = math.atan2(sy, sx)
    wrist_len = 1.5 * r1 if itype.wrist_color is not None else 0.0
    a_w = base + pose.bend
    wend = (pose.wrist[0] + wrist_len * math.cos(a_w), pose.wrist[1] + wrist_len * math.sin(a_w))
    a_j = a_w + pose.jaw_bend
    reach = wrist_len + r1 * (itype.jaw.length if itype.jaw else (4.6 if itype.extra == "probe" else 0.5))
    tip = (pose.wrist[0] + reach * math.cos(a_j), pose.wrist[1] + reach * math.sin(a_j))
    pad = 2.5 * max(r0, r1 * 1.5) + 2
    xs = [pose.port[0], pose.wrist[0], tip[0]]
    ys = [pose.port[1], pose.wrist[1], tip[1]]
    x0, x1 = max(0, int(min(xs) - pad)), min(w, int(max(xs) + pad) + 1)
    y0, y1 = max(0, int(min(ys) - pad)), min(h, int(max(ys) + pad) + 1)
    if x1 <= x0 or y1 <= y0:
        return None, None, None, tip
    yy, xx = np.mgrid[y0:y1, x0:x1].astype(np.float32)
    rgb = np.zeros((y1 - y0, x1 - x0, 3), dtype=np.float32)
    alpha = np.zeros((y1 - y0, x1 - x0), dtype=np.float32)
    hl = pose.highlight
    spec = 0.55 if itype.shaft_color == BLACK else 0.3
    if finish is None:
        ks, hw = 1.0, 0.2
    else:
        itype, ks, hw = finished(itype, finish), finish.specular, finish.highlight_width

    a, v, t = _seg(xx, yy, pose.port, pose.wrist, r0, r1)
    col = _shade(itype.shaft_color, v, hl, ks * spec, a, hw)
    if itype.extra != "probe":  # two thin bands near the distal end of the shaft
        bands = ((t > 0.90) & (t < 0.915)) | ((t > 0.95) & (t < 0.96))
        col *= np.where(bands, 1.8, 1.0)[..., None]
    _over(rgb, alpha, col, a)

    if itype.wrist_color is not None:
        a, v, t = _seg(xx, yy, pose.wrist, wend, r1 * 0.86, r1 * 0.8)
        col = _shade(itype.sleeve_color or itype.wrist_color, v, hl, ks * 0.35, a, hw)
        col *= (1.0 - 0.45 * ((t > 0.45) & (t < 0.55)))[..., None]  # the joint gap
        _over(rgb, alpha, col, a)

    if itype.jaw is not None:
        j = itype.jaw
        half_open = 0.5 * j.max_open * float(np.clip(pose.opening, 0, 1))
        L = j.length * r1
        for side in (-1, 1):
            a, v = _jaw(
                xx,
                yy,
                wend,
                a_j + side * half_open,
                L,
                j.width0 * r1 * 0.55,
                j.width1 * r1 * 0.55,
                j.curvature,
                j.fenestrated,
            )
            _over(rgb, alpha, _shade(j.color, v, hl, ks * 0.45, a, hw), a)
        if itype.extra == "clip" and pose.opening > 0.15:
            cx, cy = wend[0] + 0.7 * L * math.cos(a_j), wend[1] + 0.7 * L * math.sin(a_j)
            ca = a_j + math.pi / 2
            cend = (
                cx + 0.5 * L * math.sin(half_open) * math.cos(ca),
                cy + 0.5 * L * math.sin(half_open) * math.sin(ca),
            )
            cstart = (2 * cx - cend[0], 2 * cy - cend[1])
            a, v, _ = _seg(xx, yy, cstart, cend, 0.22 * r1, 0.22 * r1)
            _over(rgb, alpha, _shade(GOLD, v, hl, ks * 0.5, a, hw), a)
    elif itype.extra == "probe":
        pend = (pose.wrist[0] + 4.6 * r1 * math.cos(a_j), pose.wrist[1] + 4.6 * r1 * math.sin(a_j))
        a, v, t = _seg(xx, yy, pose.wrist, pend, 1.45 * r1, 1.35 * r1)
        col = _shade(WHITE, v, hl, ks * 0.25, a, hw)
        window = (t > 0.35) & (t < 0.85) & (v > 0.15) & (v < 0.75)
        col *= np.where(window, 0.25, 1.0)[..., None]
        _over(rgb, alpha, col, a)
    elif itype.extra == "tube":
        pend = (pose.wrist[0] + 0.5 * r1 * math.cos(a_j), pose.wrist[1] + 0.5 * r1 * math.sin(a_j))
        a, v, _ = _seg(xx, yy, pose.wrist, pend, r1, r1 * 0.95)
        _over(rgb, alpha, _shade((0.15, 0.13, 0.13), v, hl, ks * 0.2, a, hw), a)
    return (y0, y1, x0, x1), rgb, alpha, tip
