"""PromptBook: clicks, two-click and typed boxes, checks, undo, engine prompts, drawing."""

from __future__ import annotations

import numpy as np
import pytest

from surgsam.app.prompts import PromptBook, PromptError


def test_clicks_and_boxes_become_engine_prompts():
    book = PromptBook((100, 200), num_frames=5)
    book.add_click(1, 2, 10, 20)
    book.add_click(1, 2, 30, 40, positive=False)
    book.add_corner(2, 0, 150, 80)
    assert book.corner == (2, 0, 150.0, 80.0)
    book.add_corner(2, 0, 120, 30)  # the opposite corner, in any order
    book.set_box_text(3, 4, "1, 2, 50, 60")
    prompts = book.prompts()
    assert [(p.obj_id, p.frame_idx) for p in prompts] == [(2, 0), (1, 2), (3, 4)]
    assert prompts[0].box == (120.0, 30.0, 150.0, 80.0) and prompts[0].points is None
    assert prompts[1].points.tolist() == [[10, 20], [30, 40]] and prompts[1].labels.tolist() == [1, 0]
    assert prompts[2].box == (1.0, 2.0, 50.0, 60.0)
    assert book.rows() == [
        [1, 2, "10,20,1; 30,40,0", "", ""],
        [2, 0, "", "120,30,150,80", ""],
        [3, 4, "", "1,2,50,60", ""],
    ]
    assert book.obj_ids == [1, 2, 3] and [p.obj_id for p in book.on_frame(2)] == [1]


@pytest.mark.parametrize(
    "call,match",
    [
        (lambda b: b.add_click(1, 0, 200, 5), "outside the 200x100 frame"),
        (lambda b: b.add_click(1, 0, -1, 5), "outside"),
        (lambda b: b.add_click(0, 0, 5, 5), "object id must be 1..255"),
        (lambda b: b.add_click(256, 0, 5, 5), "object id must be 1..255"),
        (lambda b: b.add_click(1, 5, 5, 5), "frame 5 is outside the video"),
        (lambda b: b.set_box(1, 0, (50, 10, 20, 30)), "empty: need x1 > x0"),
        (lambda b: b.set_box(1, 0, (0, 0, 201, 30)), "outside"),
        (lambda b: b.set_box_text(1, 0, "1,2,3"), "groups of 4"),
        (lambda b: b.set_box_text(1, 0, "a,b,c,d"), "cannot parse"),
        (lambda b: (b.add_corner(1, 0, 5, 5), b.add_corner(1, 0, 5, 40)), "must differ"),
    ],
)
def test_bad_prompts_are_refused_and_change_nothing(call, match):
    book = PromptBook((100, 200), num_frames=5)
    with pytest.raises(PromptError, match=match):
        call(book)
    assert book.prompts() == []


def test_undo_and_clear():
    book = PromptBook((100, 200), num_frames=3)
    book.add_click(1, 0, 10, 10)
    book.add_click(1, 0, 20, 20)
    book.set_box(2, 1, (0, 0, 50, 50))
    book.undo()
    assert [p.obj_id for p in book.prompts()] == [1]
    book.undo()
    assert book.prompts()[0].points.tolist() == [[10, 10]]
    book.add_corner(1, 0, 5, 5)
    assert "corner removed" in book.undo() and book.corner is None
    book.clear(1)
    assert book.prompts() == []
    book.undo()  # clearing is undone too
    assert book.prompts()[0].points.tolist() == [[10, 10]]
    book.clear()
    assert book.prompts() == [] and book.undo() == "nothing to undo"


def test_draw_marks_clicks_and_boxes_only_on_their_frame():
    frame = np.full((100, 200, 3), 90, np.uint8)
    book = PromptBook((100, 200), num_frames=2)
    book.add_click(1, 0, 50, 50)
    book.add_click(1, 0, 150, 50, positive=False)
    book.set_box(2, 0, (10, 10, 190, 90))
    img = book.draw(frame, 0)
    assert img.shape == frame.shape and frame[0, 0, 0] == 90  # a copy
    assert img[50, 50, 1] > 200 and img[50, 50, 0] < 100  # green: positive
    assert img[50, 150, 0] > 200 and img[50, 150, 1] < 100  # red: negative
    assert (img[10, 100] != 90).any() and (img[30, 100] == 90).all()  # box outline only
    assert np.array_equal(book.draw(frame, 1), frame)
