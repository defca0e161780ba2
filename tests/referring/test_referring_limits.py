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


# -- surgsam refer: the output folder rules and the run manifest ------------------------------
@pytest.fixture(scope="module")
def video(tmp_path_factory):
    pytest.importorskip("av")
    import numpy as np

    from surgsam.io import write_video

    d = tmp_path_factory.mktemp("refer_limits")
    rng = np.random.default_rng(0)
    write_video(d / "clip.mp4", [rng.integers(0, 256, (48, 64, 3), dtype=np.uint8) for _ in range(3)], fps=10)
    return d / "clip.mp4"


def _refer(video, out, *extra):
    from surgsam.cli import main

    return main(
        [
            "refer",
            str(video),
            "--text",
            "the grasper",
            "--out",
            str(out),
            "--image-size",
            "128",
            "--no-progress",
            "--untrained",
            *extra,
        ]
    )


def test_refer_writes_a_manifest_and_refuses_a_non_empty_out(video, tmp_path):
    import json

    from surgsam.io.outdir import OutputFolderError

    out = tmp_path / "out"
    assert _refer(video, out) == 0
    man = json.loads((out / "surgsam_manifest.json").read_text())
    assert man["command"] == "refer" and man["frames_written"] == 3 and man["texts"] == ["the grasper"]
    assert man["untrained"] is True and man["checkpoint"] is None
    with pytest.raises(OutputFolderError, match="not empty"):
        _refer(video, out)
    (tmp_path / "ov.mp4").write_bytes(b"earlier")
    with pytest.raises(OutputFolderError, match="already exists"):
        _refer(video, tmp_path / "new", "--overlay", str(tmp_path / "ov.mp4"))
    assert _refer(video, out, "--overwrite") == 0


def test_refer_refused_while_another_run_holds_the_folder(video, tmp_path):
    from surgsam.io.outdir import OutputFolder, OutputFolderError

    with OutputFolder(tmp_path / "out"):
        with pytest.raises(OutputFolderError, match="another surgsam run"):
            _refer(video, tmp_path / "out", "--overwrite")
