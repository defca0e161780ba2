"""Metric tests: hand-computed cases and agreement with an independent DAVIS boundary measure."""

from __future__ import annotations

import math

import numpy as np
import pytest

from surgsam.eval.metrics import (
    ClassIoU,
    boundary_f,
    boundary_tolerance,
    dice,
    dilate_disk,
    disk,
    endovis_ious,
    frame_scores,
    region_iou,
    seg2bmap,
)


def square(h, w, y0, x0, s):
    m = np.zeros((h, w), bool)
    m[y0 : y0 + s, x0 : x0 + s] = True
    return m


# ---- hand-computed cases -------------------------------------------------------------------
def test_empty_empty_is_perfect():
    z = np.zeros((20, 30), bool)
    assert region_iou(z, z) == 1.0
    assert boundary_f(z, z) == 1.0
    assert dice(z, z) == 1.0
    assert frame_scores(z, z) == (1.0, 1.0, 1.0)


def test_empty_vs_full_frame():
    z, o = np.zeros((20, 30), bool), np.ones((20, 30), bool)
    assert region_iou(z, o) == 0.0
    assert dice(z, o) == 0.0
    # DAVIS convention: the frame border is not a boundary, so a full mask has no boundary
    assert not seg2bmap(o).any()
    assert boundary_f(z, o) == 1.0
    assert boundary_f(o, o) == 1.0 and region_iou(o, o) == 1.0


def test_empty_vs_object():
    z, g = np.zeros((20, 20), bool), square(20, 20, 5, 5, 6)
    assert region_iou(z, g) == 0.0 and dice(z, g) == 0.0
    assert boundary_f(z, g) == 0.0  # no predicted boundary: precision 1, recall 0
    assert boundary_f(g, z) == 0.0


def test_one_pixel_shift_of_a_square():
    g = square(100, 100, 10, 10, 10)
    p = square(100, 100, 10, 11, 10)
    assert region_iou(p, g) == pytest.approx(90 / 110)
    assert dice(p, g) == pytest.approx(180 / 200)
    assert boundary_tolerance(g.shape) == 2  # ceil(0.008 * 141.4)
    assert boundary_f(p, g) == 1.0


def test_boundary_map_of_a_square():
    # a 3x3 square at rows/cols 2..4: the DAVIS boundary is the ring offset half a pixel to the
    # origin: rows/cols 1..4 minus the 2x2 interior 2..3
    b = seg2bmap(square(8, 8, 2, 2, 3))
    expected = np.zeros((8, 8), bool)
    expected[1:5, 1:5] = True
    expected[2:4, 2:4] = False
    assert (b == expected).all()


@pytest.mark.parametrize(
    "shift, f",
    [(0, 1.0), (1, 1.0), (2, 0.5), (3, 0.0)],
)
def test_thin_line_boundaries(shift, f):
    # 20x20 frame: tolerance ceil(0.008 * 28.3) = 1 pixel. A 1-pixel vertical line (rows 5..14)
    # has a 2-pixel-wide boundary (its column and the one to its left, rows 4..14). Shifted by 1
    # the boundaries still match within 1 pixel although the masks do not overlap at all; by 2
    # exactly one of the two boundary columns matches on each side; by 3 none does.
    g = np.zeros((20, 20), bool)
    g[5:15, 5] = True
    p = np.zeros_like(g)
    p[5:15, 5 + shift] = True
    assert boundary_tolerance(g.shape) == 1
    assert int(seg2bmap(g).sum()) == 22
    assert boundary_f(p, g) == pytest.approx(f)
    assert region_iou(p, g) == (1.0 if shift == 0 else 0.0)


def test_tolerance_values():
    assert boundary_tolerance((1024, 1280)) == 14
    assert boundary_tolerance((480, 854)) == 8
    assert boundary_tolerance((512, 512)) == 6
    assert boundary_tolerance((512, 512), bound_th=3) == 3


def test_disk_matches_definition():
    d = disk(3)
    assert d.shape == (7, 7) and d.sum() == 29
    assert d[3, 0] and d[0, 3] and not d[0, 0] and not d[1, 0]


def test_void_pixels_are_ignored():
    g = square(10, 10, 0, 0, 4)
    p = square(10, 10, 0, 0, 5)
    void = np.zeros((10, 10), bool)
    void[4, :] = void[:, 4] = True
    assert region_iou(p, g, void) == 1.0
    assert region_iou(p, g) < 1.0


def test_shape_mismatch_raises():
    with pytest.raises(ValueError):
        region_iou(np.zeros((4, 4)), np.zeros((4, 5)))


# ---- an independent DAVIS boundary measure (brute force) -----------------------------------
def _bmap_bruteforce(m: np.ndarray) -> np.ndarray:
    """Boundary rule written pixel by pixel from the DAVIS definition."""
    h, w = m.shape
    out = np.zeros_like(m, dtype=bool)
    for y in range(h):
        for x in range(w):
            if y == h - 1 and x == w - 1:
                continue
            if y == h - 1:
                out[y, x] = m[y, x] != m[y, x + 1]
            elif x == w - 1:
                out[y, x] = m[y, x] != m[y + 1, x]
            else:
                out[y, x] = m[y, x] != m[y, x + 1] or m[y, x] != m[y + 1, x] or m[y, x] != m[y + 1, x + 1]
    return out


def _f_bruteforce(p: np.ndarray, g: np.ndarray, bound_th: float = 0.008) -> float:
    """Explicit distance computation: a boundary pixel matches if some boundary pixel of the
    other mask lies within the tolerance (Euclidean, closed disk)."""
    r = bound_th if bound_th >= 1 else math.ceil(bound_th * math.sqrt(p.shape[0] ** 2 + p.shape[1] ** 2))
    pb, gb = np.argwhere(_bmap_bruteforce(p)), np.argwhere(_bmap_bruteforce(g))
    if len(pb) == 0 and len(gb) == 0:
        return 1.0
    if len(pb) == 0 or len(gb) == 0:
        return 0.0
    d2 = ((pb[:, None, :] - gb[None, :, :]) ** 2).sum(-1)
    precision = float((d2.min(axis=1) <= r * r).mean())
    recall = float((d2.min(axis=0) <= r * r).mean())
    return 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)


def _random_mask(rng, h, w):
    kind = rng.integers(4)
    yy, xx = np.mgrid[0:h, 0:w]
    if kind == 0:  # blob
        cy, cx, r = rng.uniform(0, h), rng.uniform(0, w), rng.uniform(1, max(h, w) / 2)
        return (yy - cy) ** 2 + ((xx - cx) * rng.uniform(0.5, 2)) ** 2 < r * r
    if kind == 1:  # noise
        return rng.random((h, w)) < rng.uniform(0.05, 0.6)
    if kind == 2:  # thin diagonal structure
        return np.abs((yy - rng.uniform(0, h)) - rng.uniform(-2, 2) * (xx - rng.uniform(0, w))) < rng.uniform(0.5, 2)
    return np.zeros((h, w), bool) if rng.random() < 0.5 else np.ones((h, w), bool)


def test_boundary_map_agrees_with_bruteforce():
    rng = np.random.default_rng(0)
    for _ in range(60):
        h, w = int(rng.integers(1, 14)), int(rng.integers(1, 14))
        m = _random_mask(rng, h, w)
        assert (seg2bmap(m) == _bmap_bruteforce(m)).all()


def test_dilation_agrees_with_bruteforce():
    rng = np.random.default_rng(1)
    for _ in range(40):
        h, w, r = int(rng.integers(1, 25)), int(rng.integers(1, 25)), int(rng.integers(0, 7))
        m = rng.random((h, w)) < 0.05
        pts = np.argwhere(m)
        yy, xx = np.mgrid[0:h, 0:w]
        ref = np.zeros((h, w), bool)
        for y, x in pts:
            ref |= (yy - y) ** 2 + (xx - x) ** 2 <= r * r
        assert (dilate_disk(m, r) == ref).all()


@pytest.mark.parametrize("bound_th", [0.008, 0.05, 1, 3])
def test_boundary_f_agrees_with_independent_implementation(bound_th):
    rng = np.random.default_rng(int(bound_th * 1000))
    for _ in range(40):
        h, w = int(rng.integers(2, 40)), int(rng.integers(2, 40))
        p, g = _random_mask(rng, h, w), _random_mask(rng, h, w)
        if rng.random() < 0.4:  # near-miss predictions: a shifted copy of the ground truth
            p = np.roll(g, (int(rng.integers(-3, 4)), int(rng.integers(-3, 4))), axis=(0, 1))
        assert boundary_f(p, g, bound_th=bound_th) == pytest.approx(_f_bruteforce(p, g, bound_th), abs=1e-12)


def test_boundary_f_full_size_frame():
    # 1280x1024 frame, tolerance 14 px; the brute force runs on a crop around the objects (the
    # boundary and the matching are translation invariant away from the frame border)
    g = np.zeros((1024, 1280), bool)
    g[500:520, 600:640] = True
    p = np.zeros_like(g)
    p[510:530, 615:670] = True
    crop = (slice(470, 560), slice(570, 700))
    assert boundary_f(p, g) == pytest.approx(_f_bruteforce(p[crop], g[crop], 14))
    assert 0 < boundary_f(p, g) < 1


# ---- EndoVis IoU family ----------------------------------------------------------------------
def test_endovis_ious_hand_computed():
    recs = [
        # frame 1: GT classes {1, 2}; class 1 IoU 1/2, class 2 missed, class 3 a false positive
        ClassIoU("v", 1, 1, 5, 10, True),
        ClassIoU("v", 1, 2, 0, 4, True),
        ClassIoU("v", 1, 3, 0, 3, False),
        # frame 2: class 1 perfect
        ClassIoU("v", 2, 1, 7, 7, True),
        # frame 3: no ground truth, a false positive only
        ClassIoU("v", 3, 3, 0, 2, False),
    ]
    r = endovis_ious(recs)
    assert r["challenge_iou"] == pytest.approx(100 * (0.25 + 1.0) / 2)
    assert r["iou"] == pytest.approx(100 * ((0.5 + 0 + 0) / 3 + 1.0 + 0.0) / 3)
    assert r["mc_iou"] == pytest.approx(100 * (0.75 + 0.0 + 0.0) / 3)
    assert r["cum_iou"] == pytest.approx(100 * 12 / 26)
    assert r["n_frames"] == 2


def test_endovis_ious_empty():
    r = endovis_ious([])
    assert all(math.isnan(r[k]) for k in ("challenge_iou", "iou", "mc_iou", "cum_iou"))
