"""Paraphrased referring expressions: coverage of the synthetic vocabulary, the train / held-out
split of the wordings, parsing of the standard grammar, and the generator's use of them."""

from __future__ import annotations

import re

import numpy as np
import pytest

from surgsam.data import paraphrase as P
from surgsam.data.refendovis import ACTIONS, CATEGORY_IDS, LOCATIONS, build_expression
from surgsam.data.synth import SynthConfig, render_video
from surgsam.data.synth.instruments import INSTRUMENT_TYPES
from surgsam.data.synth.scene import TISSUE_CLASSES
from surgsam.data.synth.writer import _expressions, phrasing_rng

TABLES = {
    "instrument names": P.INSTRUMENT_NAMES,
    "tissue names": P.TISSUE_NAMES,
    "actions": P.ACTION_PHRASES,
    "locations": P.LOCATION_PHRASES,
}
TEMPLATES = {"instrument": P.INSTRUMENT_TEMPLATES, "tissue": P.TISSUE_TEMPLATES, "location": P.LOCATION_TEMPLATES}


def _cases():
    """Every (category, action, location) the generator can express, both versions."""
    for name, t in INSTRUMENT_TYPES.items():
        for a in t.actions:
            yield name, a, 0
            for loc in LOCATIONS:
                yield name, a, loc
    for _, (tissue, _) in TISSUE_CLASSES.items():
        yield tissue, 0, 0


def _sample(part, rounds: int = 12) -> list[str]:
    rng = np.random.default_rng(0)
    return [P.paraphrase(c, a, loc, rng=rng, part=part) for _ in range(rounds) for c, a, loc in _cases()]


def _template_regex(template: str) -> re.Pattern:
    """A held-out template as a regex: its words literal, every slot any text."""
    parts = re.split(r"\{\w+\}", template)
    return re.compile("^" + "(.+)".join(re.escape(x) for x in parts) + "$")


def test_every_synthetic_type_tissue_action_and_location_has_paraphrases():
    assert set(P.INSTRUMENT_NAMES) == set(INSTRUMENT_TYPES)
    assert set(P.TISSUE_NAMES) == {name for name, _ in TISSUE_CLASSES.values()}
    assert set(P.INSTRUMENT_NAMES) | set(P.TISSUE_NAMES) == set(CATEGORY_IDS)
    assert set(P.ACTION_PHRASES) == set(ACTIONS) and set(P.LOCATION_PHRASES) == set(LOCATIONS)
    for table in TABLES.values():
        for key, ch in table.items():
            assert ch.shared and ch.train and ch.heldout, key  # every part has its own wording
    # the EndoVis 2017 / 2018 names of the synthetic types are among their names
    for cat, names in {
        "suction": "suction instrument",
        "ultrasound probe": "drop-in ultrasound probe",  # EndoVis17's "other"
        "monopolar curved scissors": "monopolar curved scissors",
        "kidney-parenchyma": "kidney parenchyma",
    }.items():
        assert names in (P.INSTRUMENT_NAMES | P.TISSUE_NAMES)[cat].all()
    rng = np.random.default_rng(1)
    for cat, a, loc in _cases():
        standard = build_expression(cat, a, loc, unique=loc == 0, version=17 if loc else 18)
        for part in P.PARTS:
            texts = {P.paraphrase(cat, a, loc, rng=rng, part=part) for _ in range(30)}
            assert texts - {standard}, (cat, a, loc, part)  # reworded at least sometimes
            assert all(t and t == t.strip() and "  " not in t for t in texts)
    with pytest.raises(ValueError):
        P.paraphrase("permanent cautery hook", 1, rng=rng, part="heldout")  # no synthetic stand-in


def test_names_and_phrases_never_name_two_things():
    for what, table in TABLES.items():
        seen: dict[str, object] = {}
        for key, ch in table.items():
            for w in ch.all():
                assert seen.setdefault(w, key) == key, f"{what}: {w!r} names {seen[w]!r} and {key!r}"


def test_heldout_only_wording_never_appears_in_training_augmentation():
    # no held-out wording is a substring of a wording training may use
    for what, table in {**TABLES, **{f"{k} templates": {0: v} for k, v in TEMPLATES.items()}}.items():
        train_words = [w for ch in table.values() for w in ch.pool("train")]
        for ch in table.values():
            for w in ch.heldout:
                assert w not in ch.pool("train")
                assert not any(w in t for t in train_words), (what, w)
    heldout_words = [w for table in TABLES.values() for ch in table.values() for w in ch.heldout]
    heldout_templates = [_template_regex(t) for ch in TEMPLATES.values() for t in ch.heldout]
    train = _sample("train")
    for text in train:
        assert not any(w in text for w in heldout_words), text
        assert not any(r.match(text) for r in heldout_templates), text
    # the held-out part does use them: most held-out sentences have wording training never sees
    heldout = _sample("heldout")
    novel = [t for t in heldout if any(w in t for w in heldout_words) or any(r.match(t) for r in heldout_templates)]
    assert len(novel) > 0.7 * len(heldout)
    assert len(set(train)) > 500 and len(set(heldout)) > 500


def test_parse_standard_expressions():
    for cat, a, loc in _cases():
        for version in (17, 18):
            if cat in P.TISSUE_NAMES and version == 17:
                continue  # Ref-EndoVis17 has no tissue
            text = build_expression(cat, a, loc, unique=loc == 0, version=version)
            parsed = P.parse_expression(text)
            expect_loc = loc if version == 17 else 0
            assert parsed == P.ParsedExpression(cat, a, expect_loc), text
    for text in ("the kidney", "bipolar forceps", "bipolar forceps are juggling", "suction is idle on the moon"):
        assert P.parse_expression(text) is None
        assert P.paraphrase_text(text, rng=np.random.default_rng(0), part="train") == text


def test_paraphrase_texts_keeps_shared_sentences_shared_and_different_ones_different():
    texts = ["suction is idle", "bipolar forceps are idle", "suction is idle", "small-intestine", "not ours"]
    for seed in range(30):
        new = P.paraphrase_texts(texts, rng=np.random.default_rng(seed), part="heldout")
        assert list(new) == ["suction is idle", "bipolar forceps are idle", "small-intestine", "not ours"]
        assert len(set(new.values())) == 4 and new["not ours"] == "not ours"


def test_generator_phrasings():
    """Standard phrasing writes build_expression's sentences exactly; paraphrase rewords every
    distinct sentence once, deterministically in the seed, from the held-out wordings."""
    cfg = SynthConfig(width=96, height=64, frames=5)
    heldout_words = [w for table in TABLES.values() for ch in table.values() for w in ch.heldout]
    reworded = novel = 0
    for index in range(4):
        v = render_video(cfg, seed=6, index=index)
        std = _expressions(v, 18)["expressions"]
        for e in std.values():  # the standard grammar, as before
            k = int(e["obj_id"])
            t0 = next(t for t, n in enumerate(v.visible[k]) if n > 0)
            info = v.meta["frames"][f"{t0:05d}"][str(k)]
            assert e["exp"] == build_expression(v.categories[k], info["action"], info["location"], info["unique"], 18)
        para = _expressions(v, 18, phrasing_rng(6, index))["expressions"]
        again = _expressions(v, 18, phrasing_rng(6, index))["expressions"]
        assert para == again and list(para) == list(std)
        for eid, e in para.items():
            assert e["obj_id"] == std[eid]["obj_id"]
            reworded += e["exp"] != std[eid]["exp"]
            novel += any(w in e["exp"] for w in heldout_words)
            same = [j for j, s in std.items() if s["exp"] == std[eid]["exp"]]
            assert {para[j]["exp"] for j in same} == {e["exp"]}
    assert reworded > 5 and novel > 3
