"""Up-front bounds and form checks of prompts (issue 17): object ids 1..255, at most
MAX_CLICKS clicks, P x 2 points, integer 0/1 labels, finite boxes, prompts as a list of
Prompt, prompt frames inside a video of known length. Each is refused before any frame is
processed, and the session keeps working."""

from __future__ import annotations

import time

import numpy as np
import pytest

from surgsam.engine import Prompt, VideoSegmenter, segment_video
from surgsam.engine.prompts import MAX_CLICKS, MAX_OBJ_ID, MIN_OBJ_ID, check_clicks, check_obj_id
from synthetic import moving_objects_video


@pytest.fixture(scope="module")
def clip():
    return moving_objects_video(n=4, h=120, w=160)


@pytest.mark.parametrize("oid", [0, -3, 256, 2**40, np.int64(300)])
def test_object_ids_outside_the_palette_refused(model, clip, oid):
    frames, _ = clip
    seg = VideoSegmenter(model, memory="efp")
    with pytest.raises(ValueError, match=r"object ids must be 1\.\.255"):
        seg.add_prompt(frames[0], obj_id=oid, points=[[60, 60]], labels=[1])
    assert seg.frame_idx == -1 and seg.obj_ids == []  # nothing was processed
    res = seg.add_prompt(frames[0], obj_id=MAX_OBJ_ID, points=[[60, 60]], labels=[1])
    assert res.obj_ids == [255]


@pytest.mark.parametrize("oid,err", [(True, TypeError), ("1", TypeError), (1.0, TypeError), (None, TypeError)])
def test_object_id_types(oid, err):
    with pytest.raises(err, match="obj_id must be an int"):
        check_obj_id(oid)
    assert check_obj_id(np.uint8(7)) == 7 and (MIN_OBJ_ID, MAX_OBJ_ID) == (1, 255)


def test_seed_object_checks_the_id(model, clip):
    frames, _ = clip
    seg = VideoSegmenter(model)
    seg.step(frames[0])
    with pytest.raises(ValueError, match=r"1\.\.255"):
        seg.seed_object(0, 0, None, None, None, None, 0.5)  # refused before the tensors are looked at


def test_too_many_clicks_refused_fast(model, clip):
    frames, _ = clip
    seg = VideoSegmenter(model)
    pts = np.random.default_rng(0).uniform(0, 100, (100_000, 2))
    t0 = time.perf_counter()
    with pytest.raises(ValueError, match=f"limit is {MAX_CLICKS}"):
        seg.add_prompt(frames[0], obj_id=1, points=pts, labels=np.ones(len(pts), int))
    assert time.perf_counter() - t0 < 5 and seg.frame_idx == -1
    ok = seg.add_prompt(frames[0], obj_id=1, points=pts[:MAX_CLICKS], labels=np.ones(MAX_CLICKS, int))
    assert ok.obj_ids == [1]


@pytest.mark.parametrize(
    "points,labels,err,match",
    [
        ([[10, 10, 1], [20, 20, 1]], [1, 1], ValueError, r"P x 2 .* shape \(2, 3\)"),
        (np.zeros((4, 3)), [1, 1, 1, 1, 1, 1], ValueError, r"P x 2 .* shape \(4, 3\)"),  # 12 numbers = 6 pairs
        ([[10, 10]], ["1"], TypeError, "labels must be the integers 0 or 1"),
        ([[10, 10]], [0.5], ValueError, "0 \\(negative\\) or 1"),
        ([[10, 10]], [2], ValueError, "0 \\(negative\\) or 1"),
        ([["a", "b"]], [1], TypeError, "coordinates must be numbers"),
        ([[10, 10], [5]], [1, 1], ValueError, "different lengths"),
        ({"x": 1, "y": 2}, [1], TypeError, "P x 2"),
        ([[10, 10]], None, ValueError, "need labels"),
        ([], [], ValueError, "empty"),
    ],
)
def test_malformed_clicks(model, clip, points, labels, err, match):
    frames, _ = clip
    seg = VideoSegmenter(model)
    with pytest.raises(err, match=match):
        seg.add_prompt(frames[0], obj_id=1, points=points, labels=labels)
    assert seg.frame_idx == -1


def test_clicks_accepted_forms():
    pts, lab = check_clicks([10, 20], [1])  # one click as [x, y]
    assert pts.shape == (1, 2) and lab.tolist() == [1]
    pts, lab = check_clicks(np.array([[1, 2], [3, 4]]), np.array([True, False]))
    assert lab.tolist() == [1, 0]
    assert check_clicks([[1, 2]], [1.0])[1].tolist() == [1]


@pytest.mark.parametrize(
    "box,match",
    [
        ((float("nan"), 0, 10, 10), "non-finite"),
        ((0, 0, float("inf"), 5), "non-finite"),
        ("0,0,5,5", "numbers"),
        ((1, 2, 3), "got 3 numbers"),
    ],
)
def test_bad_boxes(model, clip, box, match):
    frames, _ = clip
    seg = VideoSegmenter(model)
    with pytest.raises((ValueError, TypeError), match=match):
        seg.add_prompt(frames[0], obj_id=1, box=box)
    assert seg.frame_idx == -1


def test_segment_video_prompt_list_checked_up_front(model, clip):
    frames, gt = clip
    good = Prompt(1, 0, mask=gt[1][0])
    with pytest.raises(TypeError, match="list of surgsam.Prompt"):
        list(segment_video(frames, {1: good}, model))
    with pytest.raises(TypeError, match="list of surgsam.Prompt"):
        list(segment_video(frames, good, model))
    with pytest.raises(TypeError, match="got a dict"):
        list(segment_video(frames, [{"obj_id": 1, "frame_idx": 0}], model))
    with pytest.raises(ValueError, match=r"1\.\.255"):
        list(segment_video(frames, [good, Prompt(0, 2, points=[[5, 5]], labels=[1])], model))
    with pytest.raises(ValueError, match="P x 2"):
        list(segment_video(frames, [good, Prompt(2, 2, points=[[5, 5, 5]], labels=[1])], model))


def test_prompt_frame_beyond_a_known_length_refused_before_processing(model, clip):
    frames, gt = clip
    seen = []

    def counted():
        for f in frames:
            seen.append(1)
            yield f

    class Source:  # a frame source that knows its length
        num_frames = len(frames)

        def __iter__(self):
            return counted()

        def close(self):
            pass

    with pytest.raises(ValueError, match=r"has 4 frames \(0\.\.3\); prompts on frames \[999\]"):
        next(
            iter(
                segment_video(
                    Source(), [Prompt(1, 0, mask=gt[1][0]), Prompt(2, 999, points=[[5, 5]], labels=[1])], model
                )
            )
        )
    assert seen == []  # refused before the first frame was read
