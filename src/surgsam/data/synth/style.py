"""Visual styles of the synthetic videos: tissue palette and texture, light colour and
vignetting, instrument finishes.

``"default"`` is the look the embedded models were trained on; its numbers are the ones the
generator always used, and it draws nothing from the random streams that the other styles do not
(a default-style video is bit-for-bit what it was before styles existed). ``"alt"`` is a
differently styled look for a second held-out set: a cooler light (a bluish colour temperature)
with a round, darker vignette and dimmer, bluish glints; paler, more purple and salmon tissue
with granular texture, extra bluish veins, more fat and deeper crevices; and per video one
instrument finish (matte dark, gold-coloured or satin gunmetal shafts, tinted metal jaws,
different specular strength). Object ids, labels, categories, actions and the script of a
video (which instruments, where they go, the tissue layout, the camera) do not depend on the
style: everything the alt style draws at random comes from a separate stream
(:func:`style_rng`), so seed ``s`` in both styles shows the same scene in two looks.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, get_args

import numpy as np

__all__ = ["STYLES", "Finish", "Lighting", "Style", "StyleSpec", "TissuePalette", "style_rng", "style_spec"]

Style = Literal["default", "alt"]
STYLES: tuple[Style, ...] = get_args(Style)

RGB = tuple[float, float, float]


@dataclass(frozen=True)
class TissuePalette:
    """Tissue colours (RGB in [0, 1]) and texture knobs.

    muscle / pink: the background's two base colours (a per-video hue offset is added to
    muscle's red and pink's green); fat, vessel: patches and vessel curves; septa: the
    covered kidney's lobule borders; organs: base colour of tissue objects 11, 12, 17.
    fat_bias: lowers the fat threshold (more fat); crevice: darkening of crevices; speckle:
    strength of a fine granular texture; veins: extra thin bluish veins of colour vein_color
    (speckle and veins are drawn from the style stream).
    """

    muscle: RGB
    pink: RGB
    fat: RGB
    vessel: RGB
    septa: RGB
    organs: dict[int, RGB]
    fat_bias: float = 0.0
    crevice: float = 0.55
    speckle: float = 0.0
    veins: int = 0
    vein_color: RGB = (0.0, 0.0, 0.0)


@dataclass(frozen=True)
class Lighting:
    """Endoscope light. tint: multiplies the per-video white balance (colour temperature);
    vignette: strength of an extra round fall-off towards the frame's rim (0: the default
    vignetting only); glint / glint_color: strength and colour of wet specular glints;
    smoke: colour of cautery smoke."""

    tint: RGB = (1.0, 1.0, 1.0)
    vignette: float = 0.0
    glint: float = 0.85
    glint_color: RGB = (1.0, 1.0, 1.0)
    smoke: RGB = (0.80, 0.80, 0.80)


@dataclass(frozen=True)
class Finish:
    """An instrument finish: ``shaft`` replaces black shafts (and the black of black-shafted
    instruments), ``metal`` multiplies the metal parts (wrists, jaws, silver shafts),
    ``specular`` scales every specular highlight, ``highlight_width`` is the highlight stripe's
    half width across the cylinder (the default draws 0.2)."""

    name: str
    shaft: RGB
    metal: RGB
    specular: float
    highlight_width: float = 0.2


@dataclass(frozen=True)
class StyleSpec:
    """Everything a style changes. ``finishes``: one is drawn per video from the style stream;
    empty: the instrument types' own colours (the default)."""

    name: Style
    palette: TissuePalette
    lighting: Lighting = field(default_factory=Lighting)
    finishes: tuple[Finish, ...] = ()

    @property
    def is_default(self) -> bool:
        return self.name == "default"


_DEFAULT = StyleSpec(
    "default",
    TissuePalette(
        muscle=(0.62, 0.17, 0.16),
        pink=(0.85, 0.45, 0.43),
        fat=(0.90, 0.72, 0.42),
        vessel=(0.42, 0.05, 0.08),
        septa=(0.72, 0.45, 0.22),
        organs={11: (0.42, 0.13, 0.12), 12: (0.84, 0.66, 0.36), 17: (0.86, 0.50, 0.46)},
    ),
)

_ALT = StyleSpec(
    "alt",
    TissuePalette(
        muscle=(0.56, 0.20, 0.25),
        pink=(0.93, 0.58, 0.50),
        fat=(0.97, 0.88, 0.60),
        vessel=(0.30, 0.05, 0.20),
        septa=(0.80, 0.56, 0.32),
        organs={11: (0.40, 0.11, 0.19), 12: (0.93, 0.80, 0.50), 17: (0.93, 0.63, 0.53)},
        fat_bias=0.07,
        crevice=0.7,
        speckle=0.16,
        veins=10,
        vein_color=(0.33, 0.20, 0.42),
    ),
    Lighting(
        tint=(0.88, 0.98, 1.12),
        vignette=0.85,
        glint=0.6,
        glint_color=(0.85, 0.93, 1.0),
        smoke=(0.86, 0.85, 0.82),
    ),
    (
        Finish("matte dark", shaft=(0.13, 0.13, 0.14), metal=(0.72, 0.72, 0.74), specular=0.3, highlight_width=0.45),
        Finish("gold", shaft=(0.62, 0.47, 0.18), metal=(1.08, 0.94, 0.70), specular=0.8, highlight_width=0.25),
        Finish(
            "satin gunmetal", shaft=(0.25, 0.28, 0.33), metal=(0.86, 0.90, 0.98), specular=0.55, highlight_width=0.35
        ),
    ),
)

_SPECS: dict[str, StyleSpec] = {"default": _DEFAULT, "alt": _ALT}


def style_spec(style: Style) -> StyleSpec:
    """The :class:`StyleSpec` of a style name."""
    if style not in _SPECS:
        raise ValueError(f"style must be one of {STYLES}, got {style!r}")
    return _SPECS[style]


def style_rng(seed: int, index: int) -> np.random.Generator:
    """The random stream of a non-default style for video ``index`` of the dataset drawn with
    ``seed``; separate from the video's own stream, so the scene does not depend on the style."""
    return np.random.default_rng(np.random.SeedSequence([int(seed), int(index), 0x57, 0x1E]))
