"""Prompts a person gives by clicking: positive/negative points and boxes, per object and frame.

A :class:`PromptBook` holds one :class:`ObjectPrompt` per (object, frame), checks every
coordinate against the video's frame size, can undo its last change, draws itself on a frame
and turns into engine :class:`~surgsam.engine.Prompt` objects. The web app and the live
window share it.

An object id can instead be described by a text expression (:meth:`PromptBook.set_text`): it
holds for the whole video (searched for from the first frame by the referring segmenter), and an
id has either clicks/boxes or a text, never both. :func:`surgsam.app.jobs.segment_stream` is the
one place prompts meet the engine (clicks) and the referring segmenter (texts).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

import numpy as np
from PIL import Image, ImageDraw

from ..engine.offline import Prompt
from ..io.overlay import overlay_color

__all__ = ["MAX_TEXT_CHARS", "Click", "ObjectPrompt", "PromptBook", "PromptError"]

Box = tuple[float, float, float, float]
_POSITIVE, _NEGATIVE = (40, 220, 60), (235, 40, 40)
#: longest expression accepted (the text encoder also checks its own token limit when the run starts)
MAX_TEXT_CHARS = 300


class PromptError(ValueError):
    """A click, box or object id that cannot be used; the message is for the user."""


@dataclass(frozen=True)
class Click:
    """A click in frame pixels: positive (on the object) or negative (not the object)."""

    x: float
    y: float
    positive: bool = True


@dataclass
class ObjectPrompt:
    """Everything one object is given on one frame (frame pixels)."""

    obj_id: int
    frame_idx: int
    clicks: list[Click] = field(default_factory=list)
    box: Box | None = None

    @property
    def empty(self) -> bool:
        return not self.clicks and self.box is None

    def to_prompt(self) -> Prompt:
        """The engine prompt: the box (if any) plus every click, as ``add_prompt`` takes them."""
        points = labels = None
        if self.clicks:
            points = np.array([[c.x, c.y] for c in self.clicks], dtype=np.float32)
            labels = np.array([int(c.positive) for c in self.clicks], dtype=np.int64)
        return Prompt(self.obj_id, self.frame_idx, points=points, labels=labels, box=self.box)

    def summary(self) -> str:
        pos = sum(c.positive for c in self.clicks)
        parts = [f"{pos} positive", f"{len(self.clicks) - pos} negative"]
        if self.box is not None:
            parts.append("box " + ",".join(f"{v:.0f}" for v in self.box))
        return ", ".join(parts)


@dataclass
class PromptBook:
    """The prompts of one video whose frames are ``frame_size`` (H, W), ``num_frames`` long."""

    frame_size: tuple[int, int]
    num_frames: int
    entries: dict[tuple[int, int], ObjectPrompt] = field(default_factory=dict)
    #: referring expressions, {obj_id: text}: each holds for the whole video
    texts: dict[int, str] = field(default_factory=dict)
    #: first corner of a box being clicked: (obj_id, frame_idx, x, y)
    corner: tuple[int, int, float, float] | None = None
    #: undo steps: ((obj_id, frame_idx), old prompt) or ((obj_id, -1), old text)
    _history: list[tuple[tuple[int, int], ObjectPrompt | str | None]] = field(default_factory=list, repr=False)

    # -- checks ------------------------------------------------------------------------------
    def _key(self, obj_id: int, frame_idx: int) -> tuple[int, int]:
        try:
            obj_id, frame_idx = int(obj_id), int(frame_idx)
        except (TypeError, ValueError):
            raise PromptError(f"object id and frame must be whole numbers, got {obj_id!r}, {frame_idx!r}") from None
        if not 1 <= obj_id <= 255:
            raise PromptError(f"object id must be 1..255 (it is the pixel value of the mask PNGs), got {obj_id}")
        if not 0 <= frame_idx < self.num_frames:
            raise PromptError(f"frame {frame_idx} is outside the video (0..{self.num_frames - 1})")
        return obj_id, frame_idx

    def _point(self, x: float, y: float) -> tuple[float, float]:
        h, w = self.frame_size
        x, y = float(x), float(y)
        if not (np.isfinite(x) and np.isfinite(y) and 0 <= x < w and 0 <= y < h):
            raise PromptError(f"point ({x:g}, {y:g}) lies outside the {w}x{h} frame")
        return x, y

    def _box(self, box: Box | np.ndarray | list[float]) -> Box:
        b = [float(v) for v in np.asarray(box, dtype=np.float64).reshape(-1)]
        if len(b) != 4:
            raise PromptError(f"a box is x0,y0,x1,y1, got {len(b)} numbers")
        h, w = self.frame_size
        x0, y0, x1, y1 = b
        if not all(np.isfinite(b)) or min(b) < 0 or max(x0, x1) > w or max(y0, y1) > h:
            raise PromptError(f"box {x0:g},{y0:g},{x1:g},{y1:g} lies outside the {w}x{h} frame")
        if x1 <= x0 or y1 <= y0:
            raise PromptError(f"box {x0:g},{y0:g},{x1:g},{y1:g} is empty: need x1 > x0 and y1 > y0")
        return x0, y0, x1, y1

    def _id(self, obj_id: int) -> int:
        return self._key(obj_id, 0)[0]

    def _no_text(self, obj_id: int) -> None:
        if obj_id in self.texts:
            raise PromptError(
                f"object {obj_id} is described by text ({self.texts[obj_id]!r}); clear it or "
                "use another object id for clicks and boxes"
            )

    # -- edits -------------------------------------------------------------------------------
    def _edit(self, key: tuple[int, int]) -> ObjectPrompt:
        self._no_text(key[0])
        old = self.entries.get(key)
        self._history.append((key, copy.deepcopy(old)))
        if old is None:
            old = self.entries[key] = ObjectPrompt(*key)
        return old

    def add_click(self, obj_id: int, frame_idx: int, x: float, y: float, positive: bool = True) -> str:
        """Add a click; returns a short description of what happened."""
        key = self._key(obj_id, frame_idx)
        x, y = self._point(x, y)
        self._edit(key).clicks.append(Click(x, y, bool(positive)))
        kind = "positive" if positive else "negative"
        return f"object {key[0]}: {kind} click at ({x:.0f}, {y:.0f}) on frame {key[1]}"

    def set_box(self, obj_id: int, frame_idx: int, box: Box | np.ndarray | list[float]) -> str:
        """Give the object a box on the frame (replacing an earlier one there)."""
        key = self._key(obj_id, frame_idx)
        b = self._box(box)
        self._edit(key).box = b
        self.corner = None
        return f"object {key[0]}: box {b[0]:.0f},{b[1]:.0f},{b[2]:.0f},{b[3]:.0f} on frame {key[1]}"

    def set_box_text(self, obj_id: int, frame_idx: int, text: str) -> str:
        """A typed box ``"x0,y0,x1,y1"`` (the syntax of ``surgsam segment --box``)."""
        from ..engine.prompts import parse_pairs

        try:
            b = parse_pairs(text or "", 4, "box")
        except ValueError as exc:
            raise PromptError(str(exc)) from None
        if len(b) != 1:
            raise PromptError(f"give one box x0,y0,x1,y1, got {len(b)}")
        return self.set_box(obj_id, frame_idx, b[0])

    def set_text(self, obj_id: int, text: str) -> str:
        """Describe object ``obj_id`` by a referring expression (replacing its earlier one); it is
        searched for from the first frame. An object with clicks or boxes cannot also have a text."""
        oid = self._id(obj_id)
        if not isinstance(text, str) or not text.strip():
            raise PromptError('the expression is empty: type what to segment, e.g. "the grasper on the left"')
        text = " ".join(text.split())
        if len(text) > MAX_TEXT_CHARS:
            raise PromptError(f"the expression is {len(text)} characters long; at most {MAX_TEXT_CHARS} are accepted")
        if any(o == oid and not p.empty for (o, _), p in self.entries.items()):
            raise PromptError(f"object {oid} already has clicks or a box; clear it or use another object id for a text")
        self._history.append(((oid, -1), self.texts.get(oid)))
        self.texts[oid] = text
        return f"object {oid}: text {text!r} (searched for from the first frame)"

    def add_corner(self, obj_id: int, frame_idx: int, x: float, y: float) -> str:
        """Box by two clicks: the first sets a corner, the second the opposite corner."""
        key = self._key(obj_id, frame_idx)
        self._no_text(key[0])
        x, y = self._point(x, y)
        c = self.corner
        if c is None or (c[0], c[1]) != key:
            self.corner = (key[0], key[1], x, y)
            return f"object {key[0]}: box corner at ({x:.0f}, {y:.0f}); click the opposite corner"
        box = (min(c[2], x), min(c[3], y), max(c[2], x), max(c[3], y))
        if box[2] - box[0] < 1 or box[3] - box[1] < 1:
            raise PromptError("the two corners must differ in x and in y")
        return self.set_box(key[0], key[1], box)

    def undo(self) -> str:
        """Take back the last click or box (or a pending box corner)."""
        if self.corner is not None:
            self.corner = None
            return "box corner removed"
        if not self._history:
            return "nothing to undo"
        key, old = self._history.pop()
        if key[1] < 0:  # a text
            if isinstance(old, str):
                self.texts[key[0]] = old
            else:
                self.texts.pop(key[0], None)
            return f"undid the last change to the text of object {key[0]}"
        if isinstance(old, ObjectPrompt):
            self.entries[key] = old
        else:
            self.entries.pop(key, None)
        return f"undid the last change to object {key[0]} on frame {key[1]}"

    def clear(self, obj_id: int | None = None) -> str:
        """Remove every prompt (of ``obj_id`` only, when given)."""
        self.corner = None
        if obj_id is None:
            self.entries.clear()
            self.texts.clear()
            self._history.clear()
            return "all prompts cleared"
        for key in [k for k in self.entries if k[0] == int(obj_id)]:
            self._history.append((key, self.entries.pop(key)))
        if int(obj_id) in self.texts:
            self._history.append(((int(obj_id), -1), self.texts.pop(int(obj_id))))
        return f"prompts of object {int(obj_id)} cleared"

    # -- views -------------------------------------------------------------------------------
    def on_frame(self, frame_idx: int) -> list[ObjectPrompt]:
        return [p for (o, f), p in sorted(self.entries.items()) if f == frame_idx and not p.empty]

    @property
    def obj_ids(self) -> list[int]:
        """Every object with a prompt: clicks, a box or a text."""
        return sorted({o for (o, _), p in self.entries.items() if not p.empty} | set(self.texts))

    def prompts(self) -> list[Prompt]:
        """Engine prompts, ordered by frame then object."""
        items = sorted(self.entries.values(), key=lambda p: (p.frame_idx, p.obj_id))
        return [p.to_prompt() for p in items if not p.empty]

    def rows(self) -> list[list[str | int]]:
        """One row per (object, frame): object, frame, clicks (x,y,label), box, text; then one
        row per text object (frame ``all``)."""
        out: list[list[str | int]] = []
        for (o, f), p in sorted(self.entries.items()):
            if p.empty:
                continue
            clicks = "; ".join(f"{c.x:.0f},{c.y:.0f},{int(c.positive)}" for c in p.clicks)
            box = ",".join(f"{v:.0f}" for v in p.box) if p.box is not None else ""
            out.append([o, f, clicks, box, ""])
        for o, text in sorted(self.texts.items()):
            out.append([o, "all", "", "", text])
        return out

    def draw(self, frame: np.ndarray, frame_idx: int) -> np.ndarray:
        """A copy of ``frame`` with this frame's clicks (green positive, red negative, ringed in
        the object's colour), boxes (object colour) and a pending box corner."""
        img = Image.fromarray(np.ascontiguousarray(frame))
        d = ImageDraw.Draw(img)
        h, w = self.frame_size
        r = max(3, round(min(h, w) / 70))
        for p in self.on_frame(frame_idx):
            color = overlay_color(p.obj_id)
            if p.box is not None:
                d.rectangle(p.box, outline=color, width=max(2, r // 2))
            for c in p.clicks:
                d.ellipse((c.x - r - 2, c.y - r - 2, c.x + r + 2, c.y + r + 2), fill=color)
                d.ellipse(
                    (c.x - r, c.y - r, c.x + r, c.y + r),
                    fill=_POSITIVE if c.positive else _NEGATIVE,
                    outline=(255, 255, 255),
                )
        if self.corner is not None and self.corner[1] == frame_idx:
            _, _, x, y = self.corner
            color = overlay_color(self.corner[0])
            d.line((x - 2 * r, y, x + 2 * r, y), fill=color, width=2)
            d.line((x, y - 2 * r, x, y + 2 * r), fill=color, width=2)
        return np.asarray(img)
