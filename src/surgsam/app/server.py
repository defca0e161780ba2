"""The Gradio UI of ``surgsam app``: open a video, scrub, click objects, run, watch, download.

Every handler catches bad input and reports it in the status line; the work itself lives in
:mod:`.jobs`, :mod:`.video` and :mod:`.prompts`.

What the server exposes (:func:`serve`): it binds 127.0.0.1 unless told otherwise and answers
only requests whose ``Host`` names it (loopback names or the bound address, with its port, or an
``--allowed-host``) and whose ``Origin``, when sent, does too (:mod:`.guard`: DNS rebinding).
Typed paths on the server's machine are off unless ``--allow-paths``. Gradio gets no
``allowed_paths`` and a private cache folder (``0700``, files ``0600``) of its own, removed when
the server stops (Ctrl+C, SIGTERM, SIGHUP); each browser session keeps its files (upload, shown
frames, runs) in one folder inside it, removed when the tab closes. Runs of different sessions
go side by side (``max_runs`` at once), and a run's overlay and zip appear only once complete.
"""

from __future__ import annotations

import atexit
import os
import shutil
import signal
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from .._optional import require_gradio
from ..io.atomic import atomic_path
from ._files import PrivateDir, discard
from .guard import HostGuard, HostPolicy
from .jobs import (
    DEMO_MODEL,
    JobError,
    ModelCache,
    ModelChoice,
    ReferringChoice,
    SegmentationJob,
    memory_policies,
    expression_summary,
    preview,
)
from .prompts import PromptBook, PromptError
from .signals import raise_on_signals
from .video import FrameReader, UploadError, VideoMeta, check_video

__all__ = ["AppConfig", "Session", "build_app", "serve", "serve_forever"]

MODES = ("positive click", "negative click", "box: 2 clicks")
_USER_ERRORS = (UploadError, PromptError, JobError, ValueError, OSError, ImportError, IndexError)


@dataclass
class AppConfig:
    """How the app is served and what it starts with."""

    host: str = "127.0.0.1"
    port: int = 7860
    max_upload_mb: float = 500.0
    allow_path_input: bool = False  # typed paths of this machine (--allow-paths)
    model: str = DEMO_MODEL
    checkpoint: str | None = None
    image_size: int | None = None
    device: str = "cpu"
    memory: str = "efp"
    referring_checkpoint: str | None = None  # for text objects (None: the untrained network)
    workdir: Path | None = None  # parent of the per-session folders (default: a new temp dir)
    allowed_hosts: tuple[str, ...] = ()  # Host names accepted besides loopback and the bound address
    max_runs: int = 4  # segmentation runs at once (of different sessions)

    @property
    def path_input(self) -> bool:
        return bool(self.allow_path_input)


@dataclass
class Session:
    """One browser session: its folder (made on first use), the open video, its prompts and
    its preview cache."""

    root: Path
    meta: VideoMeta | None = None
    reader: FrameReader | None = None
    book: PromptBook | None = None
    runs: int = 0
    previews: dict[tuple, Any] = field(default_factory=dict)
    shown: list[Path] = field(default_factory=list)  # the last frame images handed to the page
    closed: bool = False

    @classmethod
    def create(cls, parent: Path) -> Session:
        return cls(parent / f"session-{uuid.uuid4().hex}")

    def folder(self) -> Path:
        if self.closed:
            raise UploadError("this session has ended: reload the page")
        self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
        return self.root

    def show(self, image: np.ndarray, keep: int = 4) -> str:
        """``image`` as a JPEG file of this session for the page (the last ``keep`` are kept)."""
        from PIL import Image

        folder = self.folder() / "frames"
        folder.mkdir(mode=0o700, exist_ok=True)
        path = folder / f"frame-{uuid.uuid4().hex[:12]}.jpg"
        with atomic_path(path, private=True) as tmp:
            Image.fromarray(np.ascontiguousarray(image)).save(tmp, format="JPEG", quality=92)
        self.shown.append(path)
        while len(self.shown) > keep:
            discard(self.shown.pop(0))
        return str(path)

    def open(self, meta: VideoMeta) -> None:
        self.close_video()
        self.meta, self.reader = meta, FrameReader(meta)
        self.book = PromptBook(meta.size, meta.num_frames)

    def close_video(self) -> None:
        if self.reader is not None:
            self.reader.close()
        self.meta = self.reader = self.book = None
        self.previews.clear()

    def close(self) -> None:
        """End the session: every file it made (upload, frames, runs) is removed."""
        self.closed = True
        self.close_video()
        shutil.rmtree(self.root, ignore_errors=True)


def _close_session(s: Session | None) -> None:
    if isinstance(s, Session):
        s.close()


class _App:
    """The handlers, bound to one config and one model cache (shared by all sessions)."""

    def __init__(self, cfg: AppConfig, gr: Any):
        self.cfg, self.gr = cfg, gr
        self.models = ModelCache()
        self.referring = ModelCache()  # its own slot: a mixed run needs both networks
        self.workdir = cfg.workdir or Path(tempfile.mkdtemp(prefix="surgsam-app-"))
        self.state: Any = None  # the gr.State holding each browser session's Session

    # -- helpers -----------------------------------------------------------------------------
    def session(self, s: Session | None) -> Session:
        return s if isinstance(s, Session) else Session.create(self.workdir)

    @staticmethod
    def need_video(s: Session) -> tuple[VideoMeta, FrameReader, PromptBook]:
        if s.meta is None or s.reader is None or s.book is None:
            raise UploadError("open a video first (upload one, type its path, or use the demo clip)")
        return s.meta, s.reader, s.book

    def choice(self, name: str, checkpoint: str | None, image_size: float | None) -> ModelChoice:
        size = int(image_size) if image_size else None
        ckpt = (checkpoint or "").strip() or None
        if ckpt is not None and not self.cfg.path_input and ckpt != self.cfg.checkpoint:
            raise JobError("typed paths are turned off on this server: start it with --checkpoint")
        return ModelChoice(name or DEMO_MODEL, ckpt, size, self.cfg.device)

    def ref_choice(self, checkpoint: str | None, preset: str | None, image_size: float | None) -> ReferringChoice:
        """The referring network for text objects (the typed-path rules of :meth:`choice`)."""
        size = int(image_size) if image_size else None
        ckpt = (checkpoint or "").strip() or None
        if ckpt is not None and not self.cfg.path_input and ckpt != self.cfg.referring_checkpoint:
            raise JobError("typed paths are turned off on this server: start it with --referring-checkpoint")
        preset = None if not preset or preset == REF_DEFAULT else preset
        return ReferringChoice(ckpt, preset, size, device=self.cfg.device)

    def render(self, s: Session, idx: int, model: ModelChoice | None, memory: str, show_preview: bool) -> np.ndarray:
        """Frame ``idx`` with its prompts drawn, and the masks they give when previewing."""
        _, reader, book = self.need_video(s)
        frame = reader.get(idx)
        on_frame = book.on_frame(idx)
        if show_preview and model is not None and on_frame:
            from ..io import draw_overlay

            key = (idx, memory, model, tuple((p.obj_id, tuple(p.clicks), p.box) for p in on_frame))
            res = s.previews.get(key)
            if res is None:
                res = preview(self.models.get(model), frame, on_frame, memory)
                s.previews.clear()
                s.previews[key] = res
            if res is not None:
                frame = draw_overlay(frame, res.obj_ids, res.masks)
        return book.draw(frame, idx)

    def end_session(self, session_hash: str | None, blocks: Any) -> None:
        """The tab of ``session_hash`` closed: remove its files now (Gradio drops its state later)."""
        holder = getattr(blocks, "state_holder", None)
        if session_hash is None or holder is None or self.state is None or session_hash not in holder:
            return
        data = holder.session_data.get(session_hash)
        value = getattr(data, "state_data", {}).get(self.state._id) if data is not None else None
        _close_session(value)

    def guarded(self, fn: Callable[..., tuple], n_out: int) -> Callable[..., tuple]:
        """Run ``fn``; on a user error keep every output but the status (last) and the state."""
        gr = self.gr

        def wrapper(*args: Any) -> tuple:
            state = next((a for a in args if isinstance(a, Session)), None)
            try:
                return fn(*args)
            except _USER_ERRORS as exc:
                msg = exc.args[0] if isinstance(exc, (KeyError, IndexError)) and exc.args else exc
                return (*[gr.skip()] * (n_out - 2), state if state is not None else gr.skip(), _err(msg))

        wrapper.__name__ = fn.__name__
        return wrapper

    # -- opening a video ---------------------------------------------------------------------
    def _opened(self, s: Session, meta: VideoMeta) -> tuple:
        s.open(meta)
        _, reader, _ = self.need_video(s)
        gr = self.gr
        # a slider needs maximum > minimum: a one-frame video gets 0..1 (frame 1 is refused when asked for)
        slider = gr.update(minimum=0, maximum=max(meta.num_frames - 1, 1), value=0, step=1, interactive=True)
        return (s.show(reader.get(0)), slider, [], None, None, "", None, s, _ok(f"opened {meta.describe()}"))

    def open_upload(self, file: Any, s: Session | None) -> tuple:
        s = self.session(s)
        path = getattr(file, "name", file)
        if path and _in_folder(path, self.gr.utils.get_upload_folder()):  # the session's own: removed with it
            own = s.folder() / "upload" / Path(str(path)).name
            own.parent.mkdir(mode=0o700, exist_ok=True)
            os.replace(str(path), own)
            path = own
        try:
            meta = check_video(path, self.cfg.max_upload_mb)
        except UploadError:
            if isinstance(path, Path):
                discard(path)
            raise
        return self._opened(s, meta)

    def open_path(self, text: str, s: Session | None) -> tuple:
        s = self.session(s)
        if not self.cfg.path_input:
            raise UploadError("typed paths are turned off on this server (see --allow-paths); upload the file")
        return self._opened(s, check_video(text, self.cfg.max_upload_mb))

    def open_demo(self, s: Session | None) -> tuple:
        from ..data.synth import render_demo_clip
        from ..io import write_video

        s = self.session(s)
        path = s.folder() / "demo_clip.mp4"
        if not path.exists():
            write_video(path, render_demo_clip(frames=30).frames, fps=10)
        return self._opened(s, check_video(path, self.cfg.max_upload_mb))

    # -- prompts -----------------------------------------------------------------------------
    def _frame_out(
        self, s: Session, idx: int, msg: str, name: str, ckpt: str, size: float | None, memory: str, show: bool
    ) -> tuple:
        _, _, book = self.need_video(s)
        try:
            img = self.render(s, idx, self.choice(name, ckpt, size), memory, show)
        except JobError as exc:  # the prompt stays; only the preview failed
            img, msg = self.render(s, idx, None, memory, False), f"{msg}; preview failed: {exc}"
            return s.show(img), book.rows(), s, _err(msg)
        return s.show(img), book.rows(), s, _ok(msg)

    def scrub(
        self, idx: float, s: Session | None, name: str, ckpt: str, size: float | None, memory: str, show: bool
    ) -> tuple:
        s = self.session(s)
        meta, _, _ = self.need_video(s)
        return self._frame_out(s, int(idx), f"frame {int(idx)} of {meta.num_frames}", name, ckpt, size, memory, show)

    def click(
        self,
        evt: Any,
        idx: float,
        mode: str,
        obj_id: float | None,
        s: Session | None,
        name: str,
        ckpt: str,
        size: float | None,
        memory: str,
        show: bool,
    ) -> tuple:
        s = self.session(s)
        _, _, book = self.need_video(s)
        x, y = _click_xy(evt)
        oid = _obj_id(obj_id)
        if mode == MODES[2]:
            msg = book.add_corner(oid, int(idx), x, y)
        else:
            msg = book.add_click(oid, int(idx), x, y, positive=mode != MODES[1])
        return self._frame_out(s, int(idx), msg, name, ckpt, size, memory, show)

    def typed_box(
        self,
        text: str,
        idx: float,
        obj_id: float | None,
        s: Session | None,
        name: str,
        ckpt: str,
        size: float | None,
        memory: str,
        show: bool,
    ) -> tuple:
        s = self.session(s)
        _, _, book = self.need_video(s)
        msg = book.set_box_text(_obj_id(obj_id), int(idx), text)
        return self._frame_out(s, int(idx), msg, name, ckpt, size, memory, show)

    def typed_text(
        self,
        text: str,
        idx: float,
        obj_id: float | None,
        s: Session | None,
        name: str,
        ckpt: str,
        size: float | None,
        memory: str,
        show: bool,
    ) -> tuple:
        s = self.session(s)
        _, _, book = self.need_video(s)
        msg = book.set_text(_obj_id(obj_id), text)
        return self._frame_out(s, int(idx), msg, name, ckpt, size, memory, show)

    def edit(self, action: str) -> Callable[..., tuple]:
        def handler(
            idx: float,
            obj_id: float | None,
            s: Session | None,
            name: str,
            ckpt: str,
            size: float | None,
            memory: str,
            show: bool,
        ) -> tuple:
            s = self.session(s)
            _, _, book = self.need_video(s)
            if action == "undo":
                msg = book.undo()
            elif action == "clear object":
                msg = book.clear(_obj_id(obj_id))
            else:
                msg = book.clear()
            return self._frame_out(s, int(idx), msg, name, ckpt, size, memory, show)

        handler.__name__ = action.replace(" ", "_")
        return handler

    # -- running -----------------------------------------------------------------------------
    def run(
        self,
        s: Session | None,
        name: str,
        ckpt: str,
        size: float | None,
        memory: str,
        max_frames: float | None,
        ref_ckpt: str | None = None,
        ref_preset: str | None = None,
        ref_size: float | None = None,
    ):
        """Generator: progress in the status line while it runs, then the results."""
        gr = self.gr
        s = self.session(s)
        keep = [gr.skip()] * 4

        def fail(msg: Any) -> tuple:
            return (*keep, s, _err(msg))

        try:
            meta, _, book = self.need_video(s)
            choice = self.choice(name, ckpt, size)
            ref_choice = self.ref_choice(ref_ckpt, ref_preset, ref_size) if book.texts else None
            model = referring = None
            if book.prompts():
                yield (*keep, s, _ok(f"building {choice.label()} ..."))
                model = self.models.get(choice)
            if ref_choice is not None:
                yield (*keep, s, _ok(f"building the {ref_choice.label()} ..."))
                referring = self.referring.get(ref_choice)
            s.runs += 1
            out = s.folder() / f"run{s.runs:03d}"
            job = SegmentationJob(
                meta,
                book,
                model,
                out,
                memory=memory,
                max_frames=int(max_frames or 0),
                model_label=choice.label(),
                referring=referring,
            )
            if referring is not None and referring.untrained:
                yield (*keep, s, _err(f"{referring.warning()} (starting the run)"))
            last = 0.0
            for stat in job.frames():
                # a yield per frame: a Stop or a closed tab ends the run within one frame (Gradio
                # stops asking for more, and the job discards its partial overlay and masks)
                now = time.monotonic()
                if now - last > 0.5:
                    last = now
                    yield (
                        *keep,
                        s,
                        _ok(
                            f"segmenting: frame {stat.frame_idx + 1} of {job.total}, "
                            f"{stat.engine_ms:.0f} ms ({stat.fps:.1f} FPS)"
                        ),
                    )
                else:
                    yield (*keep, gr.skip(), gr.skip())
        except _USER_ERRORS as exc:
            yield fail(exc)
            return
        res = job.result
        assert res is not None  # frames() ran to the end
        import pandas as pd

        plot = pd.DataFrame(res.rows())
        texts = "".join(f"; {line}" for line in expression_summary(res.expressions, res.frames))
        warn = "; WARNING: untrained referring network" if res.warning else ""
        yield (
            str(res.overlay),
            [str(res.masks_zip), str(res.overlay)],
            res.summary(),
            plot,
            s,
            _ok(f"done: {res.frames} frames, masks of objects {res.obj_ids} in {res.masks_zip.name}{texts}{warn}"),
        )


REF_DEFAULT = "(default)"


def _ok(msg: Any) -> str:
    return str(msg)


def _err(msg: Any) -> str:
    return f"**Error: {msg}**"


def _in_folder(path: Any, folder: str | os.PathLike[str]) -> bool:
    try:
        return Path(str(path)).resolve().is_relative_to(Path(folder).resolve()) and Path(str(path)).is_file()
    except (OSError, ValueError):
        return False


def _click_xy(evt: Any) -> tuple[float, float]:
    idx = getattr(evt, "index", None)
    if not isinstance(idx, (list, tuple)) or len(idx) != 2:
        raise PromptError("click on the frame image to place a point")
    return float(idx[0]), float(idx[1])


def _obj_id(value: float | None) -> int:
    if value is None or float(value) != int(value):
        raise PromptError(f"object id must be a whole number 1..255, got {value!r}")
    return int(value)


@dataclass
class _VideoPanel:
    """ "1. Video": where a video comes from."""

    upload: Any
    path: Any
    open_path: Any
    demo_clip: Any


@dataclass
class _PromptPanel:
    """ "2. Prompts": clicks, boxes and texts of the open video."""

    mode: Any
    obj_id: Any
    box_text: Any
    set_box: Any
    obj_text: Any
    set_text: Any
    undo: Any
    clear_obj: Any
    clear_all: Any
    show: Any
    table: Any


@dataclass
class _RunPanel:
    """ "3. Model and run": the networks, the memory policy and the run buttons."""

    model: Any
    ckpt: Any
    size: Any
    memory: Any
    max_frames: Any
    ref_ckpt: Any
    ref_preset: Any
    ref_size: Any
    run: Any
    stop: Any


@dataclass
class _ResultsPanel:
    """The right column: the frame to click on and the run's results."""

    frame: Any
    slider: Any
    overlay: Any
    summary: Any
    plot: Any
    files: Any


def _model_choices() -> list:
    """The model dropdown's entries: the demo model (labelled with its weights), then the presets."""
    from ..modeling import list_presets
    from ..modeling.embedded import demo_checkpoint

    demo_ckpt = demo_checkpoint()
    demo_label = (
        f"{DEMO_MODEL} ({demo_ckpt}, as `surgsam demo`)"
        if demo_ckpt
        else f"{DEMO_MODEL} (untrained nano, as `surgsam demo`)"
    )
    return [(demo_label, DEMO_MODEL)] + list_presets()


def _video_panel(gr: Any, cfg: AppConfig) -> _VideoPanel:
    upload = gr.File(label=f"upload a video (at most {cfg.max_upload_mb:g} MB)", file_count="single", elem_id="upload")
    path = gr.Textbox(
        label="or a path on this machine", placeholder="/data/clip.mp4", visible=cfg.path_input, elem_id="path"
    )
    with gr.Row():
        open_path = gr.Button("Open path", size="sm", visible=cfg.path_input, elem_id="open-path")
        demo_clip = gr.Button("Synthetic demo clip", size="sm", elem_id="demo-clip")
    return _VideoPanel(upload, path, open_path, demo_clip)


def _prompt_panel(gr: Any) -> _PromptPanel:
    mode = gr.Radio(list(MODES), value=MODES[0], label="a click on the frame adds", elem_id="mode")
    obj_id = gr.Number(value=1, precision=0, minimum=1, maximum=255, label="object id", elem_id="obj-id")
    with gr.Row():
        box_text = gr.Textbox(label="or type a box x0,y0,x1,y1", scale=3, elem_id="box-text")
        set_box = gr.Button("Set box", size="sm", scale=1, elem_id="set-box")
    with gr.Row():
        obj_text = gr.Textbox(
            label="or type an expression for this object id (whole video)",
            placeholder="the grasper on the left",
            scale=3,
            elem_id="obj-text",
        )
        set_text = gr.Button("Set text", size="sm", scale=1, elem_id="set-text")
    with gr.Row():
        undo = gr.Button("Undo", size="sm", elem_id="undo")
        clear_obj = gr.Button("Clear object", size="sm", elem_id="clear-object")
        clear_all = gr.Button("Clear all", size="sm", elem_id="clear-all")
    show = gr.Checkbox(value=True, label="preview masks on the frame", elem_id="preview")
    table = gr.Dataframe(
        headers=["object", "frame", "clicks x,y,label", "box", "text"],
        value=[],
        interactive=False,
        label="prompts",
        elem_id="prompts",
    )
    return _PromptPanel(mode, obj_id, box_text, set_box, obj_text, set_text, undo, clear_obj, clear_all, show, table)


def _run_panel(gr: Any, cfg: AppConfig) -> _RunPanel:
    from ..modeling import list_presets

    model = gr.Dropdown(_model_choices(), value=cfg.model, label="model preset", elem_id="model")
    ckpt = gr.Textbox(
        value=cfg.checkpoint or "", label="checkpoint path (optional)", interactive=cfg.path_input, elem_id="checkpoint"
    )
    size = gr.Number(value=cfg.image_size or 0, precision=0, label="image size (0: the preset's)", elem_id="image-size")
    memory = gr.Radio(memory_policies(cfg.memory), value=cfg.memory, label="memory policy", elem_id="memory")
    max_frames = gr.Number(value=0, precision=0, minimum=0, label="stop after N frames (0: all)", elem_id="max-frames")
    with gr.Accordion("referring model (for text objects)", open=False, elem_id="referring"):
        ref_ckpt = gr.Textbox(
            value=cfg.referring_checkpoint or "",
            label="referring checkpoint path or embedded name (empty: an "
            "UNTRAINED network, as `surgsam refer --untrained`)",
            interactive=cfg.path_input,
            elem_id="ref-checkpoint",
        )
        ref_preset = gr.Dropdown(
            [REF_DEFAULT] + list_presets(),
            value=REF_DEFAULT,
            label="its SAM preset (sam2.1_hiera_s for ReSurgSAM2's .pth)",
            elem_id="ref-model",
        )
        ref_size = gr.Number(
            value=0, precision=0, label="its image size (0: default; 512 for ReSurgSAM2)", elem_id="ref-image-size"
        )
    with gr.Row():
        run = gr.Button("Run", variant="primary", elem_id="run")
        stop = gr.Button("Stop", variant="stop", elem_id="stop")
    return _RunPanel(model, ckpt, size, memory, max_frames, ref_ckpt, ref_preset, ref_size, run, stop)


def _results_panel(gr: Any) -> _ResultsPanel:
    frame = gr.Image(label="frame: click to prompt", interactive=False, format="jpeg", height=420, elem_id="frame")
    slider = gr.Slider(0, 1, value=0, step=1, label="frame index", interactive=False, elem_id="slider")
    overlay = gr.Video(
        label="overlay (masks, latency, FPS)",
        autoplay=True,
        loop=True,
        height=420,
        interactive=False,
        elem_id="overlay",
    )
    summary = gr.Markdown(elem_id="summary")
    plot = gr.LinePlot(x="frame", y="engine ms", title="engine time per frame (ms)", elem_id="plot")
    files = gr.File(
        label="downloads: masks (PNG zip, DAVIS palette) and overlay mp4",
        file_count="multiple",
        interactive=False,
        elem_id="downloads",
    )
    return _ResultsPanel(frame, slider, overlay, summary, plot, files)


def _wire_video(app: _App, video: _VideoPanel, opened: list) -> None:
    """Opening a video: upload, typed path, demo clip."""
    # the drop zone comes back after every upload, so another video can follow
    video.upload.upload(app.guarded(app.open_upload, len(opened)), [video.upload, app.state], opened).then(
        lambda: None, None, video.upload
    )
    if app.cfg.path_input:  # otherwise there is no such endpoint (and the handler refuses anyway)
        video.open_path.click(app.guarded(app.open_path, len(opened)), [video.path, app.state], opened)
        video.path.submit(app.guarded(app.open_path, len(opened)), [video.path, app.state], opened)
    video.demo_clip.click(app.guarded(app.open_demo, len(opened)), [app.state], opened)


def _wire_prompts(app: _App, p: _PromptPanel, frame: Any, slider: Any, m_in: list, fout: list) -> None:
    """Scrubbing, clicking, typed boxes and texts, undo and clear."""
    gr, state = app.gr, app.state
    slider.input(app.guarded(app.scrub, 4), [slider, state, *m_in], fout, trigger_mode="always_last")

    def on_click(idx, mode_, oid, s, name, ckpt_, size_, memory_, show_, evt: Any):
        return app.guarded(app.click, 4)(evt, idx, mode_, oid, s, name, ckpt_, size_, memory_, show_)

    on_click.__annotations__["evt"] = gr.SelectData  # a real class: Gradio reads it to pass the event

    frame.select(on_click, [slider, p.mode, p.obj_id, state, *m_in], fout)
    p.set_box.click(app.guarded(app.typed_box, 4), [p.box_text, slider, p.obj_id, state, *m_in], fout)
    p.box_text.submit(app.guarded(app.typed_box, 4), [p.box_text, slider, p.obj_id, state, *m_in], fout)
    p.set_text.click(app.guarded(app.typed_text, 4), [p.obj_text, slider, p.obj_id, state, *m_in], fout)
    p.obj_text.submit(app.guarded(app.typed_text, 4), [p.obj_text, slider, p.obj_id, state, *m_in], fout)
    for button, action in ((p.undo, "undo"), (p.clear_obj, "clear object"), (p.clear_all, "clear all")):
        button.click(app.guarded(app.edit(action), 4), [slider, p.obj_id, state, *m_in], fout)
    p.show.change(app.guarded(app.scrub, 4), [slider, state, *m_in], fout)


def _wire_run(app: _App, r: _RunPanel, res: _ResultsPanel, status: Any) -> None:
    """Run and Stop. Runs of different sessions go side by side (up to max_runs); a tab runs one at a time."""
    running = r.run.click(
        app.run,
        [app.state, r.model, r.ckpt, r.size, r.memory, r.max_frames, r.ref_ckpt, r.ref_preset, r.ref_size],
        [res.overlay, res.files, res.summary, res.plot, app.state, status],
        concurrency_limit=max(1, app.cfg.max_runs),
        concurrency_id="run",
        trigger_mode="once",
    )
    r.stop.click(lambda: _ok("stopped"), None, [status], cancels=[running])


def build_app(cfg: AppConfig | None = None) -> Any:
    """The Gradio Blocks of the app (not launched)."""
    gr = require_gradio()
    cfg = cfg or AppConfig()
    app = _App(cfg, gr)
    # anything left in Gradio's cache (files of sessions that never closed) goes after 6 h (checked hourly)
    with gr.Blocks(title="surgsam", analytics_enabled=False, delete_cache=(3600, 6 * 3600)) as demo:
        gr.Markdown(
            "## surgsam: segment surgical video\nOpen a video, scrub to a frame, click the objects "
            "(one object id each) or describe them in words, run, then watch and download."
        )
        status = gr.Markdown("Open a video to start.", elem_id="status")
        app.state = state = gr.State(None, delete_callback=_close_session)
        with gr.Row():
            with gr.Column(scale=1, min_width=320, elem_id="controls"):
                with gr.Accordion("1. Video", open=True):
                    video = _video_panel(gr, cfg)
                with gr.Accordion("2. Prompts", open=True):
                    prompts = _prompt_panel(gr)
                with gr.Accordion("3. Model and run", open=True):
                    run = _run_panel(gr, cfg)
            with gr.Column(scale=2, elem_id="results"):
                res = _results_panel(gr)
        m_in = [run.model, run.ckpt, run.size, run.memory, prompts.show]
        opened = [res.frame, res.slider, prompts.table, res.overlay, res.files, res.summary, res.plot, state, status]
        _wire_video(app, video, opened)
        _wire_prompts(app, prompts, res.frame, res.slider, m_in, [res.frame, prompts.table, state, status])
        _wire_run(app, run, res, status)

        def on_unload(request: Any) -> None:
            app.end_session(getattr(request, "session_hash", None), demo)

        on_unload.__annotations__["request"] = gr.Request  # a real class: Gradio reads it to pass the request
        demo.unload(on_unload)
    demo.app_state = app  # the handlers (tests and serve() reach the work folder through it)
    return demo


def serve(cfg: AppConfig | None = None, block: bool = True) -> Any:
    """Build and launch the app on ``cfg.host:cfg.port``; returns the Blocks.

    The server gets a private folder (``0700``) holding Gradio's cache (``GRADIO_TEMP_DIR``) and
    the sessions' folders, and creates files ``0600`` (umask 077 while it runs). Every request
    passes :class:`~.guard.HostGuard` first. With ``block`` it serves until Ctrl+C, SIGTERM or
    SIGHUP, then stops and removes the folder; without, call ``demo.surgsam_stop()`` (it also
    runs at interpreter exit).
    """
    from starlette.middleware import Middleware

    cfg = cfg or AppConfig()
    policy = HostPolicy.for_server(cfg.host, cfg.port, cfg.allowed_hosts)
    private = PrivateDir()
    old_umask = os.umask(0o077)
    old_env = {k: os.environ.get(k) for k in ("GRADIO_TEMP_DIR", "GRADIO_ANALYTICS_ENABLED")}
    os.environ["GRADIO_TEMP_DIR"] = str(private.sub("gradio"))  # read by Blocks and by Gradio's routes
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    stopped = threading.Lock()
    demo: Any = None

    def stop() -> None:
        if not stopped.acquire(blocking=False):
            return
        try:
            if demo is not None:
                demo.close(verbose=False)
        finally:
            private.remove()
            os.umask(old_umask)
            for k, v in old_env.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v

    atexit.register(stop)
    try:
        workdir = private.path / "gradio" / "sessions"  # in Gradio's cache: results are served in place
        workdir.mkdir(mode=0o700)
        demo = build_app(replace(cfg, workdir=workdir))
        demo.surgsam_stop, demo.surgsam_dir, demo.surgsam_policy = stop, private.path, policy
        demo.queue(default_concurrency_limit=max(2, cfg.max_runs))
        demo.launch(
            server_name=cfg.host,
            server_port=cfg.port,
            max_file_size=int(cfg.max_upload_mb * 2**20),
            share=False,
            ssr_mode=False,
            prevent_thread_lock=True,
            quiet=False,
            mcp_server=False,
            app_kwargs={"middleware": [Middleware(HostGuard, policy=policy)]},
        )
    except BaseException:
        stop()
        raise
    if block:
        serve_forever(demo)
    return demo


def serve_forever(demo: Any) -> None:
    """Wait until Ctrl+C, SIGTERM or SIGHUP (or the server stops), then stop it and remove its
    private folder."""
    with signals_as_interrupt(signal.SIGTERM, signal.SIGHUP):
        try:
            while demo.is_running:
                time.sleep(0.2)
        except KeyboardInterrupt:
            pass
        finally:
            demo.surgsam_stop()


class _Interrupt(KeyboardInterrupt):
    """SIGTERM / SIGHUP, handled like Ctrl+C."""


def signals_as_interrupt(*signums: int) -> AbstractContextManager[None]:
    """Context: the given signals raise :class:`KeyboardInterrupt` in the main thread."""
    return raise_on_signals(signums, lambda n: _Interrupt(signal.Signals(n).name))
