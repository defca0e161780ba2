"""ReferringSegmenter: one encoder pass per frame, CIFS hand-over to memory tracking with the
sentence token, searching status, mid-stream add/remove, bounded memory, bad input.

Detection scores of the random-weight tiny model are replaced by scheduled ones (``Script``
wraps ``model.detect``) so that the frame CIFS picks is known in advance.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

pytest.importorskip("transformers")

from memory_census import live_tensors  # noqa: E402
from surgsam.memory import DLMPolicy  # noqa: E402
from surgsam.modeling import SAM2Model, get_preset  # noqa: E402
from surgsam.modeling.sam2 import NO_OBJ_SCORE, SpatialMemory  # noqa: E402
from surgsam.referring import (  # noqa: E402
    CIFSConfig,
    CLIPTextEncoder,
    ReferringSAM2,
    ReferringSegmenter,
    get_referring_preset,
)

PASS, FAIL = 4.0, -4.0  # object-score logits: sigmoid 0.982 > 0.9, 0.018
H, W, SIDE = 72, 96, 32  # frame size; low-res mask side of the 128 px model
TEXTS = {1: "the grasper is retracting tissue", 2: "the bipolar forceps on the left", 3: "a needle driver"}


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return ReferringSAM2(SAM2Model(get_preset("nano", 128)), get_referring_preset("tiny")).eval()


@pytest.fixture(scope="module")
def encoder():
    return CLIPTextEncoder.tiny()


def clip(n: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (H, W, 3), dtype=np.uint8) for _ in range(n)]


def rect(oid: int, t: int) -> torch.Tensor:
    """A known low-res detection mask (logits) per object and frame."""
    m = torch.full((SIDE, SIDE), -8.0)
    x = 2 + (3 * oid + t) % 12
    m[4 + oid : 20 + oid, x : x + 10] = 8.0
    return m


def upsampled(low: torch.Tensor) -> np.ndarray:
    return (F.interpolate(low.view(1, 1, SIDE, SIDE), (H, W), mode="bilinear", align_corners=False)[0, 0] > 0).numpy()


class Script:
    """Wraps ``model.detect``: each object's score/IoU on frame t come from ``schedule(oid, t)``
    (default: not present) and its mask is ``rect(oid, t)``; records every call."""

    def __init__(self, monkeypatch, model, encoder, schedule, texts=TEXTS):
        with torch.no_grad():
            self.ref = {k: model.project_text(encoder.encode([t])).pooled[0, 0] for k, t in texts.items()}
        self.schedule, self.seg = schedule, None
        self.calls: list[tuple[int, list[int], int]] = []  # (frame, object ids in the batch, previous frames)
        self.ptrs: dict[tuple[int, int], torch.Tensor] = {}
        real = model.detect

        def fake(frame, previous, prompt, multimask_output=None):
            det = real(frame, previous, prompt, multimask_output)
            t = self.seg.frame_idx
            ids = [self.identify(prompt.pooled[r, 0]) for r in range(len(prompt))]
            self.calls.append((t, ids, len(previous)))
            for r, oid in enumerate(ids):
                logit, iou = self.schedule(oid, t) or (FAIL, 0.0)
                det.masks.object_score_logits[r, 0] = logit
                det.masks.ious[r] = iou
                det.masks.low_res_masks[r, 0] = rect(oid, t)
                self.ptrs[oid, t] = det.masks.obj_ptr[r : r + 1].clone()
            return det

        monkeypatch.setattr(model, "detect", fake)

    def identify(self, pooled: torch.Tensor) -> int:
        return min(self.ref, key=lambda k: float((self.ref[k] - pooled).norm()))

    def attach(self, seg: ReferringSegmenter) -> ReferringSegmenter:
        self.seg = seg
        return seg


def features(model, frame):
    with torch.no_grad():
        return model.sam.encode_image(
            model.sam.preprocess(torch.from_numpy(frame).permute(2, 0, 1)[None], resize="pil")
        )


# ------------------------------------------------------------------ one encoder pass, batching
def test_image_encoder_runs_once_per_frame_for_all_expressions(model, encoder, monkeypatch):
    script = Script(monkeypatch, model, encoder, lambda k, t: (PASS, 0.9) if k == 1 and t < 5 else None)
    seg = script.attach(ReferringSegmenter(model, encoder))
    seg.add_texts(TEXTS)
    calls = []
    hook = model.sam.image_encoder.register_forward_hook(lambda *a: calls.append(1))
    try:
        out = [seg.step(f) for f in clip(9)]
    finally:
        hook.remove()
    assert len(calls) == 9  # tracking (object 1 from frame 5) and detection share one pass per frame
    # one batched detection per frame, object 1 leaves the batch once found on frame 4
    batches = [(t, ids) for t, ids, _ in script.calls]
    assert batches == [(t, [1, 2, 3]) for t in range(5)] + [(t, [2, 3]) for t in range(5, 9)]
    assert [n for _, _, n in script.calls] == [0, 1, 2, 2, 2, 2, 2, 2, 2]  # the previous two frames' features
    assert seg.status(1).tracking_from == 5 and list(seg.tracker.objects) == [1]
    assert all(r.obj_ids == [1, 2, 3] for r in out)


# ------------------------------------------------------------------ CIFS hand-over
def test_cifs_hand_over_to_memory_tracking_with_the_sentence_token(model, encoder, monkeypatch):
    ious = {1: 0.8, 2: 0.95, 3: 0.75, 4: 0.9, 5: 0.85}  # frames 1..5 credible: frame 2 has the best IoU
    script = Script(monkeypatch, model, encoder, lambda k, t: (PASS, ious[t]) if k == 1 and t in ious else None)
    seg = script.attach(ReferringSegmenter(model, encoder, search_output="none"))
    assert isinstance(seg.tracker.policy, DLMPolicy)  # ReSurgSAM2's long-term memory by default
    seg.add_text(1, TEXTS[1])
    seg.add_text(2, TEXTS[2])  # never credible
    frames = clip(9)
    out = [seg.step(f) for f in frames]

    s = seg.status(1)
    assert (s.stage, s.credible_frame, s.found_frame, s.tracking_from, s.frames_searched) == ("tracking", 2, 5, 6, 6)
    assert max(t for t, ids, _ in script.calls if 1 in ids) == 5  # no detection once handed over
    for t in range(5):  # searching, search_output "none": nothing shown
        r = out[t]
        assert r.searching == [1, 2] and not r.masks[0].any() and r.object_scores[0] == 0 and r.ious[0] == 0
        assert bool((r.low_res_logits[0] == NO_OBJ_SCORE).all())
    # hand-over frame: that frame's own credible detection
    assert out[5].searching == [2]
    np.testing.assert_array_equal(out[5].mask(1), upsampled(rect(1, 5)))
    assert out[5].object_scores[0] == pytest.approx(1 / (1 + math.exp(-PASS))) and out[5].ious[0] == pytest.approx(0.85)

    # the conditioning memory is frame 2's detection, memory-encoded on frame 2's features from
    # sigmoid(logits), as ReSurgSAM2's released evaluation does (not the binarised mask)
    bank = seg.tracker.objects[1].bank
    assert list(bank.cond) == [2] and sorted(bank.recent) == [6, 7, 8]
    f2 = features(model, frames[2])
    with torch.no_grad():
        high = F.interpolate(rect(1, 2).view(1, 1, SIDE, SIDE), (128, 128), mode="bilinear", align_corners=False)
        mem = model.sam.encode_memory(f2.features, high, torch.tensor([[PASS]]), binarize=False)
        binary = model.sam.encode_memory(f2.features, high, torch.tensor([[PASS]]), binarize=True)
    torch.testing.assert_close(bank.cond[2].features.float(), mem.features.to(torch.bfloat16).float())
    assert (binary.features - mem.features).abs().max() > 1e-2  # the two encodings differ
    torch.testing.assert_close(bank.cond[2].obj_ptr, script.ptrs[1, 2])

    # frame 6 is tracked from that memory (slot 0, pointer 4 frames back) with the sentence token
    with torch.no_grad():
        sentence = model.tracking_prompt(model.project_text(encoder.encode([TEXTS[1]])))
        torch.testing.assert_close(seg.tracker.objects[1].extra_prompt, sentence, atol=1e-5, rtol=0)
        f6 = features(model, frames[6])
        pix = model.sam.condition_on_memory(
            f6, [(0, SpatialMemory(bank.cond[2].features, mem.pos))], [(4, script.ptrs[1, 2])], ptr_tpos_max=15
        )
        want = model.sam.predict_masks(pix, f6.high_res, multimask_output=True, extra_sparse=sentence)
        plain = model.sam.predict_masks(pix, f6.high_res, multimask_output=True)
    torch.testing.assert_close(out[6].low_res_logits[:1], want.low_res_masks, atol=1e-4, rtol=0)
    assert (plain.low_res_masks - want.low_res_masks).abs().max() > 1e-3  # the token matters
    # later frames attend to the recent memories too (frame 8: cond + frames 6, 7)
    sel = seg.tracker.policy.select(bank, 9)
    assert [e.frame_idx for _, e in sel.spatial] == [2, 6, 7, 8]
    # object 2 was never credible: empty masks throughout, reported as searching
    assert all(2 in r.searching and not r.mask(2).any() for r in out)
    assert seg.status(2).stage == "searching" and seg.status(2).tracking_from is None
    assert seg.searching == [2]


@pytest.mark.parametrize("enabled", [False, True])
def test_cifs_off_takes_the_first_frame_passing_both_thresholds(model, encoder, monkeypatch, enabled):
    sched = {1: (PASS, 0.6), 2: (PASS, 0.8), 4: (PASS, 0.9)}  # frame 1 fails the IoU, frames 0, 3 the score
    script = Script(monkeypatch, model, encoder, lambda k, t: sched.get(t))
    seg = script.attach(ReferringSegmenter(model, encoder, cifs=CIFSConfig(enabled=enabled)))
    seg.add_text(1, TEXTS[1])
    out = [seg.step(f) for f in clip(7)]
    s = seg.status(1)
    if enabled:  # never 5 consecutive credible frames
        assert s.stage == "searching" and s.found_frame is None and all(r.searching == [1] for r in out)
    else:
        assert (s.credible_frame, s.found_frame, s.tracking_from) == (2, 2, 3)
        assert [r.searching for r in out[:3]] == [[1], [1], []]
        np.testing.assert_array_equal(out[2].mask(1), upsampled(rect(1, 2)))
        assert list(seg.tracker.objects[1].bank.cond) == [2] and 3 in seg.tracker.objects[1].bank.recent


@pytest.mark.parametrize("mode", ["detection", "credible", "none"])
def test_search_output_shows_detections_while_searching(model, encoder, monkeypatch, mode):
    """Object 1: absent on frame 0, present but not credible (IoU 0.5) on 1, credible on 2; object 2
    never present. What each searching frame emits depends on ``search_output``."""
    sched = {(1, 1): (1.0, 0.5), (1, 2): (PASS, 0.9), (1, 3): (PASS, 0.9)}
    script = Script(monkeypatch, model, encoder, lambda k, t: sched.get((k, t)))
    seg = script.attach(ReferringSegmenter(model, encoder, search_output=mode))
    assert ReferringSegmenter(model, encoder).search_output == "detection"  # the default, as ReSurgSAM2
    seg.add_texts({1: TEXTS[1], 2: TEXTS[2]})
    out = [seg.step(f) for f in clip(4)]
    shows = {"detection": {1, 2, 3}, "credible": {2, 3}, "none": set()}[mode]
    for t, r in enumerate(out):
        assert r.searching == [1, 2]  # still searching: CIFS needs 5 credible frames
        assert not r.masks[1].any() and r.object_scores[1] == 0  # object 2: the decoder says absent
        if t in shows:
            np.testing.assert_array_equal(r.mask(1), upsampled(rect(1, t)))
            logit, iou = sched[1, t]
            assert r.object_scores[0] == pytest.approx(1 / (1 + math.exp(-logit))) and r.ious[0] == pytest.approx(iou)
            torch.testing.assert_close(r.low_res_logits[0, 0], rect(1, t))
        else:
            assert not r.masks[0].any() and r.object_scores[0] == 0 and r.ious[0] == 0
    assert (seg.status(1).frames_shown, seg.status(2).frames_shown) == (len(shows), 0)
    with pytest.raises(ValueError, match="unknown search_output"):
        ReferringSegmenter(model, encoder, search_output="all")


def test_tracked_and_detected_objects_batch_like_separate_sessions(model, encoder):
    """Real detections (thresholds 0): a padded detection batch and batched tracking with
    extra prompts give each object what it gets alone."""
    cfg = CIFSConfig(enabled=False, object_score_threshold=0.0, iou_threshold=0.0)
    frames = clip(5, seed=3)

    def run(ids):
        seg = ReferringSegmenter(model, encoder, cifs=cfg)
        seg.add_texts({k: TEXTS[k] for k in ids})
        return [seg.step(f) for f in frames]

    both, one, two = run([1, 2]), run([1]), run([2])
    for rb, r1, r2 in zip(both, one, two):
        assert rb.searching == [] and rb.obj_ids == [1, 2]
        torch.testing.assert_close(rb.low_res_logits[0], r1.low_res_logits[0], atol=1e-6, rtol=0)
        torch.testing.assert_close(rb.low_res_logits[1], r2.low_res_logits[0], atol=1e-6, rtol=0)
        # the texts differ, and so do the objects (random weights: the text's effect is small)
        assert (rb.low_res_logits[0] - rb.low_res_logits[1]).abs().max() > 2e-5


# ------------------------------------------------------------------ mid-stream changes
def test_add_and_remove_expressions_mid_stream(model, encoder, monkeypatch):
    texts = {**TEXTS, 4: "the suction instrument", 5: "the clip applier"}
    script = Script(monkeypatch, model, encoder, lambda k, t: (PASS, 0.9) if k in (1, 3) else None, texts)
    seg = script.attach(ReferringSegmenter(model, encoder, cifs=CIFSConfig(enabled=False)))
    frames = clip(10, seed=1)
    seg.add_text(1, texts[1])
    for f in frames[:3]:
        seg.step(f)
    seg.add_text(2, texts[2])
    assert seg.status(2).added_frame == 3
    r = seg.step(frames[3])
    assert r.obj_ids == [1, 2] and r.searching == [2]
    assert script.calls[-1] == (3, [2], 2)  # object 2 alone, with the stream's previous two frames
    seg.remove_object(1)
    assert 1 not in seg.tracker.objects and seg.obj_ids == [2]
    with pytest.raises(KeyError, match="unknown object id 1"):
        seg.remove_object(1)
    encodes = []
    real_encode = encoder.encode
    monkeypatch.setattr(encoder, "encode", lambda t: encodes.append(list(t)) or real_encode(t))
    seg.add_texts({3: texts[3], 4: texts[4]})  # several at once: one encoder call
    assert encodes == [[texts[3], texts[4]]]
    r = seg.step(frames[4])
    assert r.obj_ids == [2, 3, 4] and r.searching == [2, 4] and seg.status(3).found_frame == 4
    seg.step(frames[5])
    assert list(seg.tracker.objects) == [3]
    seg.add_text(3, texts[5])  # a new expression for a tracked id: it searches afresh, keeps its place
    assert 3 not in seg.tracker.objects and seg.status(3).text == texts[5] and seg.status(3).stage == "searching"
    r = seg.step(frames[6])
    assert r.obj_ids == [2, 3, 4] and r.searching == [2, 3, 4] and not r.masks.any()
    for k in (2, 3, 4):
        seg.remove_object(k)
    r = seg.step(frames[7])
    assert r.obj_ids == [] and r.masks.shape == (0, H, W) and seg.memory_footprint() >= 0
    seg.reset()
    assert seg.frame_idx == -1 and seg.obj_ids == []


def test_memory_footprint_stays_flat_over_a_long_stream(model, encoder, monkeypatch):
    # 1: found on frame 4 then tracked; 2: credible 4 frames out of 5, so CIFS keeps cycling candidates
    script = Script(
        monkeypatch, model, encoder, lambda k, t: (PASS, 0.9) if k == 1 or (k == 2 and t % 5 != 4) else None
    )
    seg = script.attach(ReferringSegmenter(model, encoder))
    seg.add_texts({1: TEXTS[1], 2: TEXTS[2]})
    fp, census = [], {}
    for t, f in enumerate(clip(60, seed=2)):
        seg.step(f)
        script.ptrs.clear()  # the script's own record of every pointer: the test's memory, not the segmenter's
        fp.append(seg.memory_footprint())
        if t in (25, 30, 55):  # the same CIFS phase
            census[t] = live_tensors()  # counted outside the segmenter: every live tensor of the process
    assert seg.status(1).stage == "tracking" and seg.status(2).stage == "searching"
    assert census[25] == census[30] == census[55], census  # no growth, whoever holds the tensors
    assert max(fp[40:]) == max(fp[20:40])  # its own account agrees: no per-frame growth once the windows are full
    assert fp[25] == fp[30] == fp[55]
    assert max(fp[20:]) > min(fp[20:])  # (the footprint does see the candidates come and go)


# ------------------------------------------------------------------ bad input
class _Narrow:
    name, dim, max_length = "narrow", 16, 8

    def encode(self, texts):  # pragma: no cover - never called
        raise AssertionError


def test_bad_input_raises_clearly_and_leaves_the_session_usable(model, encoder, monkeypatch):
    with pytest.raises(ValueError, match="unknown text encoder 'no-such-encoder'"):
        ReferringSegmenter(model, "no-such-encoder")
    with pytest.raises(ValueError, match="16-wide features but this model's token projection expects 32"):
        ReferringSegmenter(model, _Narrow())
    with pytest.raises(TypeError, match="ReferringSAM2"):
        ReferringSegmenter(model.sam, encoder)
    script = Script(monkeypatch, model, encoder, lambda k, t: None)
    seg = script.attach(ReferringSegmenter(model, encoder))
    with pytest.raises(ValueError, match="empty"):
        seg.add_text(1, "   ")
    with pytest.raises(ValueError, match="at most 77 tokens"):
        seg.add_text(1, "the grasper " * 10)
    with pytest.raises(ValueError, match="empty"):
        seg.add_texts({1: "fine", 2: ""})  # all or nothing
    with pytest.raises(TypeError, match="obj_id must be an int"):
        seg.add_text("1", "the grasper")
    with pytest.raises(ValueError, match="non-empty"):
        seg.add_texts({})
    assert seg.obj_ids == []
    with pytest.raises(KeyError, match="unknown object id 7"):
        seg.remove_object(7)
    seg.add_text(1, TEXTS[1])
    frames = clip(3)
    seg.step(frames[0])
    seg.step(frames[1])
    bad = [np.zeros((H + 1, W, 3), np.uint8), frames[2].astype(np.float32), frames[2][..., 0], "frame"]
    for b in bad:
        with pytest.raises((ValueError, TypeError)):
            seg.step(b)
    assert seg.frame_idx == 1
    r = seg.step(frames[2])
    assert r.frame_idx == 2 and r.searching == [1] and script.calls[-1] == (2, [1], 2)


def test_engine_seed_object_checks_its_input(model, encoder):
    seg = ReferringSegmenter(model, encoder)
    seg.add_text(1, TEXTS[1])
    seg.step(clip(1)[0])
    tr, c = seg.tracker, model.sam.hidden_dim
    ok = dict(
        features=torch.zeros(1, c, 8, 8),
        mask_logits=torch.zeros(1, 1, SIDE, SIDE),
        object_score_logit=torch.zeros(1, 1),
        obj_ptr=torch.zeros(1, c),
        iou=0.9,
    )
    with pytest.raises(ValueError, match="not a frame seen so far"):
        tr.seed_object(5, 1, **ok)
    with pytest.raises(ValueError, match="mask_logits must have shape"):
        tr.seed_object(5, 0, **dict(ok, mask_logits=torch.zeros(1, 1, 8, 8)))
    with pytest.raises(ValueError, match="extra_prompt must be"):
        tr.seed_object(5, 0, **ok, extra_prompt=torch.zeros(1, c))
    tr.seed_object(5, 0, **ok)
    with pytest.raises(ValueError, match="already exists"):
        tr.seed_object(5, 0, **ok)
    assert tr.objects[5].is_tracking and tr.objects[5].output is None


def test_handover_memory_binary_encodes_the_thresholded_detection(model, encoder, monkeypatch):
    ious = {1: 0.8, 2: 0.95, 3: 0.75, 4: 0.9, 5: 0.85}
    script = Script(monkeypatch, model, encoder, lambda k, t: (PASS, ious[t]) if k == 1 and t in ious else None)
    seg = script.attach(ReferringSegmenter(model, encoder, search_output="none", handover_memory="binary"))
    seg.add_text(1, TEXTS[1])
    frames = clip(7)
    for f in frames:
        seg.step(f)
    with torch.no_grad():
        high = F.interpolate(rect(1, 2).view(1, 1, SIDE, SIDE), (128, 128), mode="bilinear", align_corners=False)
        binary = model.sam.encode_memory(
            features(model, frames[2]).features, high, torch.tensor([[PASS]]), binarize=True
        )
    got = seg.tracker.objects[1].bank.cond[2].features.float()
    torch.testing.assert_close(got, binary.features.to(torch.bfloat16).float())
    with pytest.raises(ValueError, match="handover_memory"):
        ReferringSegmenter(model, encoder, handover_memory="soft")
