"""The web app's handlers without a browser: path policy, error messages, a whole session."""

from __future__ import annotations

import types

import numpy as np
import pytest

from app_helpers import find_click

gr = pytest.importorskip("gradio")

from surgsam.app.server import AppConfig, Session, _App, build_app  # noqa: E402


@pytest.mark.parametrize(
    "host,allow,expected",
    [
        ("127.0.0.1", False, False),
        ("localhost", False, False),
        ("0.0.0.0", False, False),
        ("0.0.0.0", True, True),
        ("127.0.0.1", True, True),
    ],
)
def test_typed_paths_only_when_asked_for(host, allow, expected):
    assert AppConfig(host=host).path_input is False  # off by default, also on loopback
    assert AppConfig(host=host, allow_path_input=allow).path_input is expected


def _shown(img) -> np.ndarray:
    """A frame the handlers hand to the page (a JPEG file of the session) as an array."""
    from PIL import Image

    with Image.open(img) as im:
        return np.asarray(im.convert("RGB"))


def _same_frame(img, frame: np.ndarray) -> bool:
    return float(np.abs(_shown(img).astype(int) - frame.astype(int)).mean()) < 2.0  # JPEG, quality 92


def test_server_refuses_typed_paths_by_default(tmp_path, clip_mp4):
    app = _App(AppConfig(workdir=tmp_path), gr)
    out = app.guarded(app.open_path, 9)(str(clip_mp4), None)
    assert "typed paths are turned off" in out[-1] and out[-1].startswith("**Error")
    with pytest.raises(ValueError, match="typed paths are turned off"):
        app.choice("nano", "/etc/hostname", 0)
    assert app.choice("nano", "", 0).checkpoint is None
    with pytest.raises(ValueError, match="typed paths are turned off"):
        app.ref_choice("/etc/hostname", None, 0)
    assert app.ref_choice("", "(default)", 0).checkpoint is None


def test_a_session_from_opening_to_downloads(tmp_path, clip_mp4, model, decoded):
    app = _App(AppConfig(workdir=tmp_path, allow_path_input=True), gr)
    opened = app.guarded(app.open_path, 9)(str(clip_mp4), None)
    frame, slider, rows, *_, s, status = opened
    assert isinstance(s, Session) and status.startswith("opened clip.mp4")
    assert _same_frame(frame, decoded[0]) and slider["maximum"] == 9 and rows == []
    assert frame.startswith(str(s.root))  # the session's own file, removed with it

    m_in = ("demo", "", 0, "efp", True)
    x, y = find_click(model, decoded[0])
    click = app.guarded(app.click, 4)
    img, rows, s, status = click(types.SimpleNamespace(index=[x, y]), 0, "positive click", 1, s, *m_in)
    assert rows == [[1, 0, f"{x},{y},1", "", ""]] and "positive click" in status
    assert not _same_frame(img, decoded[0])  # the preview mask and the click are drawn
    out = click(types.SimpleNamespace(index=[x, y]), 0, "positive click", 300, s, *m_in)
    assert "object id must be 1..255" in out[-1] and out[-2] is s
    out = app.guarded(app.typed_box, 4)("5,5,2,2", 0, 2, s, *m_in)
    assert "need x1 > x0" in out[-1]
    out = app.guarded(app.scrub, 4)(3, s, *m_in)
    assert _same_frame(out[0], decoded[3]) and out[-1] == "frame 3 of 10"  # no prompt there: plain frame
    assert len(list((s.root / "frames").iterdir())) <= 4  # only the last few shown frames are kept

    steps = list(app.run(s, "demo", "", 0, "fifo", 0))
    overlay, files, summary, plot, s2, status = steps[-1]
    assert s2 is s and status.startswith("done: 10 frames") and "**10 frames**" in summary
    assert files == [str(s.root / "run001" / "masks.zip"), overlay] and overlay.endswith("overlay.mp4")
    assert list(plot["frame"]) == list(range(10))
    assert steps[0][-1].startswith("building demo model")

    bad = list(app.run(s, "no_such_preset", "", 0, "efp", 0))
    assert "cannot build the model" in bad[-1][-1]

    # a text object: empty and over-long texts are messages; the run goes through the referring network
    typed = app.guarded(app.typed_text, 4)
    assert "expression is empty" in typed("  ", 0, 2, s, *m_in)[-1]
    assert "at most" in typed("x" * 400, 0, 2, s, *m_in)[-1]
    assert "already has clicks" in typed("the grasper", 0, 1, s, *m_in)[-1]
    img, rows, s, status = typed("the grasper", 0, 2, s, *m_in)
    assert rows[-1] == [2, "all", "", "", "the grasper"] and "object 2: text" in status
    steps = list(app.run(s, "demo", "", 0, "efp", 3, "", "(default)", 0))
    assert any("building the untrained referring model" in st[-1] for st in steps)
    assert any("untrained referring network" in st[-1] for st in steps)  # the warning, before the frames
    overlay, files, summary, plot, _, status = steps[-1]
    assert status.startswith("done: 3 frames, masks of objects [1, 2]") and "never found" in status
    assert 'object 2 "the grasper": never found in 3 frames' in summary and "Warning" in summary
    bad = list(app.run(s, "demo", "", 0, "efp", 3, "/no/such.pth", "(default)", 0))
    assert "referring checkpoint not found" in bad[-1][-1]
    root = s.root
    s.close()
    assert not root.exists()


def test_handlers_need_a_video_first(tmp_path):
    app = _App(AppConfig(workdir=tmp_path), gr)
    out = app.guarded(app.scrub, 4)(0, None, "demo", "", 0, "efp", True)
    assert "open a video first" in out[-1]
    assert "open a video first" in list(app.run(None, "demo", "", 0, "efp", 0))[-1][-1]


def test_build_app_has_the_controls():
    demo = build_app(AppConfig())
    ids = {getattr(b, "elem_id", None) for b in demo.blocks.values()}
    assert {
        "upload",
        "path",
        "slider",
        "frame",
        "mode",
        "obj-id",
        "box-text",
        "obj-text",
        "set-text",
        "model",
        "memory",
        "ref-checkpoint",
        "ref-model",
        "run",
        "overlay",
        "downloads",
        "status",
    } <= ids
