"""Evaluator: protocols, hand-computed per-object scores, folders, results I/O, segmenters."""

from __future__ import annotations


import numpy as np
import pytest
import torch
from PIL import Image

from surgsam.data import VOSDataset, write_mask
from surgsam.data.vos import DatasetError, Video
from surgsam.eval import (
    CopyFirstMaskSegmenter,
    EngineSegmenter,
    EvalResult,
    OracleSegmenter,
    evaluate_folders,
    evaluate_video,
    get_protocol,
    run_end_to_end,
)
from surgsam.eval.distributed import shard


class ArrayVideo(Video):
    """An in-memory video: ``labels`` is a T x H x W id array."""

    def __init__(self, name, labels, categories=None):
        super().__init__(name, [f"{t:05d}" for t in range(len(labels))], None, categories=categories)
        self._labels = np.asarray(labels)

    def is_annotated(self, i):
        return True

    def _read_labels(self, i):
        return self._labels[i]


def moving_squares(T=6, h=32, w=40):
    lab = np.zeros((T, h, w), np.uint8)
    for t in range(T):
        lab[t, 4:12, 2 + 3 * t : 10 + 3 * t] = 1
        if t >= 2:  # object 2 enters at frame 2
            lab[t, 20:28, 30 - 2 * t : 36 - 2 * t] = 2
    return lab


def test_protocol_ranges():
    assert get_protocol("surgsam2").ranges(3, 10) == (range(4, 9), range(4, 10))
    assert get_protocol("resurgsam2").ranges(3, 10) == (range(0, 10), range(0, 10))
    assert get_protocol("davis").ranges(3, 10) == (range(1, 9), range(1, 10))
    with pytest.raises(ValueError):
        get_protocol("nope")


def test_hand_computed_scores_per_protocol():
    lab = np.zeros((4, 20, 20), np.uint8)
    lab[:, 5:10, 5:10] = 1
    v = ArrayVideo("v", lab)
    preds = [{1: lab[t] == 1} for t in range(4)]
    preds[2] = {}  # frame 2 missed entirely
    r = evaluate_video(v, iter(preds), "surgsam2")  # frames 1 and 2 count
    (o,) = r.objects
    assert (o.n_frames, o.J, o.F, o.Dice) == (2, 50.0, 50.0, 50.0)
    r = evaluate_video(v, iter(preds), "resurgsam2")  # all four frames count
    assert r.objects[0].J == 75.0 and r.objects[0].JF == 75.0
    s = r.summary()["all"]
    assert s["J&F"] == 75.0 and s["challenge_iou"] == 75.0


def test_oracle_and_copy_on_moving_objects():
    v = ArrayVideo("v", moving_squares(), {1: "a", 2: "b"})
    prompts = v.prompts()
    assert {k: p.frame_idx for k, p in prompts.items()} == {1: 0, 2: 2}
    oracle = run_end_to_end([v], OracleSegmenter([v]), "surgsam2", progress=False)
    assert all(x == 100.0 for x in (oracle.summary()["all"][k] for k in ("J", "F", "Dice", "challenge_iou", "iou")))
    copy = run_end_to_end([v], CopyFirstMaskSegmenter(), "surgsam2", progress=False)
    assert copy.summary()["all"]["J"] < 60
    # the copy baseline predicts object 2 only from its first appearance on
    frames = list(CopyFirstMaskSegmenter().segment("v", range(6), prompts))
    assert set(frames[1]) == {1} and set(frames[2]) == {1, 2}


def test_object_never_visible_in_evaluated_frames_is_excluded():
    lab = np.zeros((5, 10, 10), np.uint8)
    lab[4, 2:4, 2:4] = 3  # appears only in the last frame, which surgsam2 skips
    lab[:, 6:8, 6:8] = 1
    r = evaluate_video(ArrayVideo("v", lab), iter([{} for _ in range(5)]), "surgsam2")
    assert [o.obj_id for o in r.objects] == [1]
    assert r.excluded == [("v", 3)]


def test_prediction_count_and_size_checked():
    v = ArrayVideo("v", moving_squares())
    with pytest.raises(ValueError, match="predictions"):
        evaluate_video(v, iter([{}] * 3))
    with pytest.raises(ValueError, match="ground truth"):
        evaluate_video(v, iter([{1: np.zeros((5, 5), bool)}] * 6))


def test_category_level_merges_instances_of_a_type():
    lab = np.zeros((3, 10, 20), np.uint8)
    lab[:, 2:5, 2:5] = 1
    lab[:, 2:5, 12:15] = 2
    v = ArrayVideo("v", lab, {1: "forceps", 2: "forceps"})
    swapped = [np.where(lab[t] == 1, 2, np.where(lab[t] == 2, 1, 0)) for t in range(3)]
    inst = evaluate_video(v, iter(swapped), "resurgsam2", level="instance")
    cat = evaluate_video(v, iter(swapped), "resurgsam2", level="category")
    assert inst.summary()["all"]["challenge_iou"] == 0.0  # identities swapped
    assert cat.summary()["all"]["challenge_iou"] == 100.0  # same category: type-level IoU is perfect


def test_groups_instruments_and_tissue():
    lab = np.zeros((3, 10, 20), np.uint8)
    lab[:, 1:4, 1:4] = 1
    lab[:, 5:9, 10:18] = 11
    v = ArrayVideo("v", lab)
    preds = [{1: lab[t] == 1} for t in range(3)]  # tissue never predicted
    s = evaluate_video(v, iter(preds), "resurgsam2").summary()
    assert s["instruments"]["J"] == 100.0 and s["tissue"]["J"] == 0.0 and s["all"]["J"] == 50.0


def test_result_roundtrip_merge_and_write(tmp_path):
    a = evaluate_video(ArrayVideo("a", moving_squares()), iter([{}] * 6), "surgsam2")
    b = evaluate_video(ArrayVideo("b", moving_squares()), iter([{}] * 6), "surgsam2")
    m = EvalResult.merge([a, b])
    assert {o.video for o in m.objects} == {"a", "b"}
    back = EvalResult.from_dict(m.to_dict())
    assert back.summary() == m.summary()
    with pytest.raises(ValueError, match="twice"):
        EvalResult.merge([a, a])
    paths = m.write(tmp_path / "out")
    assert all(p.is_file() for p in paths.values())
    assert "J&F" in paths["objects"].read_text().splitlines()[0]
    assert "a" in m.table() and "protocol surgsam2" in m.table()


def _write_vos(root, videos):
    for name, lab in videos.items():
        for t, ids in enumerate(lab):
            (root / "JPEGImages" / name).mkdir(parents=True, exist_ok=True)
            Image.fromarray(np.full(ids.shape + (3,), 80, np.uint8)).save(root / "JPEGImages" / name / f"{t:05d}.jpg")
            write_mask(root / "Annotations" / name / f"{t:05d}.png", ids)


def test_folder_evaluation_palette_and_per_object(tmp_path):
    lab = moving_squares()
    _write_vos(tmp_path / "gt", {"v1": lab, "v2": lab[::-1].copy()})
    gt = VOSDataset(tmp_path / "gt")
    # palette predictions equal to the ground truth for v1, empty for v2
    for t, ids in enumerate(lab):
        write_mask(tmp_path / "pred" / "v1" / f"{t:05d}.png", ids)
        write_mask(tmp_path / "pred" / "v2" / f"{t:05d}.png", np.zeros_like(ids))
    r = evaluate_folders(gt, tmp_path / "pred", progress=False)
    per = {row["video"]: row["J"] for row in r.per_video()}
    # v2 (time-reversed): object 2 leaves at frame 4, where an empty prediction scores J = 1, so
    # object 2 gets 1/4 over its frames 1..4 and object 1 gets 0
    assert per["v1"] == 100.0 and per["v2"] == 12.5
    # SA-V layout: one folder per object, missing files mean empty masks
    for t, ids in enumerate(lab):
        write_mask(tmp_path / "sav" / "v1" / "001" / f"{t:05d}.png", (ids == 1).astype(np.uint8))
        if t >= 2:
            write_mask(tmp_path / "sav" / "v1" / "002" / f"{t:05d}.png", (ids == 2).astype(np.uint8) * 255)
    r = evaluate_folders(gt, tmp_path / "sav", strict=False, progress=False)
    assert r.summary()["all"]["J"] == 100.0
    # strictness and missing frames
    with pytest.raises(DatasetError, match="no predictions"):
        evaluate_folders(gt, tmp_path / "sav", progress=False)
    (tmp_path / "pred" / "v1" / "00003.png").unlink()
    with pytest.raises(DatasetError, match="00003"):
        evaluate_folders(gt, tmp_path / "pred", progress=False)
    r = evaluate_folders(gt, tmp_path / "pred", allow_missing=True, progress=False)
    assert r.per_video()[0]["J"] < 100.0


def test_shard_is_balanced_disjoint_and_complete():
    lengths = [30, 10, 10, 50, 20, 5, 5]
    parts = [shard(lengths, r, 3) for r in range(3)]
    assert sorted(i for p in parts for i in p) == list(range(7))
    loads = [sum(lengths[i] for i in p) for p in parts]
    assert max(loads) - min(loads) <= 30
    assert shard(lengths, 0, 1) == list(range(7))
    with pytest.raises(ValueError):
        shard(lengths, 3, 3)


# ---- the engine adapter ------------------------------------------------------------------------
def test_engine_segmenter_protocol():
    """The real engine (untrained nano) through EngineSegmenter: objects start at their first
    appearance (object 2 on frame 2) and every frame yields masks of the frame's size."""
    v = ArrayVideo("v", moving_squares())
    frames = [np.full((32, 40, 3), 90, np.uint8)] * 6
    seg = EngineSegmenter("nano", image_size=256, memory="fifo")
    out = list(seg.segment("v", frames, v.prompts()))
    assert len(out) == 6 and set(out[0]) == {1} and set(out[1]) == {1} and set(out[2]) == {1, 2}
    assert all(m.shape == (32, 40) and m.dtype == bool for masks in out for m in masks.values())
    # a mask prompt is returned as the prediction on its own frame
    assert (out[2][2] == v.prompts()[2].mask).all()


def test_engine_segmenter_takes_network_and_size_from_our_checkpoint(tmp_path):
    """Without --model/--image-size, one of our checkpoints decides both (a 256-px nano is not
    silently run at the papers' 512 px); explicit values still win; a bare state dict falls back
    to the papers' setting."""
    from surgsam.modeling import build_model, save_checkpoint

    net = build_model("nano", image_size=128)
    ours = save_checkpoint(net, tmp_path / "nano128.pt", net.cfg.to_dict())
    assert EngineSegmenter(checkpoint=str(ours))._get_model().image_size == 128
    assert EngineSegmenter(checkpoint=str(ours), image_size=64)._get_model().image_size == 64
    torch.save(net.state_dict(), tmp_path / "bare.pt")
    with pytest.raises(Exception, match="sam2.1_hiera_small|nano"):  # bare nano weights vs the default preset
        EngineSegmenter(checkpoint=str(tmp_path / "bare.pt"))._get_model()
    built = EngineSegmenter("nano", checkpoint=str(tmp_path / "bare.pt"))._get_model()
    assert built.cfg.name == "nano" and built.image_size == 512


def test_interior_point_and_box_prompts():
    from surgsam.eval.endtoend import interior_point, mask_box

    m = np.zeros((40, 60), bool)
    m[5:15, 2:50] = True  # a bar ...
    m[10:36, 30:56] = True  # ... joined to a thicker square: the deepest pixel is in the square
    x, y = interior_point(m)
    assert m[int(y), int(x)] and 36 <= x <= 48 and 17 <= y <= 24
    ring = np.zeros((30, 30), bool)
    ring[5:25, 5:25] = True
    ring[12:18, 12:18] = False  # a hole: the answer stays inside the mask
    assert ring[int(interior_point(ring)[1]), int(interior_point(ring)[0])]
    edge = np.zeros((10, 10), bool)
    edge[:, :3] = True  # touching the border: the border counts as outside
    assert interior_point(edge)[0] == 1.0
    assert mask_box(m) == (2.0, 5.0, 55.0, 35.0)
    with pytest.raises(ValueError, match="empty"):
        interior_point(np.zeros((4, 4), bool))


@pytest.mark.parametrize("kind", ["click", "box"])
def test_engine_segmenter_click_and_box_prompts(kind):
    """A click or box prompt goes to the engine as such (not as the mask) on the object's first frame."""
    v = ArrayVideo("v", moving_squares())
    frames = [np.full((32, 40, 3), 90, np.uint8)] * 6
    seg = EngineSegmenter("nano", image_size=64, memory="fifo", prompt=kind)
    sent = []
    real = seg._engine_prompt
    seg._engine_prompt = lambda cls, k, p: sent.append(real(cls, k, p)) or sent[-1]
    out = list(seg.segment("v", frames, v.prompts()))
    assert len(out) == 6 and set(out[2]) == {1, 2}
    assert all(p.mask is None for p in sent)
    assert all((p.points is not None) == (kind == "click") and (p.box is not None) == (kind == "box") for p in sent)
    with pytest.raises(ValueError, match="prompt kind"):
        EngineSegmenter(prompt="scribble")
