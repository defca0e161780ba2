"""Text-referred objects in the app and in live mode: the prompt book's texts, the referring path of
a run (equal to a direct ReferringSegmenter run), mixed click + text runs, `surgsam live --text`."""

from __future__ import annotations

import json
import zipfile

import numpy as np
import pytest
from PIL import Image

from app_helpers import find_click
from surgsam.app.jobs import JobError, ModelCache, ReferringChoice, SegmentationJob, make_referrer, segment_stream
from surgsam.app.prompts import MAX_TEXT_CHARS, PromptBook, PromptError
from surgsam.app.video import check_video
from surgsam.engine import segment_video
from surgsam.io.labels import label_map_from_result
from surgsam.referring import ReferringSegmenter
from surgsam.referring.cifs import CIFSConfig

pytest.importorskip("transformers")

# thresholds of 0: the untrained network's detections (object score ~0.5, IoU ~0.5) are credible,
# so an expression is found once CIFS has its window of 5 frames (frame 4)
FOUND = CIFSConfig(object_score_threshold=0.0, iou_threshold=0.0)
TEXTS = {1: "the grasper on the left", 3: "the needle driver"}


@pytest.fixture(scope="module")
def meta(clip_mp4):
    return check_video(clip_mp4, 500)


@pytest.fixture(scope="module")
def referring():
    """The untrained network `surgsam refer` runs without --checkpoint."""
    return ModelCache().get(ReferringChoice())


def _direct(referring, frames, texts, cifs=None, memory="efp"):
    """What the referring segmenter itself gives, frame by frame."""
    seg = ReferringSegmenter(referring.model, referring.encoder, memory=memory, cifs=cifs, num_frames=len(frames))
    seg.add_texts(texts)
    return [seg.step(f) for f in frames], seg


def _zip_labels(path) -> list[np.ndarray]:
    with zipfile.ZipFile(path) as z:
        return [np.asarray(Image.open(z.open(n))) for n in z.namelist()]


def test_book_texts_are_checked_undone_and_cleared():
    book = PromptBook((256, 320), 10)
    assert "searched for from the first frame" in book.set_text(2, "  the   grasper ")
    assert book.texts == {2: "the grasper"} and book.obj_ids == [2] and book.prompts() == []
    assert book.rows() == [[2, "all", "", "", "the grasper"]]
    for text, match in [("", "empty"), ("   ", "empty"), ("x" * (MAX_TEXT_CHARS + 1), "at most")]:
        with pytest.raises(PromptError, match=match):
            book.set_text(3, text)
    with pytest.raises(PromptError, match="object id must be 1..255"):
        book.set_text(0, "the grasper")
    with pytest.raises(PromptError, match="described by text"):
        book.add_click(2, 0, 10, 10)
    with pytest.raises(PromptError, match="described by text"):
        book.set_box(2, 0, (1, 1, 20, 20))
    book.add_click(1, 0, 10, 10)
    with pytest.raises(PromptError, match="already has clicks"):
        book.set_text(1, "the hook")
    book.set_text(2, "the hook")
    book.undo()
    assert book.texts == {2: "the grasper"}
    book.clear(2)
    assert book.texts == {} and book.obj_ids == [1]
    book.undo()
    assert book.texts == {2: "the grasper"}
    book.clear()
    assert book.texts == {} and book.obj_ids == []


def test_text_run_equals_a_direct_referring_run(meta, decoded, referring, tmp_path):
    book = PromptBook(meta.size, meta.num_frames)
    for oid, text in TEXTS.items():
        book.set_text(oid, text)
    job = SegmentationJob(meta, book, None, tmp_path, memory="efp", referring=referring)
    res = job.run()
    ref, seg = _direct(referring, decoded, TEXTS)
    got = _zip_labels(res.masks_zip)
    assert len(got) == 10 and res.obj_ids == [1, 3]
    for t in range(10):  # the untrained network never finds them; its detections show, as directly
        assert ref[t].searching == [1, 3]
        assert np.array_equal(got[t], label_map_from_result(ref[t]))  # overlaps: the highest logit wins
    assert [e["tracking_from"] for e in res.expressions] == ["never found"] * 2
    assert [s.found_frame for s in seg.statuses()] == [None, None]
    text = res.summary()
    assert 'object 1 "the grasper on the left": never found in 10 frames' in text
    assert "untrained referring network" in text and "UNTRAINED" in res.model


def test_found_text_masks_equal_the_direct_run(meta, decoded, referring, tmp_path):
    book = PromptBook(meta.size, meta.num_frames)
    book.set_text(2, "the grasper")
    res = SegmentationJob(meta, book, None, tmp_path, memory="dlm", referring=referring, cifs=FOUND).run()
    ref, seg = _direct(referring, decoded, {2: "the grasper"}, FOUND, memory="dlm")
    assert seg.status(2).found_frame == 4
    got = _zip_labels(res.masks_zip)
    for t in range(10):
        assert np.array_equal(got[t], np.where(ref[t].masks[0], 2, 0).astype(np.uint8)), f"frame {t}"
        assert bool(got[t].any()) or t < 4  # non-empty once found (detections, if any, before)
    assert res.expressions == [
        {
            "obj_id": 2,
            "text": "the grasper",
            "tracking_from": 5,
            "credible_frame": seg.status(2).credible_frame,
            "found_frame": 4,
            "detections_shown": seg.status(2).frames_shown,
        }
    ]
    assert 'object 2 "the grasper": found on frame 4' in res.summary()


def test_clicks_and_texts_in_one_run(meta, decoded, referring, model, clip_mp4):
    x, y = find_click(model, decoded[0])
    book = PromptBook(meta.size, meta.num_frames)
    book.add_click(1, 0, x, y)
    book.set_text(2, "the grasper")
    engine = list(segment_video(clip_mp4, book.prompts(), model, memory="efp"))
    ref, _ = _direct(referring, decoded, {2: "the grasper"}, FOUND)
    seg = make_referrer(referring, book.texts, "efp", cifs=FOUND, num_frames=10)
    mixed = list(segment_stream(decoded, book.prompts(), model, "efp", referrer=seg))
    assert len(mixed) == 10
    for t, r in enumerate(mixed):
        assert r.obj_ids == [1, 2] and r.searching == ([2] if t < 4 else [])
        assert np.array_equal(r.mask(1), engine[t].mask(1)) and np.array_equal(r.mask(2), ref[t].mask(2))
        assert r.low_res_logits.shape[0] == 2
    with pytest.raises(JobError, match="both clicks and a text"):
        segment_stream(decoded, book.prompts(), model, referrer=make_referrer(referring, {1: "the hook"}))


def test_bad_expressions_are_refused(meta, referring, tmp_path):
    with pytest.raises(JobError, match="object 2: .*tokens"):
        make_referrer(referring, {1: "the grasper", 2: "word " * 400})
    book = PromptBook(meta.size, meta.num_frames)
    book.set_text(1, "the grasper")
    with pytest.raises(JobError, match="need a referring model"):
        SegmentationJob(meta, book, None, tmp_path)
    with pytest.raises(JobError, match="referring checkpoint not found"):
        ModelCache().get(ReferringChoice(str(tmp_path / "absent.pth")))


def test_live_text_finds_and_reports(clip_mp4, referring):
    from surgsam.app.live import open_live, run_live

    no_cifs = CIFSConfig(enabled=False, object_score_threshold=0.0, iou_threshold=0.0)  # found on its first frame
    seg = make_referrer(referring, {1: "the grasper"}, "efp", cifs=no_cifs)
    report = run_live(open_live(clip_mp4, drop_frames=False, realtime=False), seg, [])
    assert (report.frames_read, report.processed, report.dropped) == (10, 10, 0)
    assert report.expressions == [
        {
            "obj_id": 1,
            "text": "the grasper",
            "tracking_from": 1,
            "credible_frame": 0,
            "found_frame": 0,
            "detections_shown": 0,
        }
    ]


def test_live_headless_text_cli(clip_mp4, tmp_path, capsys):
    pytest.importorskip("cv2")
    from surgsam.cli import main

    rec = tmp_path / "live.mp4"
    rc = main(
        [
            "live",
            "--source",
            str(clip_mp4),
            "--headless",
            "--text",
            "the grasper",
            "--text",
            "the hook",
            "--record",
            str(rec),
            "--untrained",
        ]
    )
    assert rc == 0
    out = capsys.readouterr()
    report = json.loads(out.out.strip().splitlines()[-1])
    assert "WARNING: untrained referring network" in out.err
    assert report["frames_read"] == report["processed"] + report["dropped"] and report["processed"] >= 2
    assert [(e["obj_id"], e["text"], e["tracking_from"]) for e in report["expressions"]] == [
        (1, "the grasper", "never found"),
        (2, "the hook", "never found"),
    ]
    assert rec.is_file()
    with pytest.raises(ValueError, match="not both"):
        main(["live", "--source", str(clip_mp4), "--headless", "--text", "a", "--points", "10,10"])
