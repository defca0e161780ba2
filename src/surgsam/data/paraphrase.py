"""Paraphrases of Ref-EndoVis expressions: other names for the instruments and tissue (the
EndoVis 2017 / 2018 names and common synonyms), hyphenated and plain tissue names, other words for
actions and locations, other sentence templates.

Every list is split in three parts (:class:`Choices`): ``shared`` wordings may appear both in
training augmentation and in held-out sets (they include the standard Ref-EndoVis words and the
EndoVis names a user would type, e.g. "suction instrument", "kidney parenchyma"); ``train``
wordings only in training augmentation (``part="train"``); ``heldout`` wordings only in held-out
sets (``part="heldout"``), so a held-out set made with ``surgsam synth --phrasing paraphrase``
always contains wording that a model trained with ``--paraphrase-prob`` never saw. No held-out
wording is a substring of a shared or training wording (tested).

Names are given only where the synthetic instrument is a fair stand-in. EndoVis 2017's
"other" class is the drop-in ultrasound probe ("drop-in ultrasound probe"); EndoVis 2018's
"suction instrument" is the generator's "suction" (a laparoscopic suction-irrigator). The
generator has no hook electrode, so e.g. "permanent cautery hook" names none of its types and
is not used (the monopolar curved scissors are not a hook).

    paraphrase("suction", 9, rng=rng, part="heldout")    # e.g. "the suction irrigator, which is clearing blood"
    paraphrase_text("small-intestine", rng=rng, part="train")    # e.g. "the small bowel"
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, get_args

import numpy as np

from .refendovis import ACTIONS, LOCATIONS

__all__ = [
    "ACTION_PHRASES",
    "INSTRUMENT_NAMES",
    "INSTRUMENT_TEMPLATES",
    "LOCATION_PHRASES",
    "LOCATION_TEMPLATES",
    "PARTS",
    "PHRASINGS",
    "TISSUE_NAMES",
    "TISSUE_TEMPLATES",
    "Choices",
    "ParsedExpression",
    "Part",
    "Phrasing",
    "paraphrase",
    "paraphrase_text",
    "paraphrase_texts",
    "parse_expression",
]

Phrasing = Literal["standard", "paraphrase"]
PHRASINGS: tuple[Phrasing, ...] = get_args(Phrasing)
Part = Literal["train", "heldout"]
PARTS: tuple[Part, ...] = get_args(Part)


@dataclass(frozen=True)
class Choices:
    """The wordings of one thing: ``shared`` (both parts), ``train`` (training augmentation
    only) and ``heldout`` (held-out sets only)."""

    shared: tuple[str, ...]
    train: tuple[str, ...] = ()
    heldout: tuple[str, ...] = ()

    def pool(self, part: Part) -> tuple[str, ...]:
        """The wordings ``part`` draws from: the shared ones and its own."""
        if part not in PARTS:
            raise ValueError(f"part must be one of {PARTS}, got {part!r}")
        return self.shared + (self.train if part == "train" else self.heldout)

    def all(self) -> tuple[str, ...]:
        return self.shared + self.train + self.heldout


# Synthetic instrument type (surgsam.data.synth.instruments) -> its names. The first shared name
# is the Ref-EndoVis category; the EndoVis 2017 and 2018 names are shared.
INSTRUMENT_NAMES: dict[str, Choices] = {
    "bipolar forceps": Choices(
        ("bipolar forceps",), ("bipolar grasper", "bipolar"), ("maryland bipolar forceps", "bipolar cautery forceps")
    ),
    "prograsp forceps": Choices(
        ("prograsp forceps",), ("prograsp grasper", "prograsp"), ("pro-grasp forceps", "prograsp grasping forceps")
    ),
    "large needle driver": Choices(
        ("large needle driver",), ("needle driver", "needle holder"), ("large needle holder", "suturing needle driver")
    ),
    "monopolar curved scissors": Choices(
        ("monopolar curved scissors",),
        ("curved scissors", "monopolar scissors", "scissors"),
        ("hot shears", "curved monopolar shears"),
    ),
    "vessel sealer": Choices(
        ("vessel sealer",), ("vessel sealing device", "sealer"), ("vessel-sealing instrument", "tissue sealer")
    ),
    "grasping retractor": Choices(
        ("grasping retractor",), ("retractor", "retracting grasper"), ("grasper retractor", "fenestrated retractor")
    ),
    "suction": Choices(
        ("suction instrument", "suction"),
        ("suction tube", "suction cannula"),
        ("suction irrigator", "suction-irrigation device"),
    ),
    "clip applier": Choices(
        ("clip applier",), ("clip applicator", "clipper"), ("clip-applier", "ligating clip applier")
    ),
    "ultrasound probe": Choices(
        ("ultrasound probe",),
        ("ultrasound transducer", "ultrasound"),
        ("drop-in ultrasound probe", "laparoscopic ultrasound"),
    ),
}
# Ref-EndoVis18 tissue -> its names, with and without the hyphen.
TISSUE_NAMES: dict[str, Choices] = {
    "kidney-parenchyma": Choices(
        ("kidney parenchyma", "kidney-parenchyma"),
        ("renal parenchyma", "exposed kidney"),
        ("kidney tissue", "parenchyma of the kidney"),
    ),
    "covered-kidney": Choices(
        ("covered kidney", "covered-kidney"),
        ("fat-covered kidney", "kidney covered by fat"),
        ("kidney under its fat", "perirenal fat over the kidney"),
    ),
    "small-intestine": Choices(
        ("small intestine", "small-intestine"),
        ("small bowel", "bowel loop"),
        ("intestinal loops", "loop of small bowel"),
    ),
}
# Action id (refendovis.ACTIONS) -> gerund phrases.
ACTION_PHRASES: dict[int, Choices] = {
    1: Choices(("idle",), ("not moving", "at rest"), ("resting", "standing still")),
    2: Choices(("manipulating tool",), ("manipulating a tool", "handling a tool"), ("handling another instrument",)),
    3: Choices(("performing knot tying",), ("tying a knot", "knot tying"), ("tying a surgical knot", "making a knot")),
    4: Choices(("suturing tissue",), ("suturing", "stitching tissue"), ("sewing tissue", "placing a stitch")),
    5: Choices(
        ("manipulating tissue",), ("moving tissue", "manipulating the tissue"), ("handling tissue", "pushing tissue")
    ),
    6: Choices(("grasping tissue",), ("holding tissue", "grasping the tissue"), ("gripping tissue", "grabbing tissue")),
    7: Choices(
        ("retracting tissue",),
        ("retracting the tissue", "pulling tissue back"),
        ("holding tissue aside", "lifting tissue away"),
    ),
    8: Choices(("cutting tissue",), ("cutting", "dissecting tissue"), ("snipping tissue", "cutting through tissue")),
    9: Choices(("suctioning blood",), ("suctioning", "aspirating blood"), ("sucking up blood", "clearing blood")),
    10: Choices(("clipping tissue",), ("applying a clip", "clipping"), ("placing a clip", "putting on a clip")),
    11: Choices(("sensing vessels",), ("scanning for vessels", "sensing"), ("imaging vessels", "looking for vessels")),
    12: Choices(
        ("transecting vessel",),
        ("transecting a vessel", "dividing a vessel"),
        ("sealing and cutting a vessel", "dividing the vessel"),
    ),
    13: Choices(
        ("cauterizing tissue",), ("cauterizing", "coagulating tissue"), ("burning tissue", "cauterising tissue")
    ),
}
# Location id (refendovis.LOCATIONS) -> words; "left" / "right" stay whole words, so a horizontal
# flip (surgsam.train.clips.swap_left_right) still swaps them.
LOCATION_PHRASES: dict[int, Choices] = {
    1: Choices(("bottom left",), ("lower left",), ("bottom-left", "lower-left")),
    2: Choices(("bottom center",), ("bottom middle", "lower middle"), ("bottom centre", "lower-middle")),
    3: Choices(("bottom right",), ("lower right",), ("bottom-right", "lower-right")),
    4: Choices(("left",), ("left side",), ("left-hand side",)),
    5: Choices(("center",), ("middle",), ("centre",)),
    6: Choices(("right",), ("right side",), ("right-hand side",)),
    7: Choices(("top left",), ("upper left",), ("top-left", "upper-left")),
    8: Choices(("top center",), ("top middle", "upper middle"), ("top centre", "upper-middle")),
    9: Choices(("top right",), ("upper right",), ("top-right", "upper-right")),
}
# Sentence templates. Instruments: {name}, {be} ("is" / "are", from the name), {action};
# tissue: {name}; a location is appended to an instrument sentence: {sentence}, {loc}.
INSTRUMENT_TEMPLATES = Choices(
    ("{name} {be} {action}",),
    ("the {name} {be} {action}", "the {name} {action}", "{name} that {be} {action}"),
    ("the {name}, which {be} {action}", "the {name} currently {action}", "the {name} seen {action}"),
)
TISSUE_TEMPLATES = Choices(("{name}",), ("the {name}",), ("the {name} in view", "the visible {name}"))
LOCATION_TEMPLATES = Choices(
    ("{sentence} on the {loc}",),
    ("{sentence} at the {loc}", "{sentence} in the {loc} of the image"),
    ("{sentence} towards the {loc}", "{sentence} in the {loc} of the frame"),
)


@dataclass(frozen=True)
class ParsedExpression:
    """A standard Ref-EndoVis expression's parts: category, action id (0: tissue, just the
    category) and location id (0: none)."""

    category: str
    action: int = 0
    location: int = 0


def _alternatives(words) -> str:
    return "|".join(re.escape(w) for w in sorted(words, key=len, reverse=True))


_STANDARD = re.compile(
    rf"^(?P<cat>{_alternatives([*INSTRUMENT_NAMES, *TISSUE_NAMES])})"
    rf"(?: (?:is|are) (?P<act>{_alternatives(ACTIONS.values())})(?: on the (?P<loc>{_alternatives(LOCATIONS.values())}))?)?$"
)
_ACTION_IDS = {v: k for k, v in ACTIONS.items()}
_LOCATION_IDS = {v: k for k, v in LOCATIONS.items()}


def parse_expression(text: str) -> ParsedExpression | None:
    """The parts of a standard expression (``build_expression``'s grammar, either version),
    or None if ``text`` is not one (an instrument without an action is not one)."""
    m = _STANDARD.match(text.strip())
    if m is None:
        return None
    cat, act, loc = m.group("cat"), m.group("act"), m.group("loc")
    if (cat in INSTRUMENT_NAMES) != (act is not None):
        return None
    return ParsedExpression(cat, _ACTION_IDS[act] if act else 0, _LOCATION_IDS[loc] if loc else 0)


def _pick(rng: np.random.Generator, options: Sequence[str]) -> str:
    return options[int(rng.integers(len(options)))]


def paraphrase(category: str, action: int = 0, location: int = 0, *, rng: np.random.Generator, part: Part) -> str:
    """A reworded expression for an object of ``category`` doing ``action`` (0 for tissue) at
    ``location`` (0: not said), drawn from ``part``'s wordings (see the module docstring).

    Raises ValueError for a category, action or location without paraphrases."""
    if category in TISSUE_NAMES:
        if action != 0 or location != 0:
            raise ValueError(f"tissue {category!r} has no action or location in its expression")
        return _pick(rng, TISSUE_TEMPLATES.pool(part)).format(name=_pick(rng, TISSUE_NAMES[category].pool(part)))
    if category not in INSTRUMENT_NAMES:
        raise ValueError(f"no paraphrases for category {category!r}")
    if action not in ACTION_PHRASES:
        raise ValueError(f"no paraphrases for action {action!r} (instruments have actions 1..13)")
    name = _pick(rng, INSTRUMENT_NAMES[category].pool(part))
    be = "are" if name.endswith("s") else "is"
    text = _pick(rng, INSTRUMENT_TEMPLATES.pool(part)).format(
        name=name, be=be, action=_pick(rng, ACTION_PHRASES[action].pool(part))
    )
    if location:
        if location not in LOCATION_PHRASES:
            raise ValueError(f"no paraphrases for location {location!r}")
        loc = _pick(rng, LOCATION_PHRASES[location].pool(part))
        text = _pick(rng, LOCATION_TEMPLATES.pool(part)).format(sentence=text, loc=loc)
    return text


def paraphrase_text(text: str, *, rng: np.random.Generator, part: Part) -> str:
    """:func:`paraphrase` of a standard expression; a text outside the standard grammar is
    returned unchanged (and draws nothing)."""
    parsed = parse_expression(text)
    if parsed is None:
        return text
    return paraphrase(parsed.category, parsed.action, parsed.location, rng=rng, part=part)


def paraphrase_texts(
    texts: Sequence[str], *, rng: np.random.Generator, part: Part, attempts: int = 20
) -> dict[str, str]:
    """One paraphrase per distinct text (in order of first appearance), different texts kept
    different: a text whose paraphrase another text already took is drawn again (up to
    ``attempts`` times), else kept as it is. Texts outside the grammar stay unchanged."""
    out: dict[str, str] = {}
    taken: set[str] = set()
    for t in dict.fromkeys(texts):
        new = t
        for _ in range(attempts):
            cand = paraphrase_text(t, rng=rng, part=part)
            if cand not in taken:
                new = cand
                break
        if new in taken:
            raise ValueError(f"cannot give {t!r} a paraphrase distinct from the other texts")
        out[t] = new
        taken.add(new)
    return out
