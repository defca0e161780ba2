"""ReferringSegmenter refuses object ids outside 1..255 (the palette) before encoding any text."""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("transformers")

from surgsam.modeling import SAM2Model, get_preset  # noqa: E402
from surgsam.referring import CLIPTextEncoder, ReferringSAM2, ReferringSegmenter, get_referring_preset  # noqa: E402


@pytest.fixture(scope="module")
def seg():
    torch.manual_seed(0)
    model = ReferringSAM2(SAM2Model(get_preset("nano", 128)), get_referring_preset("tiny")).eval()
    return ReferringSegmenter(model, CLIPTextEncoder.tiny())


@pytest.mark.parametrize("oid", [0, -3, 256, 2**40])
def test_add_text_object_id_bounds(seg, oid, monkeypatch):
    calls = []
    monkeypatch.setattr(seg.text_encoder, "encode", lambda texts: calls.append(texts))
    with pytest.raises(ValueError, match=r"object ids must be 1\.\.255"):
        seg.add_text(oid, "the grasper")
    with pytest.raises(ValueError, match=r"1\.\.255"):
        seg.add_texts({1: "the grasper", oid: "the kidney"})  # all or nothing
    assert calls == [] and seg.obj_ids == []


def test_add_text_accepts_the_largest_id(seg):
    seg.add_text(255, "the grasper")
    assert seg.obj_ids == [255]
    with pytest.raises(TypeError, match="obj_id must be an int"):
        seg.add_text(True, "the grasper")
