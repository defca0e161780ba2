"""Configuration of the synthetic surgical video generator."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

from ..paraphrase import PHRASINGS, Phrasing
from .style import STYLES, Style


@dataclass(frozen=True)
class SynthConfig:
    """How synthetic videos look. Sizes in pixels; probabilities in [0, 1].

    ``version`` selects the vocabulary and expression grammar: 17 (EndoVis17 instrument types,
    instruments only, locations in expressions) or 18 (EndoVis18 types plus tissue objects
    11, 12, 17).

    ``style`` is the look (:mod:`.style`: ``"default"``, the training data's, or ``"alt"`` for a
    differently styled held-out set; the script, ids and labels do not depend on it).
    ``phrasing`` is the wording of ``meta_expressions.json``: ``"standard"`` (the Ref-EndoVis
    grammar) or ``"paraphrase"`` (reworded with held-out synonyms and templates,
    :mod:`surgsam.data.paraphrase`; Meta is unchanged). Both are left out of :meth:`to_dict`
    at their defaults, so a default dataset's ``synth_info.json`` is what it always was.
    """

    width: int = 320
    height: int = 256
    frames: int = 40
    version: int = 18
    min_instruments: int = 2
    max_instruments: int = 4
    duplicate_type_prob: float = 0.35  # chance that an extra instrument repeats a type (left/right pair)
    late_entry_prob: float = 0.45  # chance an instrument (not the first) first appears after frame 0
    exit_prob: float = 0.45  # chance an instrument leaves during the video
    reentry_prob: float = 0.6  # chance a leaving instrument comes back
    tissue_objects: tuple[int, int] = (1, 3)  # min/max tissue objects (version 18)
    smoke: float = 0.6  # strength of cautery smoke (0 disables)
    motion_blur: bool = True
    specular: bool = True
    camera_motion: float = 1.0  # scale of camera pan/zoom/rotation/shake (0 = static camera)
    noise: float = 2.5  # sensor noise sigma in grey levels
    frame_format: str = "jpg"  # "jpg" or "png"
    jpeg_quality: int = 90
    style: Style = "default"
    phrasing: Phrasing = "standard"

    def __post_init__(self) -> None:
        if self.width < 64 or self.height < 64:
            raise ValueError(f"frame size must be at least 64x64, got {self.width}x{self.height}")
        if self.frames < 1:
            raise ValueError("frames must be >= 1")
        if self.version not in (17, 18):
            raise ValueError(f"version must be 17 or 18, got {self.version}")
        if not 1 <= self.min_instruments <= self.max_instruments <= 10:
            raise ValueError("need 1 <= min_instruments <= max_instruments <= 10 (instrument ids are 1-10)")
        if self.frame_format not in ("jpg", "png"):
            raise ValueError("frame_format must be 'jpg' or 'png'")
        if self.style not in STYLES:
            raise ValueError(f"style must be one of {STYLES}, got {self.style!r}")
        if self.phrasing not in PHRASINGS:
            raise ValueError(f"phrasing must be one of {PHRASINGS}, got {self.phrasing!r}")

    def to_dict(self) -> dict:
        d = asdict(self)
        d["tissue_objects"] = list(self.tissue_objects)
        for name, default in (("style", "default"), ("phrasing", "standard")):
            if d[name] == default:
                del d[name]
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "SynthConfig":
        names = {f.name for f in fields(cls)}
        kw = {k: v for k, v in d.items() if k in names}
        if "tissue_objects" in kw:
            kw["tissue_objects"] = tuple(kw["tissue_objects"])
        return cls(**kw)
