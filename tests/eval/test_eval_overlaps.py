"""Evaluation scores what is written: overlapping predictions are resolved once (SAM 2's VOS
rule, ``surgsam.io.labels.resolve_overlaps``) and the score of a run equals the score of its
palette PNGs re-read from disk, for dict segmenters, the engine (with logits) and the demo."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from surgsam.data import VOSDataset, read_mask, write_mask
from surgsam.eval import ArrayVideo, evaluate_folders, evaluate_video, run_end_to_end

T, H, W = 6, 24, 32


def two_objects() -> np.ndarray:
    """Object 1 (a fixed block on the left) and object 2 (a block moving right, entering at 1)."""
    lab = np.zeros((T, H, W), np.uint8)
    lab[:, 4:16, 2:12] = 1
    for t in range(1, T):
        lab[t, 8:20, 10 + 2 * t : 18 + 2 * t] = 2
    return lab


def write_dataset(root, lab) -> VOSDataset:
    for t, frame_lab in enumerate(lab):
        (root / "JPEGImages" / "v").mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.full((H, W, 3), 90, np.uint8)).save(root / "JPEGImages" / "v" / f"{t:05d}.jpg")
        write_mask(root / "Annotations" / "v" / f"{t:05d}.png", frame_lab)
    return VOSDataset(root)


class OverlappingSegmenter:
    """Object 1's prediction is right; object 2's is right but also spills over object 1's block,
    so the two masks overlap on every frame where object 2 is predicted."""

    def __init__(self, lab):
        self.lab = lab

    def segment(self, video, frames, prompts):
        for t in range(len(frames)):
            out = {1: self.lab[t] == 1}
            if t >= 1:
                spill = np.zeros((H, W), bool)
                spill[4:16, 6:12] = True
                out[2] = (self.lab[t] == 2) | spill
            yield out


def scores(result) -> dict[int, tuple[float, float, float]]:
    return {o.obj_id: (o.J, o.F, o.Dice) for o in result.objects}


def test_the_score_of_a_run_is_the_score_of_its_written_pngs(tmp_path):
    lab = two_objects()
    data = write_dataset(tmp_path / "gt", lab)
    run = run_end_to_end(list(data), OverlappingSegmenter(lab), "surgsam2", save_dir=tmp_path / "pred", progress=False)
    disk = evaluate_folders(data, tmp_path / "pred", "surgsam2", progress=False)
    assert scores(run) == scores(disk)
    assert run.summary()["all"]["J&F"] == disk.summary()["all"]["J&F"]
    # binary masks only: the lowest id keeps the overlap, so object 1 stays perfect
    png = read_mask(tmp_path / "pred" / "v" / "00003.png")
    assert (png[4:16, 2:12] == 1).all()
    assert scores(run)[1] == (100.0, 100.0, 100.0)


def test_evaluate_video_scores_the_merged_map_not_each_mask():
    """Old behaviour scored each mask on its own (object 1 lost nothing, object 2 was charged for
    its spill); now the contested pixels belong to one object only, as in the PNG."""
    lab = two_objects()
    video = ArrayVideo("v", lab)
    preds = list(OverlappingSegmenter(lab).segment("v", range(T), {}))
    res = scores(evaluate_video(video, preds, "surgsam2"))
    merged = [np.where(p[1], 1, np.where(p.get(2, False), 2, 0)) for p in preds]  # lowest id on top
    assert res == scores(evaluate_video(video, merged, "surgsam2"))
    assert res[2][0] == 100.0  # object 2's spill lies under object 1 in the written map
    # SA-V per-object folders are scored mask by mask, overlaps kept (as the SA-V benchmark does)
    kept = scores(evaluate_video(video, preds, "surgsam2", keep_overlaps=True))
    assert kept[2][0] < 100.0 and kept[1] == res[1]


def test_engine_segmenter_resolves_overlaps_with_the_logits(tmp_path, monkeypatch):
    """The engine's masks overlap; the higher logit (object 2's) wins there, in the saved PNG and
    in the score, which re-scoring the PNGs reproduces. The old code saved the lowest id."""
    torch = pytest.importorskip("torch")
    import surgsam.engine as engine
    from surgsam.engine.state import FrameResult, upsample_logits
    from surgsam.eval.endtoend import EngineSegmenter

    lab = two_objects()
    data = write_dataset(tmp_path / "gt", lab)

    def fake_segment_video(frames, prompts, model, *, memory="efp", resize="pil", precision="fp32", fast=False):
        for t in range(len(frames)):
            low = torch.full((2, 1, H // 4, W // 4), -8.0)
            low[0, 0, 1:5, 0:5] = 2.0  # object 1
            low[1, 0, 2:5, 2:7] = 6.0  # object 2, overlapping object 1 and surer
            ids = [1, 2] if t >= 1 else [1]
            low = low[: len(ids)]
            masks = (upsample_logits(low, (H, W))[:, 0] > 0).numpy()
            yield FrameResult(t, ids, masks, np.ones(len(ids), np.float32), np.ones(len(ids), np.float32), low)

    monkeypatch.setattr(engine, "segment_video", fake_segment_video)
    seg = EngineSegmenter("nano", image_size=64, memory="fifo")
    monkeypatch.setattr(seg, "_get_model", lambda: (None, None))
    run = run_end_to_end(list(data), seg, "surgsam2", save_dir=tmp_path / "pred", progress=False)
    disk = evaluate_folders(data, tmp_path / "pred", "surgsam2", progress=False)
    assert scores(run) == scores(disk)
    both = list(fake_segment_video(range(2), [], None))[1]
    logits = both.logits().numpy()
    highest = np.where(both.masks.any(0), np.argmax(np.where(both.masks, logits, -np.inf), axis=0) + 1, 0)
    png = read_mask(tmp_path / "pred" / "v" / "00003.png")
    np.testing.assert_array_equal(png, highest)
    overlap = both.masks[0] & both.masks[1]
    assert overlap.sum() > 50 and (png[overlap] == 2).mean() > 0.8  # all but the blurred edges


def test_demo_scores_its_written_masks_with_the_eval_protocol(tmp_path, capsys):
    """``surgsam demo``'s J&F is the evaluator's (surgsam2 protocol: each object's prompted first
    frame and its last frame skipped) on the palette PNGs it wrote."""
    pytest.importorskip("av")
    from surgsam.data.synth import render_demo_clip
    from surgsam.demo import run_demo

    frames = 8
    summary = run_demo(tmp_path, frames=frames)
    clip = render_demo_clip(frames)
    written = [read_mask(tmp_path / "masks" / f"{t:05d}.png") for t in range(frames)]
    again = evaluate_video(ArrayVideo("demo", clip.labels, clip.categories), written, "surgsam2")
    s = again.summary()["all"]
    assert len(again.objects) > 0 and summary["J&F"] == pytest.approx(s["J&F"], abs=1e-9)
    assert summary["objects_scored"] == len(again.objects)
    assert summary["J"] == pytest.approx(s["J"], abs=1e-9) and summary["F"] == pytest.approx(s["F"], abs=1e-9)
    assert "SurgSAM2 protocol" in capsys.readouterr().out
