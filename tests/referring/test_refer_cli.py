"""`surgsam refer` end to end on a small mp4: the embedded default model, the untrained network,
palette masks, overlay, JSON summary with the frame tracking started on or "never found"."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

pytest.importorskip("transformers")
pytest.importorskip("av")

from surgsam.cli import main  # noqa: E402
from surgsam.io import read_palette_png, write_video  # noqa: E402
from surgsam.referring import ReferringSAM2  # noqa: E402

H, W, N = 64, 80, 6


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    d = tmp_path_factory.mktemp("refer")
    rng = np.random.default_rng(0)
    write_video(d / "clip.mp4", [rng.integers(0, 256, (H, W, 3), dtype=np.uint8) for _ in range(N)], fps=10)
    return d


def scripted_detect(monkeypatch):
    """Object 1 (row 0 while both expressions search) is credible on every frame with a known
    mask; object 2 never is."""
    real = ReferringSAM2.detect

    def fake(self, frame, previous, prompt, multimask_output=None):
        det = real(self, frame, previous, prompt, multimask_output)
        side = det.masks.low_res_masks.shape[-1]
        det.masks.object_score_logits.fill_(-4.0)
        if len(prompt) == 2:
            det.masks.object_score_logits[0, 0] = 4.0
            det.masks.ious[0] = 0.9
            det.masks.low_res_masks[0].fill_(-8.0)
            det.masks.low_res_masks[0, 0, : side // 2, : side // 2] = 8.0  # the top-left quarter
        return det

    monkeypatch.setattr(ReferringSAM2, "detect", fake)


def test_refer_cli_masks_overlay_and_summary(video, tmp_path, monkeypatch, capsys):
    scripted_detect(monkeypatch)
    out, ov = tmp_path / "masks", tmp_path / "overlay.mp4"
    rc = main(
        [
            "refer",
            str(video / "clip.mp4"),
            "--text",
            "the grasper",
            "--text",
            "the clip applier",
            "--out",
            str(out),
            "--overlay",
            str(ov),
            "--no-cifs",
            "--image-size",
            "128",
            "--no-progress",
            "--untrained",
        ]
    )
    assert rc == 0
    captured = capsys.readouterr()
    summary = json.loads(captured.out.strip().splitlines()[-1])
    assert summary["frames"] == N and summary["fps"] > 0 and summary["untrained"] is True
    assert summary["checkpoint"] is None
    got = (summary["model"], summary["referring"], summary["text_encoder"], summary["memory"])
    assert got == ("nano", "tiny", "minilm", "dlm")
    assert summary["cifs"] is False
    e1, e2 = summary["expressions"]
    assert (e1["obj_id"], e1["text"], e1["tracking_from"], e1["credible_frame"]) == (1, "the grasper", 1, 0)
    assert (e2["obj_id"], e2["tracking_from"], e2["credible_frame"]) == (2, "never found", None)
    assert e1["detections_shown"] == 0 and e2["detections_shown"] == 0  # found at once; never present
    assert "WARNING: untrained" in captured.err
    assert (
        "notice: expression 2 ('the clip applier') was never credibly found in 6 frames: its masks are empty"
        in captured.err
    )
    assert "expression 1 " not in captured.err
    pngs = sorted(out.glob("*.png"))
    assert [p.name for p in pngs] == [f"{i:05d}.png" for i in range(N)]
    first = read_palette_png(pngs[0])
    low = torch.full((1, 1, 32, 32), -8.0)
    low[..., :16, :16] = 8.0
    want = F.interpolate(low, (H, W), mode="bilinear", align_corners=False)[0, 0].numpy() > 0
    np.testing.assert_array_equal(first, want.astype(np.uint8))  # object 1's detection on frame 0
    assert all(2 not in np.unique(read_palette_png(p)) for p in pngs)  # object 2: empty throughout
    import av

    with av.open(str(ov)) as c:
        assert sum(1 for _ in c.decode(video=0)) == N


def test_refer_cli_rejects_bad_expressions_and_encoders(video, tmp_path):
    args = [
        "refer",
        str(video / "clip.mp4"),
        "--out",
        str(tmp_path),
        "--no-progress",
        "--untrained",
        "--text-encoder",
        "clip-tiny",
    ]
    with pytest.raises(ValueError, match="empty"):
        main([*args, "--text", "the grasper", "--text", " "])
    with pytest.raises(ValueError, match="unknown text encoder"):
        main([*args[:-1], "nonsense", "--text", "the grasper"])
    with pytest.raises(FileNotFoundError):
        main(["refer", str(tmp_path / "missing.mp4"), "--text", "x", "--out", str(tmp_path)])
    assert not list(tmp_path.glob("*.png"))


def test_refer_cli_with_our_checkpoint(video, tmp_path, capsys):
    from surgsam.modeling import SAM2Model, get_preset
    from surgsam.referring import get_referring_preset, save_referring_checkpoint

    torch.manual_seed(1)
    model = ReferringSAM2(SAM2Model(get_preset("nano", 128)), get_referring_preset("tiny"))
    ck = save_referring_checkpoint(model, tmp_path / "ref.pt")
    rc = main(
        [
            "refer",
            str(video / "clip.mp4"),
            "--text",
            "the grasper",
            "--checkpoint",
            str(ck),
            "--memory",
            "efp",
            "--precision",
            "fp32",
            "--out",
            str(tmp_path / "m"),
            "--no-progress",
        ]
    )
    assert rc == 0
    captured = capsys.readouterr()
    summary = json.loads(captured.out.strip().splitlines()[-1])
    # the checkpoint carries its configs; the tiny preset names its own (tiny CLIP) text encoder
    got = (summary["untrained"], summary["image_size"], summary["text_encoder"], summary["memory"])
    assert got == (False, 128, "clip", "efp")
    assert "WARNING" not in captured.err and len(list((tmp_path / "m").glob("*.png"))) == N


def test_refer_cli_default_is_the_embedded_model(video, tmp_path, capsys):
    from surgsam.referring.checkpoint import read_referring_checkpoint

    rc = main(
        ["refer", str(video / "clip.mp4"), "--text", "small-intestine", "--out", str(tmp_path / "m"), "--no-progress"]
    )
    assert rc == 0
    captured = capsys.readouterr()
    summary = json.loads(captured.out.strip().splitlines()[-1])
    cfg = read_referring_checkpoint("surgsam-ref-nano-synth").referring_config
    got = (summary["checkpoint"], summary["untrained"], summary["model"], summary["referring"], summary["text_encoder"])
    assert got == ("surgsam-ref-nano-synth", False, "nano", cfg.name, "minilm")
    assert summary["image_size"] == 256 and "WARNING" not in captured.err
    assert len(list((tmp_path / "m").glob("*.png"))) == N


def test_refer_cli_untrained_options_are_checked(video, tmp_path):
    base = ["refer", str(video / "clip.mp4"), "--text", "x", "--out", str(tmp_path), "--no-progress"]
    with pytest.raises(ValueError, match="add --untrained"):
        main([*base, "--model", "nano"])  # a preset without weights describes an untrained network
    with pytest.raises(ValueError, match="add --untrained"):
        main([*base, "--referring", "tiny"])
    with pytest.raises(ValueError, match="exclude each other"):
        main([*base, "--untrained", "--checkpoint", "surgsam-ref-nano-synth"])
    assert not list(tmp_path.glob("*.png"))


def test_refer_cli_coco_rle_matches_the_pngs_and_names_the_texts(video, tmp_path, monkeypatch, capsys):
    """--coco: each frame's annotations decode to its palette PNG; categories are the texts;
    an expression never credibly found is marked searching on every frame."""
    pytest.importorskip("pycocotools")
    from pycocotools import mask as mask_api

    scripted_detect(monkeypatch)
    out = tmp_path / "masks"
    assert (
        main(
            [
                "refer",
                str(video / "clip.mp4"),
                "--text",
                "the grasper",
                "--text",
                "the clip applier",
                "--out",
                str(out),
                "--coco",
                "--no-cifs",
                "--image-size",
                "128",
                "--no-progress",
                "--untrained",
            ]
        )
        == 0
    )
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["coco"] == str(out / "coco_rle.json")
    doc = json.loads((out / "coco_rle.json").read_text())
    assert doc["categories"] == [{"id": 1, "name": "the grasper"}, {"id": 2, "name": "the clip applier"}]
    for t in range(N):
        anns = [a for a in doc["annotations"] if a["image_id"] == t]
        assert [a["object_id"] for a in anns] == [1, 2]
        label = np.zeros((H, W), np.uint8)
        for a in anns:
            label[mask_api.decode(a["segmentation"]).astype(bool)] = a["object_id"]
        np.testing.assert_array_equal(label, read_palette_png(out / f"{t:05d}.png"))
        assert anns[1]["searching"] is True and anns[1]["area"] == 0
    assert json.loads((out / "surgsam_manifest.json").read_text())["coco"] == "coco_rle.json"
