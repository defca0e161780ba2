"""Per-frame rendering of a scripted video: camera view of the tissue world (with breathing
deformation), endoscope lighting and vignetting, wet specular highlights, instruments with soft
shadows and motion blur, cautery smoke, camera-shake blur and sensor noise; plus the id map of
the visible objects and their visible/unoccluded areas.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from .config import SynthConfig
from .instruments import InstrumentPose, render_instrument
from .motion import CAUTERY_ACTIONS, Script, Track
from .scene import World, value_noise
from .style import Finish, StyleSpec, style_spec

__all__ = ["FrameOut", "Renderer"]


@dataclass
class FrameOut:
    """One rendered frame: ``rgb`` H x W x 3 uint8, ``labels`` H x W uint8 (0 = background),
    per-object ``visible`` and ``amodal`` (not hidden by other objects) pixel counts, and the
    fraction of the frame under dense smoke.
    """

    rgb: np.ndarray
    labels: np.ndarray
    visible: dict[int, int] = field(default_factory=dict)
    amodal: dict[int, int] = field(default_factory=dict)
    smoke: float = 0.0


@dataclass
class _Puff:
    x: float
    y: float
    r: float
    vx: float
    vy: float
    strength: float
    age: int = 0
    life: int = 8


def _box_blur(a: np.ndarray, k: int) -> np.ndarray:
    """Separable box blur with window ``2k+1`` (edges clamp), via cumulative sums."""
    if k <= 0:
        return a
    out = a
    for axis in (0, 1):
        pad = [(0, 0)] * out.ndim
        pad[axis] = (k + 1, k)
        c = np.cumsum(np.pad(out, pad, mode="edge"), axis=axis, dtype=np.float32)
        n = out.shape[axis]
        hi = np.take(c, np.arange(2 * k + 1, 2 * k + 1 + n), axis=axis)
        lo = np.take(c, np.arange(0, n), axis=axis)
        out = (hi - lo) / (2 * k + 1)
    return out


def _shift(img: np.ndarray, dx: int, dy: int, edge: bool = True) -> np.ndarray:
    """Translate an image by whole pixels, replicating the edges (or filling zeros)."""
    h, w = img.shape[:2]
    p = max(abs(dx), abs(dy))
    if p == 0:
        return img
    pad = [(p, p), (p, p)] + [(0, 0)] * (img.ndim - 2)
    big = np.pad(img, pad, mode="edge" if edge else "constant")
    return big[p - dy : p - dy + h, p - dx : p - dx + w]


class Renderer:
    """Renders frame ``t`` of ``script`` over ``world``; keeps smoke state, so call in order.

    ``style`` sets the light (default: the default style); ``finish`` draws every instrument in
    that finish (None: the types' own colours). Neither draws from ``rng``."""

    def __init__(
        self,
        cfg: SynthConfig,
        world: World,
        script: Script,
        rng: np.random.Generator,
        *,
        style: StyleSpec | None = None,
        finish: Finish | None = None,
    ):
        self.cfg, self.world, self.script, self.rng = cfg, world, script, rng
        self.style = style or style_spec("default")
        self.finish = finish
        lit = self.style.lighting
        H, W = cfg.height, cfg.width
        self.yy, self.xx = np.mgrid[0:H, 0:W].astype(np.float32)
        lx, ly = W * rng.uniform(0.4, 0.6), H * rng.uniform(0.35, 0.6)
        r = np.hypot((self.xx - lx) / (0.75 * W), (self.yy - ly) / (0.75 * H))
        light = 1.0 - 0.5 * np.clip(r, 0, 1.6) ** 2.0
        corner = np.hypot((self.xx - W / 2) / (W / 2), (self.yy - H / 2) / (H / 2))
        light *= np.clip(1.45 - 0.55 * corner**2.5, 0.05, 1.0)
        if lit.vignette > 0:  # a round scope fall-off: dark towards the rim of a circle
            rim = np.hypot((self.xx - W / 2) / (W / 2), (self.yy - H / 2) / (W / 2))
            light *= np.clip(1.0 - lit.vignette * np.clip(rim - 0.55, 0, None) ** 1.5, 0.05, 1.0)
        self.light = np.clip(light, 0.05, 1.0).astype(np.float32)
        self.exposure = float(rng.uniform(1.05, 1.3))
        self.tint = np.array([1.0, rng.uniform(0.95, 1.04), rng.uniform(0.92, 1.04)], dtype=np.float32)
        if not self.style.is_default:
            self.tint = self.tint * np.asarray(lit.tint, dtype=np.float32)
        self.smoke_tex = value_noise(rng, 2 * H, 2 * W, min(H, W) / 5, octaves=4)
        self.spec_noise = value_noise(rng, 2 * H, 2 * W, min(H, W) / 6, octaves=2)
        self.breath_phase = rng.uniform(0, 2 * np.pi, 2)
        self.puffs: list[_Puff] = []

    # ---- camera -------------------------------------------------------------------------
    def to_view(self, t: int, p: tuple[float, float]) -> tuple[float, float]:
        cam = self.script.camera
        s, a = cam.scale[t], cam.angle[t]
        dx, dy = p[0] - cam.center[t, 0], p[1] - cam.center[t, 1]
        ca, sa = math.cos(a), math.sin(a)
        return (s * (ca * dx - sa * dy) + self.cfg.width / 2, s * (sa * dx + ca * dy) + self.cfg.height / 2)

    def _sample_world(self, t: int):
        cam, cfg = self.script.camera, self.cfg
        s, a = cam.scale[t], cam.angle[t]
        vx, vy = (self.xx - cfg.width / 2) / s, (self.yy - cfg.height / 2) / s
        ca, sa = math.cos(-a), math.sin(-a)
        wx = ca * vx - sa * vy + cam.center[t, 0]
        wy = sa * vx + ca * vy + cam.center[t, 1]
        amp = 0.012 * min(cfg.width, cfg.height) * cfg.camera_motion  # breathing / pulsation
        wx = wx + amp * np.sin(2 * np.pi * t / 9.0 + self.breath_phase[0] + wy / 40.0)
        wy = wy + amp * np.sin(2 * np.pi * t / 11.0 + self.breath_phase[1] + wx / 47.0)
        wh, ww = self.world.size
        wx = np.clip(wx, 0, ww - 1.001)
        wy = np.clip(wy, 0, wh - 1.001)
        x0, y0 = wx.astype(np.int32), wy.astype(np.int32)
        fx, fy = (wx - x0)[..., None], (wy - y0)[..., None]
        tex = self.world.texture
        top = tex[y0, x0] * (1 - fx) + tex[y0, x0 + 1] * fx
        bot = tex[y0 + 1, x0] * (1 - fx) + tex[y0 + 1, x0 + 1] * fx
        rgb = top * (1 - fy) + bot * fy
        gloss = self.world.gloss[y0, x0]
        labels = self.world.labels[np.rint(wy).astype(np.int32), np.rint(wx).astype(np.int32)]
        return rgb.astype(np.float32), gloss, labels

    # ---- instruments --------------------------------------------------------------------
    def _pose(self, tr: Track, t: float, ti: int) -> InstrumentPose:
        s = float(self.script.camera.scale[ti])
        return InstrumentPose(
            port=self.to_view(ti, tr.port),
            wrist=self.to_view(ti, tr.wrist_at(t)),
            r_port=tr.r_port * s,
            r_wrist=tr.r_wrist * s,
            bend=float(tr.bend[ti]),
            jaw_bend=float(tr.jaw_bend[ti]),
            opening=float(tr.opening[ti]),
            highlight=tr.highlight,
        )

    def _draw(self, tr: Track, t: int):
        """Full-frame premultiplied rgb, alpha (motion-blurred if fast), sharp alpha, tip."""
        H, W = self.cfg.height, self.cfg.width
        box, rgb, alpha, tip = render_instrument(self._pose(tr, t, t), tr.itype, H, W, finish=self.finish)
        full_rgb = np.zeros((H, W, 3), np.float32)
        full_a = np.zeros((H, W), np.float32)
        if box is None:
            return full_rgb, full_a, full_a.copy(), tip
        y0, y1, x0, x1 = box
        full_rgb[y0:y1, x0:x1] = rgb
        full_a[y0:y1, x0:x1] = alpha
        sharp = full_a.copy()
        if self.cfg.motion_blur and t > 0 and tr.insertion[t - 1] > 0:
            p0, p1 = self.to_view(t, tr.wrist_at(t - 1)), self.to_view(t, tr.wrist_at(t))
            dx, dy = 0.12 * (p1[0] - p0[0]), 0.12 * (p1[1] - p0[1])  # smear over the shutter time
            n = int(min(9, math.hypot(dx, dy) / 1.5))
            if n >= 2:
                acc_rgb, acc_a = np.zeros_like(full_rgb), np.zeros_like(full_a)
                for k in range(n):
                    f = k / (n - 1)
                    sx, sy = int(round(-f * dx)), int(round(-f * dy))
                    acc_rgb += _shift(full_rgb, sx, sy, edge=False)
                    acc_a += _shift(full_a, sx, sy, edge=False)
                acc_rgb /= n
                acc_a /= n
                full_rgb, full_a = acc_rgb, acc_a
        return full_rgb, full_a, sharp, tip

    # ---- smoke --------------------------------------------------------------------------
    def _smoke(self, t: int, sources: list[tuple[float, float]]) -> np.ndarray:
        cfg, rng = self.cfg, self.rng
        H, W = cfg.height, cfg.width
        if cfg.smoke > 0:
            for x, y in sources:
                if rng.random() < 0.85:
                    for _ in range(int(rng.integers(1, 4))):
                        self.puffs.append(
                            _Puff(
                                x + rng.normal(0, 0.02 * W),
                                y + rng.normal(0, 0.02 * W),
                                rng.uniform(0.04, 0.08) * W,
                                rng.normal(0, 0.015 * W),
                                -rng.uniform(0.01, 0.04) * H,
                                cfg.smoke * rng.uniform(0.4, 0.8),
                                life=int(rng.integers(6, 14)),
                            )
                        )
        a = np.zeros((H, W), np.float32)
        alive = []
        for p in self.puffs:
            fade = 1.0 - p.age / p.life
            if fade <= 0:
                continue
            d2 = ((self.xx - p.x) ** 2 + (self.yy - p.y) ** 2) / (2 * p.r * p.r)
            a += p.strength * fade * np.exp(-d2)
            p.age += 1
            p.r *= 1.28
            p.x += p.vx
            p.y += p.vy
            alive.append(p)
        self.puffs = alive
        if not alive:
            return a
        oy, ox = int(t * 3) % H, int(t * 2) % W
        tex = self.smoke_tex[oy : oy + H, ox : ox + W]
        return np.clip(a * (0.3 + 1.1 * tex), 0, 0.85)

    # ---- the frame ----------------------------------------------------------------------
    def render(self, t: int) -> FrameOut:
        cfg = self.cfg
        H, W = cfg.height, cfg.width
        rgb, gloss, tissue = self._sample_world(t)
        labels = tissue.astype(np.uint8).copy()
        amodal = {int(k): int(np.count_nonzero(tissue == k)) for k in self.script.tissue_ids}

        img = rgb * self.light[..., None] * self.exposure
        if cfg.specular:
            oy, ox = (int(t * 5) % H), (int(t * 3) % W)
            view_n = self.spec_noise[oy : oy + H, ox : ox + W]
            spec = np.clip((gloss - 1.1 + 0.35 * view_n) / 0.12, 0, 1) ** 2 * self.light
            spec = np.clip(_box_blur(spec, 1) * 1.3, 0, 1)  # soft-edged glints
            if self.style.is_default:
                img = img + spec[..., None] * 0.85
            else:
                img = img + spec[..., None] * (
                    self.style.lighting.glint * np.asarray(self.style.lighting.glint_color, np.float32)
                )

        sources = []
        present = [tr for tr in self.script.tracks if tr.insertion[t] > 0]
        for tr in sorted(present, key=lambda tr: tr.depth[t]):
            prgb, pa, sharp, tip = self._draw(tr, t)
            # soft shadow cast below and to the right of the instrument
            r = max(2, int(tr.r_wrist * 0.8))
            sh = _box_blur(_shift(pa, int(0.6 * r), int(1.0 * r)), r)
            img *= (1.0 - 0.5 * sh)[..., None]
            img = img * (1.0 - pa[..., None]) + prgb * (0.35 + 0.8 * self.light[..., None]) * self.exposure
            m = sharp > 0.5
            amodal[tr.obj_id] = int(np.count_nonzero(m))
            labels[m] = tr.obj_id
            if tr.action[t] in CAUTERY_ACTIONS and tr.itype.cautery and 0 <= tip[0] < W and 0 <= tip[1] < H:
                sources.append(tip)

        smoke = self._smoke(t, sources)
        if smoke.any():
            col = np.array(self.style.lighting.smoke, np.float32)
            img = img * (1 - smoke[..., None]) + col * smoke[..., None] * (0.55 + 0.5 * self.light[..., None])

        sx, sy = self.script.camera.shake[t] * self.script.camera.scale[t]
        n = int(min(6, math.hypot(sx, sy) / 2.0))
        if n >= 2:  # camera jolt: average shifted copies along the motion
            acc = np.zeros_like(img)
            for k in range(n):
                f = k / (n - 1) - 0.5
                acc += _shift(img, int(round(f * sx)), int(round(f * sy)))
            img = acc / n

        img = img * self.tint
        if cfg.noise > 0:
            img = img + self.rng.normal(0, cfg.noise / 255.0, img.shape).astype(np.float32)
        out = np.clip(img * 255.0 + 0.5, 0, 255).astype(np.uint8)
        ids, counts = np.unique(labels, return_counts=True)
        visible = {int(k): int(c) for k, c in zip(ids, counts) if k != 0}
        return FrameOut(out, labels, visible, {k: v for k, v in amodal.items() if v > 0}, float(np.mean(smoke > 0.25)))
