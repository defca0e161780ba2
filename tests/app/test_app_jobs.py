"""The app's jobs without a browser: masks zip, overlay video, stats, preview, model choice."""

from __future__ import annotations

import zipfile

import numpy as np
import pytest
import torch
from PIL import Image

from app_helpers import find_click
from surgsam.app.jobs import DEMO_MODEL, JobError, ModelCache, ModelChoice, SegmentationJob, preview
from surgsam.app.prompts import PromptBook
from surgsam.app.video import check_video
from surgsam.engine import segment_video
from surgsam.io import davis_palette
from surgsam.io.labels import label_map_from_result

BOX_2 = (170.0, 60.0, 300.0, 200.0)  # object 2 starts on frame 3


@pytest.fixture(scope="module")
def meta(clip_mp4):
    return check_video(clip_mp4, 500)


@pytest.fixture(scope="module")
def click(model, decoded):
    return find_click(model, decoded[0])


@pytest.fixture(scope="module")
def book(meta, click):
    b = PromptBook(meta.size, meta.num_frames)
    b.add_click(1, 0, *click)
    b.set_box(2, 3, BOX_2)
    return b


@pytest.fixture(scope="module")
def engine_results(clip_mp4, book, model):
    """What the engine itself gives for the same prompts."""
    return list(segment_video(clip_mp4, book.prompts(), model, memory="efp"))


@pytest.fixture(scope="module")
def engine_labels(engine_results):
    return [label_map_from_result(r) for r in engine_results]  # overlaps: highest logit, as the app writes


@pytest.fixture(scope="module")
def result(meta, book, model, tmp_path_factory):
    job = SegmentationJob(meta, book, model, tmp_path_factory.mktemp("run"), memory="efp")
    done = []
    res = job.run(progress=lambda i, n: done.append((i, n)))
    assert done[-1] == (10, 10) and len(done) == 10
    return res


def test_masks_zip_holds_the_engines_masks(result, engine_labels, click):
    with zipfile.ZipFile(result.masks_zip) as z:
        names = z.namelist()
        assert names == [f"masks/{i:05d}.png" for i in range(10)]
        for i, name in enumerate(names):
            with z.open(name) as f, Image.open(f) as im:
                assert im.mode == "P"
                assert np.array_equal(np.asarray(im.getpalette()[:12]).reshape(4, 3), davis_palette(4))
                ids = np.asarray(im)
            assert np.array_equal(ids, engine_labels[i]), f"frame {i}"
    x, y = click
    assert engine_labels[0][y, x] == 1  # the clicked object is there, where clicked
    assert all(2 not in lab for lab in engine_labels[:3])  # object 2 starts on frame 3
    assert result.obj_ids == [1, 2] and result.frames == 10


def test_overlay_video_shows_the_masks(result, engine_results, engine_labels, decoded):
    import av

    from surgsam.io import draw_overlay

    with av.open(str(result.overlay)) as c:
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    assert len(frames) == 10 and frames[0].shape == (256, 320, 3)
    for t in (0, 5):
        expected = draw_overlay(decoded[t], engine_results[t].obj_ids, engine_results[t].masks)
        wrong = draw_overlay(decoded[t], [1], (engine_labels[t] == 0)[None])  # the complement

        def err(a: np.ndarray) -> float:
            """Mean difference of 8 x 8 block means (the codec blurs fine detail), below the
            text band (it holds the measured latency)."""
            d = frames[t][40:].astype(float) - a[40:].astype(float)
            return float(np.abs(d.reshape(27, 8, 40, 8, 3).mean((1, 3))).mean())

        assert err(expected) < 0.2 * min(err(decoded[t]), err(wrong)), (err(expected), err(decoded[t]), err(wrong))
        assert np.abs(frames[t][:20, :100].astype(int) - decoded[t][:20, :100]).mean() > 20  # the text


def test_stats_and_summary(result):
    assert [s.frame_idx for s in result.stats] == list(range(10))
    assert all(s.engine_ms > 0 and s.total_ms >= s.engine_ms for s in result.stats)
    assert result.stats[3].objects == 2 and result.stats[0].objects == 1
    text = result.summary()
    assert "**10 frames**" in text and "FPS" in text and "`efp`" in text
    assert result.rows()[0]["frame"] == 0 and result.rows()[0]["FPS"] > 0


def test_preview_is_what_the_run_starts_from(model, decoded, book, engine_labels):
    res = preview(model, decoded[0], book.on_frame(0))
    assert res.obj_ids == [1]
    assert np.array_equal(res.masks[0], engine_labels[0] == 1)
    assert preview(model, decoded[0], []) is None


def test_max_frames_stops_early_with_the_same_masks(meta, book, model, tmp_path, engine_labels):
    res = SegmentationJob(meta, book, model, tmp_path, memory="efp", max_frames=4).run()
    assert res.frames == 4 and "(of 10)" in res.summary()
    pngs = sorted(res.masks_dir.glob("*.png"))
    assert len(pngs) == 4
    assert np.array_equal(np.asarray(Image.open(pngs[3])), engine_labels[3])


def test_stopping_the_iteration_leaves_no_result(meta, book, model, tmp_path):
    job = SegmentationJob(meta, book, model, tmp_path)
    it = job.frames()
    next(it)
    next(it)
    assert any(p.name.endswith(".part.mp4") for p in tmp_path.iterdir())  # encoding under a temporary name
    it.close()  # Stop, or a client that went away
    assert job.result is None
    assert list(tmp_path.iterdir()) == []  # no truncated overlay, no zip, no partial masks


def test_a_failing_run_keeps_an_earlier_result(meta, book, model, tmp_path, monkeypatch):
    first = SegmentationJob(meta, book, model, tmp_path, max_frames=4).run()
    before = {p.name: p.read_bytes() for p in (first.masks_zip, first.overlay)}
    job = SegmentationJob(meta, book, model, tmp_path, max_frames=6)
    it = job.frames()
    for _ in range(5):
        next(it)
    it.close()
    assert {p.name: p.read_bytes() for p in (first.masks_zip, first.overlay)} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["masks", "masks.zip", "overlay.mp4"]
    assert all(oct(p.stat().st_mode & 0o777) == "0o600" for p in (first.masks_zip,))  # private=True


def test_bad_runs_are_refused(meta, book, model, tmp_path):
    empty = PromptBook(meta.size, meta.num_frames)
    with pytest.raises(JobError, match="no prompt yet"):
        SegmentationJob(meta, empty, model, tmp_path)
    with pytest.raises(JobError, match=r"frame\(s\) \[3\] lie beyond the 2 frames"):
        SegmentationJob(meta, book, model, tmp_path, max_frames=2)
    with pytest.raises(JobError, match="memory policy"):
        SegmentationJob(meta, book, model, tmp_path, memory="lru")


def test_model_choice(tmp_path, model):
    cache = ModelCache()
    demo = cache.get(ModelChoice())
    assert cache.get(ModelChoice()) is demo
    assert all(torch.equal(a, b) for a, b in zip(demo.state_dict().values(), model.state_dict().values()))
    nano = cache.get(ModelChoice("nano", image_size=128))
    assert nano.image_size == 128
    by_name = cache.get(ModelChoice("nano", checkpoint="surgsam-nano-synth"))  # the embedded model by name
    assert all(torch.equal(a, b) for a, b in zip(by_name.state_dict().values(), model.state_dict().values()))
    assert "surgsam-nano-synth" in ModelChoice().label()
    for choice, match in [
        (ModelChoice("sam9_huge"), "cannot build the model"),
        (ModelChoice("nano", checkpoint=str(tmp_path / "absent.pt")), "checkpoint not found"),
        (ModelChoice("nano", image_size=100), "multiple of 32"),
        (ModelChoice(DEMO_MODEL, image_size=128), "fixed input size"),
    ]:
        with pytest.raises(JobError, match=match):
            cache.get(choice)
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(JobError, match="cannot build the model"):
        cache.get(ModelChoice("nano", checkpoint=str(bad)))
