"""Credible initial frame selection on hand-built score sequences (SPEC section 3)."""

from __future__ import annotations

import math

import pytest

from surgsam.referring.cifs import CIFS, CIFSConfig

PASS = 4.0  # sigmoid = 0.982 > 0.9
FAIL = 0.0  # sigmoid = 0.5


def run(cifs: CIFS, frames: list[tuple[float, float]], start: int = 0) -> list[int | None]:
    """Feed (object-score logit, IoU) per frame; returns the selection after each frame."""
    out = []
    for i, (logit, iou) in enumerate(frames):
        sel = cifs.update(start + i, logit, iou, payload=f"mask{start + i}")
        out.append(None if sel is None else sel.frame_idx)
        if sel is not None:
            break
    return out


def test_five_consecutive_credible_frames_pick_the_best_iou():
    c = CIFS()
    seq = [(FAIL, 0.9), (PASS, 0.80), (PASS, 0.95), (PASS, 0.75), (PASS, 0.90), (PASS, 0.85)]
    got = run(c, seq)
    assert got == [None, None, None, None, None, 2]  # chosen when frames 1..5 are all credible
    assert c.selected.frame_idx == 2 and c.selected.payload == "mask2" and c.done
    assert math.isclose(c.selected.iou, 0.95)
    with pytest.raises(RuntimeError, match="already chose frame 2"):
        c.update(6, PASS, 0.9)


def test_failed_object_score_drops_the_oldest_candidate():
    c = CIFS()
    run(c, [(PASS, 0.8)] * 4)
    assert c.state()["candidates"] == [3, 2, 1, 0]
    c.update(4, FAIL, 0.99)  # object score fails: frame 0 (oldest) leaves, nothing is added
    assert c.state()["candidates"] == [3, 2, 1]
    c.update(5, FAIL, 0.99)
    assert c.state()["candidates"] == [3, 2]


def test_non_consecutive_candidates_wait_for_a_full_consecutive_window():
    c = CIFS()
    ious = {0: 0.99, 1: 0.8, 2: 0.8, 3: 0.8}
    seq = [(PASS, ious[i]) for i in range(4)] + [(FAIL, 0.9)] + [(PASS, 0.71 + 0.01 * i) for i in range(5)]
    got = run(c, seq)
    # after the failure the list is [3, 2, 1]; frames 5.. refill it but 5 -> 3 is a gap until
    # 1, 2, 3 have been pushed out: [9, 8, 7, 6, 5] is the first consecutive full window
    assert got == [None] * 9 + [9]
    assert c.selected.frame_idx == 9  # highest IoU among 5..9 (0.75); frame 0's 0.99 fell out


def test_iou_failure_adds_nothing_and_breaks_consecutiveness():
    c = CIFS()
    seq = [(PASS, 0.9)] * 3 + [(PASS, 0.5)] + [(PASS, 0.9)] * 2
    assert run(c, seq) == [None] * 6
    assert c.state()["candidates"] == [5, 4, 2, 1, 0]  # full but 4 -> 2 is not consecutive
    assert c.update(6, PASS, 0.9) is None  # [6, 5, 4, 2, 1]
    assert c.update(7, PASS, 0.9) is None  # [7, 6, 5, 4, 2]
    assert c.update(8, PASS, 0.9).frame_idx == 8  # [8..4]: all 0.9, the newest wins ties


def test_cifs_off_takes_the_first_frame_passing_both_thresholds():
    c = CIFS(CIFSConfig(enabled=False))
    seq = [(FAIL, 0.99), (PASS, 0.6), (PASS, 0.71), (PASS, 0.99)]
    assert run(c, seq) == [None, None, 2]
    assert c.selected.frame_idx == 2


def test_never_credible_returns_none():
    c = CIFS()
    seq = [(PASS, 0.5), (FAIL, 0.9), (-3.0, 0.99), (PASS, 0.69)] * 5
    assert run(c, seq) == [None] * 20
    assert c.selected is None and not c.done


def test_thresholds_are_strict_and_on_sigmoid():
    exact = math.log(0.9 / 0.1)  # sigmoid(exact) == 0.9 (up to rounding)
    c = CIFS(CIFSConfig(enabled=False))
    assert c.update(0, exact - 1e-9, 0.99) is None
    assert c.update(1, 3.0, 0.7) is None  # IoU must exceed 0.7
    assert c.update(2, exact + 1e-6, 0.7001).frame_idx == 2


def test_custom_window_and_reset():
    c = CIFS(CIFSConfig(window=2))
    assert run(c, [(PASS, 0.8), (PASS, 0.9)]) == [None, 1]
    c.reset()
    assert c.selected is None and c.state() == {"candidates": [], "selected": None}
    assert run(c, [(PASS, 0.8)], start=10) == [None]


def test_frames_must_increase_and_config_is_checked():
    c = CIFS()
    c.update(3, PASS, 0.9)
    with pytest.raises(ValueError, match="increasing"):
        c.update(3, PASS, 0.9)
    with pytest.raises(ValueError, match="window"):
        CIFSConfig(window=0)
