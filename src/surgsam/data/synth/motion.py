"""The script of a synthetic video: which instruments appear, when they enter, leave and come
back, where their tips go (so that they cross and occlude each other), what they do (actions
drive the jaws and the smoke), and how the camera pans, zooms, rolls and shakes.

All positions are in world-canvas pixels; :mod:`.render` maps them through the camera.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..endovis import ENDOVIS18_TISSUE_IDS
from .config import SynthConfig
from .instruments import InstrumentType, types_for

__all__ = ["Camera", "Script", "Track", "make_script"]

SIDES = ("left", "right", "bottom", "top")
SIDE_WEIGHTS = (0.36, 0.36, 0.2, 0.08)
CAUTERY_ACTIONS = (12, 13)


@dataclass
class Track:
    """One instrument through the video (arrays have one entry per frame).

    ``wrist``: T x 2 end of the shaft; ``insertion``: T in [0, 1] (0 = withdrawn out of view);
    ``depth``: T, larger = nearer the camera; ``action``: T action ids (0 when absent).
    """

    obj_id: int
    itype: InstrumentType
    port: tuple[float, float]
    wrist: np.ndarray
    insertion: np.ndarray
    depth: np.ndarray
    bend: np.ndarray
    jaw_bend: np.ndarray
    opening: np.ndarray
    action: np.ndarray
    r_wrist: float
    r_port: float
    highlight: float

    def wrist_at(self, t: float) -> tuple[float, float]:
        """Wrist point at (fractional) time ``t``, pulled back towards the port when withdrawn."""
        i = int(math.floor(t))
        f = t - i
        j = min(i + 1, len(self.insertion) - 1)
        wx = (1 - f) * self.wrist[i, 0] + f * self.wrist[j, 0]
        wy = (1 - f) * self.wrist[i, 1] + f * self.wrist[j, 1]
        ins = (1 - f) * self.insertion[i] + f * self.insertion[j]
        g = 0.25 + 0.75 * ins  # 25% of the way from the port is well outside the view
        return self.port[0] + g * (wx - self.port[0]), self.port[1] + g * (wy - self.port[1])


@dataclass
class Camera:
    """Per-frame camera: world point at the view centre, zoom, roll (radians), shake (pixels)."""

    center: np.ndarray  # T x 2
    scale: np.ndarray  # T
    angle: np.ndarray  # T
    shake: np.ndarray  # T x 2


@dataclass
class Script:
    tracks: list[Track]
    camera: Camera
    tissue_ids: list[int]
    world_hw: tuple[int, int]


def _smooth(
    rng: np.random.Generator, T: int, amp: float, periods: tuple[float, float] = (8, 30), n: int = 3
) -> np.ndarray:
    """A smooth random curve of length ``T``: a sum of ``n`` sinusoids of random period/phase."""
    t = np.arange(T, dtype=np.float64)
    out = np.zeros(T)
    for _ in range(n):
        p = rng.uniform(*periods)
        out += rng.uniform(0.3, 1.0) * np.sin(2 * np.pi * t / p + rng.uniform(0, 2 * np.pi))
    return amp * out / n


def _waypoint_path(rng, T: int, lo: np.ndarray, hi: np.ndarray, start: np.ndarray) -> np.ndarray:
    """T x 2 path through random waypoints: moves of 1-6 frames (smoothstep) between holds."""
    out = np.zeros((T, 2))
    cur = start.copy()
    t = 0
    while t < T:
        hold = int(rng.integers(0, 5))
        for _ in range(hold):
            if t >= T:
                break
            out[t] = cur + rng.normal(0, 1.0, 2)
            t += 1
        nxt = rng.uniform(lo, hi)
        dur = int(rng.integers(1, 7))
        for k in range(1, dur + 1):
            if t >= T:
                break
            s = k / dur
            s = s * s * (3 - 2 * s)
            out[t] = cur + (nxt - cur) * s
            t += 1
        cur = nxt
    return out


def _presence(rng, T: int, cfg: SynthConfig, must_start: bool) -> np.ndarray:
    """Insertion curve (T values in [0, 1]): enter, maybe leave, maybe come back."""
    ins = np.zeros(T)
    start = (
        0 if must_start or rng.random() > cfg.late_entry_prob or T < 12 else int(rng.integers(3, max(4, int(T * 0.6))))
    )
    end = T
    segments = []
    if T >= 16 and rng.random() < cfg.exit_prob and start + 8 < T - 4:
        end = int(rng.integers(start + 8, T - 3))
        segments.append((start, end))
        if rng.random() < cfg.reentry_prob:
            back = end + int(rng.integers(3, 10))
            if back < T - 3:
                segments.append((back, T))
    else:
        segments.append((start, end))
    for a, b in segments:
        ramp = int(rng.integers(1, 4))
        for t in range(a, b):
            up = (t - a + 1) / ramp if a > 0 else 1.0
            down = (b - t) / ramp if b < T else 1.0
            ins[t] = min(1.0, up, down)
    return ins


def _opening(rng, actions: np.ndarray) -> np.ndarray:
    """Jaw opening per frame from the actions (grasping/clipping close, cutting oscillates)."""
    T = len(actions)
    op = np.zeros(T)
    phase = 0
    for t in range(T):
        a = int(actions[t])
        phase = phase + 1 if t > 0 and actions[t - 1] == a else 0
        if a in (6, 10, 7):  # grasp/clip/retract: open, then close on tissue
            op[t] = 1.0 if phase < 2 else 0.05
        elif a in (8, 4, 3):  # cutting, suturing, knot tying: open-close cycles
            op[t] = 0.9 if phase % 2 == 0 else 0.1
        elif a in (12, 13):  # sealing / cautery: closed
            op[t] = 0.1
        elif a in (2, 5):
            op[t] = float(rng.uniform(0.1, 0.9))
        else:
            op[t] = 0.35 + 0.1 * math.sin(t)
    return op


def _actions(rng, itype: InstrumentType, ins: np.ndarray) -> np.ndarray:
    T = len(ins)
    act = np.zeros(T, dtype=np.int64)
    t = 0
    cur = 1
    while t < T:
        dur = int(rng.integers(5, 14))
        for k in range(t, min(T, t + dur)):
            act[k] = cur if ins[k] > 0 else 0
        t += dur
        choices = [a for a in itype.actions if a != cur] or [cur]
        cur = int(rng.choice(choices))
    return act


def make_script(rng: np.random.Generator, cfg: SynthConfig) -> Script:
    """Draw the whole script of one video."""
    T, H, W = cfg.frames, cfg.height, cfg.width
    wh, ww = int(round(H * 1.6)), int(round(W * 1.6))
    c0 = np.array([ww / 2, wh / 2])
    cm = cfg.camera_motion
    cam_center = np.stack([c0[0] + _smooth(rng, T, 0.22 * W * cm), c0[1] + _smooth(rng, T, 0.22 * H * cm)], 1)
    scale = 1.0 + _smooth(rng, T, 0.18 * cm, (12, 40), 2) + 0.08 * cm * rng.uniform(-1, 1)
    angle = _smooth(rng, T, 0.12 * cm, (15, 50), 2)
    shake = np.zeros((T, 2))
    for t in range(T):
        if cm > 0 and rng.random() < 0.07:  # sudden camera jolt -> motion blur
            shake[t] = rng.normal(0, 0.035 * W * cm, 2)
    cam_center += shake
    camera = Camera(cam_center, np.maximum(scale, 0.75), angle, shake)

    types = types_for(cfg.version)
    weights = np.array([t.weight for t in types])
    n_inst = int(rng.integers(cfg.min_instruments, cfg.max_instruments + 1))
    tracks: list[Track] = []
    lo = c0 - np.array([0.42 * W, 0.40 * H])
    hi = c0 + np.array([0.42 * W, 0.40 * H])
    for i in range(n_inst):
        if tracks and rng.random() < cfg.duplicate_type_prob:
            itype = tracks[int(rng.integers(len(tracks)))].itype
        else:
            itype = types[int(rng.choice(len(types), p=weights / weights.sum()))]
        if i < 2:
            side = ("left", "right")[i] if rng.random() < 0.85 else SIDES[int(rng.choice(4, p=SIDE_WEIGHTS))]
        else:
            side = SIDES[int(rng.choice(4, p=SIDE_WEIGHTS))]
        along = rng.uniform(-0.45, 0.6)
        if side == "left":
            port = (c0[0] - 1.0 * W, c0[1] + along * H)
        elif side == "right":
            port = (c0[0] + 1.0 * W, c0[1] + along * H)
        elif side == "bottom":
            port = (c0[0] + along * W, c0[1] + 1.0 * H)
        else:
            port = (c0[0] + along * W, c0[1] - 1.0 * H)
        # tips mostly stay on their side but may cross to the other half (crossings, occlusions)
        bias = {"left": (-0.15, 0), "right": (0.15, 0), "bottom": (0, 0.1), "top": (0, -0.1)}[side]
        t_lo = lo + np.array(bias) * np.array([W, H])
        t_hi = hi + np.array(bias) * np.array([W, H])
        wrist = _waypoint_path(rng, T, t_lo, t_hi, rng.uniform(t_lo, t_hi))
        ins = _presence(rng, T, cfg, must_start=(i == 0))
        act = _actions(rng, itype, ins)
        r_wrist = rng.uniform(0.03, 0.045) * W
        tracks.append(
            Track(
                obj_id=i + 1,
                itype=itype,
                port=port,
                wrist=wrist,
                insertion=ins,
                depth=rng.uniform(0, 1) + _smooth(rng, T, 0.8, (10, 30), 2),
                bend=_smooth(rng, T, 0.55, (6, 20), 2),
                jaw_bend=_smooth(rng, T, 0.3, (5, 15), 2),
                opening=_opening(rng, act),
                action=act,
                r_wrist=r_wrist,
                r_port=r_wrist * rng.uniform(1.3, 1.7),
                highlight=float(rng.uniform(-0.45, 0.45)),
            )
        )
    tissue: list[int] = []
    if cfg.version == 18:
        lo_n, hi_n = cfg.tissue_objects
        n_t = int(rng.integers(lo_n, hi_n + 1))
        tissue = sorted(int(x) for x in rng.choice(ENDOVIS18_TISSUE_IDS, size=min(n_t, 3), replace=False))
    return Script(tracks, camera, tissue, (wh, ww))
