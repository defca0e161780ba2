"""SAM 2's offline conventions against Meta's SAM2VideoPredictor (same random weights, same input
pixels): propagation forward and in reverse from a prompt on a middle frame, and the click
semantics of ``add_new_points_or_box(clear_old_points=...)``.

sam2.1_hiera_tiny at a 128 px input keeps these tests cheap; the path is the one the JPEG-folder
parity tests check at 512 and 1024.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from oracle import build_reference, needs_oracle
from surgsam.engine import Prompt, VideoSegmenter, segment_video
from surgsam.modeling import build_model
from synthetic import moving_objects_video

pytestmark = [needs_oracle, pytest.mark.oracle]

NAME, SIZE, N, MID = "sam2.1_hiera_tiny", 128, 10, 5
CLICK = np.array([[87.0, 60.0]], np.float32)  # on object 2 (the grey bar) at the middle frame


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    """(Meta's predictor, our model, frames N x H x W x 3, gt masks, JPEG folder, preprocessed input)."""
    tmp = tmp_path_factory.mktemp("directions")
    ref = build_reference(NAME, SIZE, video=True)
    with torch.no_grad():  # random weights: bias the object-score head towards "present"
        ref.sam_mask_decoder.pred_obj_score_head.layers[-1].bias.fill_(4.0)
    torch.save({"model": ref.state_dict()}, tmp / "w.pt")
    model = build_model(NAME, image_size=SIZE, checkpoint=tmp / "w.pt")
    frames, gt = moving_objects_video(n=N, h=90, w=120)
    folder = tmp / "frames"
    folder.mkdir()
    for i, f in enumerate(frames):
        Image.fromarray(f).save(folder / f"{i:05d}.jpg")
    with torch.inference_mode():
        images = torch.cat([model.preprocess(torch.from_numpy(f).permute(2, 0, 1)[None], resize="pil") for f in frames])
    return ref, model, frames, gt, folder, images


def _state(ref, folder, images):
    state = ref.init_state(video_path=str(folder))
    state["images"] = images  # the same input pixels on both sides
    state["cached_features"] = {}
    return state


def _collect(out: dict, stream) -> None:
    for t, ids, m in stream:
        out.setdefault(t, (list(ids), m[:, 0].clone()))  # Meta repeats the start frame in reverse


def _compare(ours: list, ref_out: dict, frames: list[int]) -> tuple[float, float]:
    """Worst IoU and worst |logit| difference over ``frames``; objects must agree."""
    by_t = {r.frame_idx: r for r in ours}
    assert sorted(by_t) == sorted(frames) and len(ours) == len(frames)
    worst_iou, worst_logit = 1.0, 0.0
    for t in frames:
        ids, logits = ref_out[t]
        assert by_t[t].obj_ids == ids, f"frame {t}: objects {by_t[t].obj_ids} vs {ids}"
        ol = by_t[t].logits()
        for k in range(len(ids)):
            a, b = ol[k] > 0, logits[k] > 0
            union = (a | b).sum().item()
            worst_iou = min(worst_iou, 1.0 if union == 0 else (a & b).sum().item() / union)
            worst_logit = max(worst_logit, (ol[k] - logits[k]).abs().max().item())
    return worst_iou, worst_logit


def test_both_ways_from_a_middle_frame_matches_meta_forward_then_reverse(pair):
    """Prompts on frame 5 of 10; Meta propagates forward from it, then in reverse on the same
    state (its reverse pass reads the forward pass's memories of frames 6..9). Ours with
    ``direction="both"`` gives the same masks on every frame; our ``"reverse"`` pass alone with
    ``max_frames=3`` equals Meta's reverse pass on a fresh state, and differs from the combined
    one (so the forward memory the combined pass reuses is really exercised)."""
    ref, model, frames, gt, folder, images = pair
    prompts = [Prompt(1, MID, mask=gt[1][MID]), Prompt(2, MID, points=CLICK, labels=[1])]
    with torch.inference_mode():
        state = _state(ref, folder, images)
        ref.add_new_mask(state, MID, 1, gt[1][MID])
        ref.add_new_points_or_box(state, MID, 2, points=CLICK, labels=np.array([1], np.int32))
        both: dict = {}
        _collect(both, ref.propagate_in_video(state))  # forward from the first prompted frame
        _collect(both, ref.propagate_in_video(state, reverse=True))
        ref.reset_state(state)
        ref.add_new_mask(state, MID, 1, gt[1][MID])
        ref.add_new_points_or_box(state, MID, 2, points=CLICK, labels=np.array([1], np.int32))
        alone: dict = {}
        _collect(alone, ref.propagate_in_video(state, start_frame_idx=MID, max_frame_num_to_track=3, reverse=True))
    assert sorted(both) == list(range(N)) and sorted(alone) == [2, 3, 4, 5]

    ours = list(segment_video(frames, prompts, model, memory="fifo", direction="both"))
    assert [r.frame_idx for r in ours] == [5, 6, 7, 8, 9, 4, 3, 2, 1, 0]  # forward pass, then reverse
    worst_iou, worst_logit = _compare(ours, both, list(range(N)))
    print(f"\nboth ways: worst IoU {worst_iou:.6f}, worst |logit diff| {worst_logit:.2e}")
    assert worst_iou >= 0.999 and worst_logit <= 1e-3
    nontrivial = sum(bool(((r.masks.sum((1, 2)) > 0) & (~r.masks).any((1, 2))).all()) for r in ours)
    assert nontrivial >= N - 1, "masks mostly empty or full: the comparison would be vacuous"

    rev = list(segment_video(frames, prompts, model, memory="fifo", direction="reverse", start_frame=MID, max_frames=3))
    assert [r.frame_idx for r in rev] == [5, 4, 3, 2]
    worst_iou, worst_logit = _compare(rev, alone, [5, 4, 3, 2])
    print(f"reverse alone: worst IoU {worst_iou:.6f}, worst |logit diff| {worst_logit:.2e}")
    assert worst_iou >= 0.999 and worst_logit <= 1e-3
    _, apart = _compare(rev[1:], both, [4, 3, 2])
    assert apart > 1e-2, "the forward pass's memory made no difference to the reverse pass"


def test_click_modes_match_meta_clear_old_points(pair):
    """Two click sets for one object on frame 0, then two tracked frames: ``clicks="replace"``
    is Meta's ``clear_old_points=True`` (its default), ``"accumulate"`` is ``False``, both
    in the session and in ``segment_video``; the two modes give different masks."""
    ref, model, frames, gt, folder, images = pair
    first, second = np.array([[95.0, 60.0]], np.float32), np.array([[25.0, 35.0], [60.0, 20.0]], np.float32)
    results = {}
    for mode, clear in (("replace", True), ("accumulate", False)):
        with torch.inference_mode():
            state = _state(ref, folder, images)
            ref.add_new_points_or_box(state, 0, 1, points=first, labels=np.array([1], np.int32))
            ref.add_new_points_or_box(
                state, 0, 1, points=second, labels=np.array([1, 0], np.int32), clear_old_points=clear
            )
            meta: dict = {}
            _collect(meta, ref.propagate_in_video(state, max_frame_num_to_track=2))
        seg = VideoSegmenter(model, memory="fifo", num_frames=N, clicks=mode)
        seg.add_prompt(frames[0], obj_id=1, points=first, labels=[1])
        ours = [seg.add_prompt(None, obj_id=1, points=second, labels=[1, 0])]
        ours += [seg.step(frames[t]) for t in (1, 2)]
        worst_iou, worst_logit = _compare(ours, meta, [0, 1, 2])
        print(f"\nclicks={mode}: worst IoU {worst_iou:.6f}, worst |logit diff| {worst_logit:.2e}")
        assert worst_iou >= 0.999 and worst_logit <= 1e-3
        prompts = [Prompt(1, 0, points=first, labels=[1]), Prompt(1, 0, points=second, labels=[1, 0])]
        offline = list(segment_video(frames, prompts, model, memory="fifo", clicks=mode, max_frames=2))
        assert [r.frame_idx for r in offline] == [0, 1, 2]
        assert all(torch.equal(a.low_res_logits, b.low_res_logits) for a, b in zip(offline, ours))
        results[mode] = ours[0].masks[0]
    assert (results["replace"] != results["accumulate"]).sum() > 20


def test_both_ways_carries_an_object_first_prompted_later(pair):
    """Object 1 from its mask on frame 3, object 2 from a click on frame 6 of 10. ``"both"``
    tracks each object forward from its own prompt and backwards from the frame before it (it
    used to track object 2 forward from frame 6 only: frames 0..5 had no object 2). Meta's
    predictor given each object alone (``add_new_*``, then ``propagate_in_video`` forward and in
    reverse from its prompt frame) is the oracle: same masks on every frame and object."""
    ref, model, frames, gt, folder, images = pair
    starts = {1: 3, 2: 6}
    meta: dict[int, dict] = {}
    with torch.inference_mode():
        for oid, t0 in starts.items():
            state = _state(ref, folder, images)
            if oid == 1:
                ref.add_new_mask(state, t0, 1, gt[1][t0])
            else:
                ref.add_new_points_or_box(state, t0, 2, points=CLICK, labels=np.array([1], np.int32))
            meta[oid] = {}
            _collect(meta[oid], ref.propagate_in_video(state))
            _collect(meta[oid], ref.propagate_in_video(state, reverse=True))
            assert sorted(meta[oid]) == list(range(N))
    merged = {t: ([1, 2], torch.cat([meta[1][t][1], meta[2][t][1]])) for t in range(N)}

    prompts = [Prompt(1, 3, mask=gt[1][3]), Prompt(2, 6, points=CLICK, labels=[1])]
    ours = list(segment_video(frames, prompts, model, memory="fifo", direction="both"))
    # forward from frame 6 (frames 3..5 wait for object 2's reverse pass), then in reverse
    assert [r.frame_idx for r in ours] == [6, 7, 8, 9, 5, 4, 3, 2, 1, 0]
    worst_iou, worst_logit = _compare(ours, merged, list(range(N)))
    print(f"\nan object prompted later, both ways: worst IoU {worst_iou:.6f}, worst |logit diff| {worst_logit:.2e}")
    assert worst_iou >= 0.999 and worst_logit <= 1e-3
    nontrivial = sum(bool(((r.masks.sum((1, 2)) > 0) & (~r.masks).any((1, 2))).all()) for r in ours)
    assert nontrivial >= N - 1, "masks mostly empty or full: the comparison would be vacuous"
