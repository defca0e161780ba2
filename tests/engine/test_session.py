"""Streaming session behaviour on the tiny `nano` preset (random weights): verbs, batching,
bounded memory, and bad input that must leave the session usable."""

from __future__ import annotations

import contextlib

import numpy as np
import pytest
import torch
from PIL import Image

from memory_census import live_tensors
from surgsam.bench.paired import synthetic_clip
from surgsam.engine import VideoSegmenter
from surgsam.modeling.common import plain_inference
from surgsam.modeling.sam2 import SpatialMemory
from synthetic import moving_objects_video


@pytest.fixture(scope="module")
def video():
    return moving_objects_video(n=24, h=120, w=160)


def run(model, frames, gt, memory="fifo", objs=(1, 2)):
    seg = VideoSegmenter(model, memory=memory)
    out = [seg.add_prompt(frames[0], obj_id=objs[0], mask=gt[objs[0]][0])]
    for k in objs[1:]:
        out[-1] = seg.add_prompt(None, obj_id=k, mask=gt[k][0])
    out += [seg.step(f) for f in frames[1:]]
    return seg, out


def test_results_cover_every_object_and_frame(model, video):
    frames, gt = video
    seg, out = run(model, frames, gt)
    assert [r.frame_idx for r in out] == list(range(len(frames)))
    for r in out:
        assert r.obj_ids == [1, 2]
        assert r.masks.shape == (2, 120, 160) and r.masks.dtype == bool
        assert r.object_scores.shape == (2,) and r.ious.shape == (2,)
    # the prompt frame returns the prompt itself (mask used as output)
    assert (out[0].mask(1) == gt[1][0]).mean() > 0.97


def test_batched_objects_equal_separate_sessions(model, video):
    frames, gt = video
    _, both = run(model, frames, gt)
    _, one = run(model, frames, gt, objs=(1,))
    _, two = run(model, frames, gt, objs=(2,))
    for rb, r1, r2 in zip(both, one, two):
        torch.testing.assert_close(rb.low_res_logits[0], r1.low_res_logits[0], atol=1e-4, rtol=0)
        torch.testing.assert_close(rb.low_res_logits[1], r2.low_res_logits[0], atol=1e-4, rtol=0)


def _census_at(seg, frames, at: tuple[int, ...]) -> dict[int, tuple[int, int]]:
    """Step ``seg`` through ``max(at)`` frames; the live tensors after each frame of ``at``."""
    out = {}
    for t in range(1, max(at) + 1):
        seg.step(frames[t % len(frames)])
        if t in at:
            out[t] = live_tensors()
    return out


@pytest.mark.parametrize("memory", ["fifo", "efp", "dlm"])
def test_memory_is_flat_in_video_length(model, video, memory):
    """Measured from outside the session (every live tensor of the process, frame-count driven):
    once the bank is full, frames 40, 60 and 80 hold exactly the same tensors."""
    frames, gt = video
    seg = VideoSegmenter(model, memory=memory)
    seg.add_prompt(frames[0], obj_id=1, mask=gt[1][0])
    census = _census_at(seg, frames, (40, 60, 80))
    assert census[40] == census[60] == census[80], f"{memory}: live tensors (count, bytes) grew: {census}"
    assert len(seg.objects[1].bank.recent) <= 16


def test_the_census_sees_a_leak_the_session_does_not_report(model, video, monkeypatch):
    """A session that keeps every frame elsewhere: its own footprint stays flat, the census grows."""
    frames, gt = video
    kept = []
    advance = VideoSegmenter._advance
    monkeypatch.setattr(
        VideoSegmenter, "_advance", lambda self, image: (kept.append(image.clone()), advance(self, image))
    )
    seg = VideoSegmenter(model, memory="fifo")
    seg.add_prompt(frames[0], obj_id=1, mask=gt[1][0])
    footprint = {}
    census = {}
    for t in range(1, 41):
        seg.step(frames[t % len(frames)])
        if t in (30, 40):
            footprint[t], census[t] = seg.memory_footprint(), live_tensors()
    assert footprint[30] == footprint[40]
    assert census[40][1] - census[30][1] >= 10 * frames[0].nbytes


def test_efp_attends_at_most_five_memories(model, video):
    frames, gt = video
    seg, _ = run(model, frames, gt, memory="efp")
    sel = seg.policy.select(seg.objects[1].bank, seg.frame_idx + 1)
    assert len(sel.spatial) == 5
    fifo = VideoSegmenter(model, memory="fifo").policy.select(seg.objects[1].bank, seg.frame_idx + 1)
    assert len(fifo.spatial) == 7


def test_add_object_mid_stream_and_remove(model, video):
    frames, gt = video
    seg = VideoSegmenter(model, memory="efp")
    seg.add_prompt(frames[0], obj_id=1, mask=gt[1][0])
    for t in range(1, 6):
        assert seg.step(frames[t]).obj_ids == [1]
    r = seg.add_prompt(frames[6], obj_id=7, points=[[140, 60]], labels=[1])
    assert r.obj_ids == [1, 7] and r.frame_idx == 6
    r = seg.add_prompt(None, obj_id=7, points=[[20, 20]], labels=[0])  # refine: clicks accumulate
    assert seg.objects[7].output.clicks.points.shape[1] == 2
    r = seg.step(frames[7])
    assert r.obj_ids == [1, 7] and seg.objects[7].bank.cond.keys() == {6}
    seg.remove_object(1)
    assert seg.step(frames[8]).obj_ids == [7]
    seg.reset()
    assert seg.obj_ids == [] and seg.frame_idx == -1


def test_correction_click_on_tracked_frame_is_not_a_new_start(model, video):
    frames, gt = video
    seg, _ = run(model, frames[:5], gt, objs=(1,))
    seg.add_prompt(None, obj_id=1, points=[[60, 70]], labels=[1])
    assert not seg.objects[1].output.is_cond
    seg.step(frames[5])
    assert set(seg.objects[1].bank.cond) == {0} and 4 in seg.objects[1].bank.recent


def test_box_prompt(model, video):
    frames, _ = video
    seg = VideoSegmenter(model)
    r = seg.add_prompt(frames[0], obj_id=3, box=[100, 20, 150, 60])
    assert r.obj_ids == [3]
    assert seg.objects[3].output.clicks.labels.tolist() == [[2, 3]]


def test_step_without_objects_is_cheap_and_valid(model, video):
    frames, gt = video
    seg = VideoSegmenter(model)
    r = seg.step(frames[0])
    assert r.obj_ids == [] and r.masks.shape == (0, 120, 160)
    r = seg.add_prompt(None, obj_id=1, mask=gt[1][0])
    assert r.frame_idx == 0 and r.obj_ids == [1]


BAD_PROMPTS = [
    (dict(points=[[500, 10]], labels=[1]), "outside"),
    (dict(points=[[-1, 10]], labels=[1]), "outside"),
    (dict(points=[[10, 10]], labels=[1, 0]), "labels"),
    (dict(points=[[10, 10]], labels=[5]), "labels must be"),
    (dict(points=[[10, 10]]), "need labels"),
    (dict(box=[50, 50, 40, 60]), "x1 > x0"),
    (dict(box=[0, 0, 400, 50]), "outside"),
    (dict(box=[1, 2, 3]), "box is"),
    (dict(mask=np.zeros((120, 160), bool)), "empty mask"),
    (dict(mask=np.ones((60, 80), bool)), "size"),
    (dict(mask=np.full((120, 160), 7, np.uint8)), "binary"),
    (dict(), "needs points"),
]


@pytest.mark.parametrize("kwargs,msg", BAD_PROMPTS)
def test_bad_prompts_raise_and_session_stays_usable(model, video, kwargs, msg):
    frames, gt = video
    seg = VideoSegmenter(model)
    seg.add_prompt(frames[0], obj_id=1, mask=gt[1][0])
    seg.step(frames[1])
    before = seg.memory_footprint()
    with pytest.raises(ValueError, match=msg):
        seg.add_prompt(frames[2], obj_id=2, **kwargs)
    assert seg.frame_idx == 1 and seg.obj_ids == [1] and seg.memory_footprint() == before
    r = seg.step(frames[2])
    assert r.frame_idx == 2 and r.obj_ids == [1]


@pytest.mark.parametrize(
    "frame,msg",
    [
        (np.zeros((60, 80, 3), np.uint8), "size"),
        (np.zeros((120, 160, 3), np.float32), "uint8"),
        (np.zeros((120, 160), np.uint8), "H x W x 3"),
        (np.zeros((120, 160, 4), np.uint8), "H x W x 3"),
        ("frame.png", "uint8 array"),
    ],
)
def test_bad_frames_mid_stream(model, video, frame, msg):
    frames, gt = video
    seg = VideoSegmenter(model)
    seg.add_prompt(frames[0], obj_id=1, mask=gt[1][0])
    with pytest.raises((ValueError, TypeError), match=msg):
        seg.step(frame)
    assert seg.step(frames[1]).frame_idx == 1


def test_unknown_ids_and_misuse(model, video):
    frames, gt = video
    seg = VideoSegmenter(model)
    with pytest.raises(ValueError, match="current frame"):
        seg.add_prompt(None, obj_id=1, mask=gt[1][0])
    seg.add_prompt(frames[0], obj_id=1, mask=gt[1][0])
    with pytest.raises(KeyError, match="unknown object id 9"):
        seg.remove_object(9)
    with pytest.raises(TypeError):
        seg.add_prompt(None, obj_id="one", mask=gt[1][0])
    with pytest.raises(ValueError, match="not both"):
        seg.add_prompt(None, obj_id=1, mask=gt[1][0], points=[[1, 1]], labels=[1])
    with pytest.raises(ValueError, match="precision must be"):
        VideoSegmenter(model, precision="fp8")
    with pytest.raises(KeyError):
        seg.step(frames[1]).mask(5)


def test_bf16_fast_path_agrees_with_fp32(model, video):
    frames, gt = video
    ref = VideoSegmenter(model)
    fast = VideoSegmenter(model, precision="bf16")
    ref.add_prompt(frames[0], obj_id=1, mask=gt[1][0])
    fast.add_prompt(frames[0], obj_id=1, mask=gt[1][0])
    ious = []
    for f in frames[1:12]:
        a, b = ref.step(f).masks[0], fast.step(f).masks[0]
        u = (a | b).sum()
        ious.append(1.0 if u == 0 else (a & b).sum() / u)
    assert np.mean(ious) >= 0.9, ious


def test_dlm_long_term_bank_fills_and_changes_the_masks(video):
    """With a confident IoU head (a trained SAM 2.1 predicts IoU > 0.95 on easy frames) dlm's
    pool fills, long-term memories enter the bank, and from the first frame that attends one
    older than the short window, dlm's masks differ from fifo's; before, they are identical."""
    from surgsam.modeling import build_model

    torch.manual_seed(0)
    m = build_model("nano")
    with torch.no_grad():
        m.sam_mask_decoder.pred_obj_score_head.layers[-1].bias.fill_(4.0)
        m.sam_mask_decoder.iou_prediction_head.layers[-1].bias.fill_(6.0)
    frames, gt = video
    stream = [frames[t % len(frames)] for t in range(40)]
    outs, segs = {}, {}
    for memory in ("fifo", "dlm"):
        seg = VideoSegmenter(m, memory=memory)
        outs[memory] = [seg.add_prompt(stream[0], obj_id=1, mask=gt[1][0])] + [seg.step(f) for f in stream[1:]]
        segs[memory] = seg
    assert min(r.ious[0] for r in outs["dlm"][1:]) > 0.95  # every tracked frame is a candidate
    bank = segs["dlm"].objects[1].bank
    assert len(segs["dlm"].policy.state(bank).long_term) == 3  # 39 tracked frames -> 7 pool rounds, FIFO of 3
    # the first long-term memory is chosen when frame 5's memory completes the pool (frames 1..5);
    # frame t attends it once it is older than the 6-frame window: t >= first + 7
    pol = segs["dlm"].policy
    probe = VideoSegmenter(m, memory="dlm")
    probe.add_prompt(stream[0], obj_id=1, mask=gt[1][0])
    first_attended = None
    for t in range(1, 40):
        sel = pol.select(probe.objects[1].bank, t)
        if first_attended is None and any(slot == 0 and e.frame_idx > 0 for slot, e in sel.spatial):
            first_attended = t
        probe.step(stream[t])
    assert first_attended is not None and first_attended <= 15
    for t in range(first_attended):
        torch.testing.assert_close(outs["dlm"][t].low_res_logits, outs["fifo"][t].low_res_logits, atol=0, rtol=0)
    diff = max(
        (outs["dlm"][t].low_res_logits - outs["fifo"][t].low_res_logits).abs().max().item()
        for t in range(first_attended, 40)
    )
    assert diff > 1e-4, f"dlm's long-term memories did not change the output (max |diff| {diff:.2e})"


# ---------------------------------------------------------------------- inference shortcuts
def _four_objects(model, frames, masks, plain: bool):
    """Objects 1 and 2 from masks on frame 0, object 3 from a mask on frame 2 (its pointer
    distances differ from theirs), object 4 from a click on frame 4; every step inside
    ``plain_inference()`` when ``plain``."""
    seg = VideoSegmenter(model, memory="fifo")
    out = []
    with plain_inference() if plain else contextlib.nullcontext():
        for t, f in enumerate(frames):
            if t == 0:
                seg.add_prompt(f, obj_id=1, mask=masks[0])
                out.append(seg.add_prompt(None, obj_id=2, mask=masks[1]))
            elif t == 2:
                out.append(seg.add_prompt(f, obj_id=3, mask=masks[2]))
            elif t == 4:
                ys, xs = np.nonzero(masks[3])
                out.append(seg.add_prompt(f, obj_id=4, points=[[xs.mean(), ys.mean()]], labels=[1]))
            else:
                out.append(seg.step(f))
    return seg, out


@pytest.mark.parametrize("size", [None, (120, 160)], ids=["model-size frames", "120x160 frames"])
def test_inference_shortcuts_give_the_plain_results(model, size):
    """The inference shortcuts (cached position encodings and empty prompts, one frame's rows
    computed once for all its objects, in-place arithmetic, frame logits reused from the
    decoder) leave every logit, mask, score and stored memory of a 4-object clip bit-identical
    to the plain computation."""
    frames, masks = synthetic_clip(14, model.image_size, 4)
    if size is not None:
        frames = [np.ascontiguousarray(np.asarray(Image.fromarray(f).resize(size[::-1]))) for f in frames]
        masks = [np.asarray(Image.fromarray(m).resize(size[::-1])) for m in masks]
    seg, fast = _four_objects(model, frames, masks, plain=False)
    ref, plain = _four_objects(model, frames, masks, plain=True)
    for a, b in zip(plain, fast):
        assert a.obj_ids == b.obj_ids
        assert torch.equal(a.low_res_logits, b.low_res_logits), f"frame {a.frame_idx}: logits differ"
        assert np.array_equal(a.masks, b.masks) and np.array_equal(a.object_scores, b.object_scores)
        assert np.array_equal(a.ious, b.ious)
    assert fast[-1].obj_ids == [1, 2, 3, 4]
    for oid in fast[-1].obj_ids:
        for ea, eb in zip(ref.objects[oid].bank.entries(), seg.objects[oid].bank.entries()):
            assert ea.frame_idx == eb.frame_idx and torch.equal(ea.obj_ptr, eb.obj_ptr)
            assert (ea.features is None) == (eb.features is None)
            assert ea.features is None or torch.equal(ea.features, eb.features)


def test_memory_tokens_of_a_group_are_those_of_each_object(model, video):
    """A batch's memory tokens and positions, assembled at once, equal each object's
    SAM2Model.memory_tokens concatenated, for objects whose slots and pointer distances differ."""
    frames, gt = video
    seg = VideoSegmenter(model, memory="fifo")
    seg.add_prompt(frames[0], obj_id=1, mask=gt[1][0])
    for t in range(1, 20):  # by frame 20 both attend 7 memories and 16 pointers
        seg.add_prompt(frames[t], obj_id=2, mask=gt[2][t]) if t == 3 else seg.step(frames[t])
    sels = [seg.policy.select(seg.objects[k].bank, seg.frame_idx + 1) for k in (1, 2)]
    assert sels[0].signature() == sels[1].signature()
    assert [d for d, _ in sels[0].pointers] != [d for d, _ in sels[1].pointers]
    with torch.inference_mode():
        tok, pos = seg._memory_tokens(sels, 15)
        ref = [
            model.memory_tokens(
                [(slot, SpatialMemory(e.spatial_features, seg.memory_pos)) for slot, e in sel.spatial],
                [(d, e.obj_ptr) for d, e in sel.pointers],
                15,
                1,
            )
            for sel in sels
        ]
    assert torch.equal(tok, torch.cat([t for t, _ in ref])) and torch.equal(pos, torch.cat([p for _, p in ref]))
