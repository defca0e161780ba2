"""draw_overlay and the video writers (OverlayVideoWriter, VideoWriter, write_video)."""

from __future__ import annotations

import numpy as np
import pytest

from io_helpers import HEIGHT, NUM_FRAMES, WIDTH, make_frames, square_mask
from surgsam.io import draw_overlay, overlay_color


def _scene() -> tuple[np.ndarray, np.ndarray]:
    frame = np.full((60, 80, 3), 100, dtype=np.uint8)
    masks = np.zeros((2, 60, 80), dtype=bool)
    masks[0, 10:30, 10:30] = True
    masks[1, 35:55, 45:75] = True
    return frame, masks


def test_fill_contour_and_untouched_background():
    frame, masks = _scene()
    before = frame.copy()
    out = draw_overlay(frame, [1, 2], masks, show_ids=False, alpha=0.5, contour_width=2)
    np.testing.assert_array_equal(frame, before)  # input not modified
    assert out.shape == frame.shape and out.dtype == np.uint8
    c1 = np.array(overlay_color(1))
    assert out[20, 20].tolist() == ((100 + c1) / 2 + 0.5).astype(int).tolist()  # 50% blend
    assert out[10, 20].tolist() == c1.tolist() and out[11, 20].tolist() == c1.tolist()  # contour
    assert out[12, 20].tolist() != c1.tolist()  # contour is 2 px wide
    assert out[45, 60].tolist() != [100, 100, 100]
    outside = ~masks.any(axis=0)
    assert (out[outside] == 100).all()


def test_mask_touching_the_border_has_no_contour_there():
    frame = np.zeros((20, 20, 3), dtype=np.uint8)
    mask = np.zeros((1, 20, 20), dtype=bool)
    mask[0, :, :10] = True
    out = draw_overlay(frame, [3], mask, alpha=0.0, contour_width=1, show_ids=False)
    colour = list(overlay_color(3))
    assert out[5, 9].tolist() == colour  # inner edge
    assert out[0, 5].tolist() == [0, 0, 0] and out[5, 0].tolist() == [0, 0, 0]  # frame edges


def test_labels_and_text_are_drawn():
    frame, masks = _scene()
    plain = draw_overlay(frame, [1, 2], masks, show_ids=False)
    labelled = draw_overlay(frame, [1, 2], masks, show_ids=True)
    assert (labelled != plain)[15:25, 15:25].any()  # id box near the centroid of object 1
    texted = draw_overlay(frame, text=["12.3 FPS", "efp"])
    assert (texted[:10, :20] != 100).any() and (texted[-5:, -5:] == 100).all()
    np.testing.assert_array_equal(draw_overlay(frame, [], None), frame)


def test_overlay_input_validation():
    frame, masks = _scene()
    with pytest.raises(ValueError, match="boolean"):
        draw_overlay(frame, [1, 2], masks.astype(np.float32))
    with pytest.raises(ValueError, match="frame is"):
        draw_overlay(frame, [1, 2], masks[:, :50])
    with pytest.raises(ValueError, match="uint8 RGB"):
        draw_overlay(frame.astype(np.float32), [1, 2], masks)


def test_overlay_accepts_tensors():
    torch = pytest.importorskip("torch")
    frame, masks = _scene()
    out = draw_overlay(torch.from_numpy(frame), torch.tensor([1, 2]), torch.from_numpy(masks))
    np.testing.assert_array_equal(out, draw_overlay(frame, [1, 2], masks))


# -- video writers ---------------------------------------------------------------------------
def test_overlay_video_writer_round_trip(tmp_path):
    pytest.importorskip("av")
    from surgsam.io import OverlayVideoWriter, VideoFileSource

    frames = make_frames()
    path = tmp_path / "overlay.mp4"
    with OverlayVideoWriter(path, fps=30) as writer:
        for i, frame in enumerate(frames):
            drawn = writer.write(frame, [1], square_mask(i)[None], text=f"frame {i}")
    assert writer.frames_written == NUM_FRAMES and drawn.shape == frames[0].shape
    src = VideoFileSource(path)
    assert (len(src), src.size, src.info.codec) == (NUM_FRAMES, (HEIGHT, WIDTH), "h264")
    decoded = list(src)
    assert len(decoded) == NUM_FRAMES
    assert np.abs(decoded[-1].astype(int) - drawn.astype(int)).mean() < 8.0


def test_odd_sizes_are_padded_to_even(tmp_path):
    pytest.importorskip("av")
    from surgsam.io import OverlayVideoWriter, VideoFileSource

    frames = make_frames(n=5, h=47, w=65)
    with OverlayVideoWriter(tmp_path / "odd.mp4", fps=10) as writer:
        for frame in frames:
            writer.write(frame)
    src = VideoFileSource(tmp_path / "odd.mp4")
    assert src.size == (48, 66) and len(list(src)) == 5
    assert src.fps == pytest.approx(10.0)


def test_video_writer_errors(tmp_path):
    pytest.importorskip("av")
    from surgsam.io import VideoWriter, write_video

    with VideoWriter(tmp_path / "a.mp4") as writer:
        writer.write(np.zeros((8, 8, 3), dtype=np.uint8))
        with pytest.raises(ValueError, match="earlier frames"):
            writer.write(np.zeros((8, 10, 3), dtype=np.uint8))
        with pytest.raises(ValueError, match="uint8 RGB"):
            writer.write(np.zeros((8, 8), dtype=np.uint8))
    with pytest.raises(RuntimeError, match="closed"):
        writer.write(np.zeros((8, 8, 3), dtype=np.uint8))
    with pytest.raises(ValueError, match="no frames"):
        write_video(tmp_path / "empty.mp4", [])
    with pytest.raises(ValueError, match="fps"):
        VideoWriter(tmp_path / "b.mp4", fps=0)
    with pytest.raises(ValueError, match="cannot encode"):
        write_video(tmp_path / "c.mp4", make_frames(2), codec="no-such-codec")


def test_overlay_colours_differ_for_neighbouring_and_decade_ids():
    """EndoVis instruments are 1-10 and tissue 11, 12, 17: 1/11, 2/12 and 7/17 shared a colour."""

    def dist(a, b):
        return float(np.linalg.norm(np.subtract(overlay_color(a), overlay_color(b))))

    for a, b in [(1, 11), (2, 12), (7, 17), (1, 21)] + [(k, k + 1) for k in range(1, 30)]:
        assert dist(a, b) > 100, (a, b, overlay_color(a), overlay_color(b))
    assert len({overlay_color(k) for k in range(1, 256)}) > 200
    for k in range(1, 256):  # never pure red (tissue)
        r, g, b = overlay_color(k)
        assert not (r > 200 and g < 60 and b < 60), (k, (r, g, b))


def test_overlay_legend_lists_each_drawn_object_in_its_colour():
    frame = np.full((120, 200, 3), 40, np.uint8)
    masks = np.zeros((2, 120, 200), bool)
    masks[0, 60:100, 10:50] = True
    masks[1, 60:100, 60:100] = True
    out = draw_overlay(frame, [3, 11], masks, show_ids=False, legend={3: "grasper", 11: "kidney"})
    corner = out[:40, 120:]
    for oid in (3, 11):  # a box in each object's colour at the top-right corner
        assert (corner == np.array(overlay_color(oid), np.uint8)).all(-1).sum() > 30
    plain = draw_overlay(frame, [3, 11], masks, show_ids=False)
    assert (plain[:40, 120:] == 40).all()
