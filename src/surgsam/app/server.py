"""The Gradio UI of ``surgsam app``: open a video, scrub, click objects, run, watch, download.

Every handler catches bad input and reports it in the status line; the work itself lives in
:mod:`.jobs`, :mod:`.video` and :mod:`.prompts`. Each browser session has its own temporary
folder for outputs, removed when the session ends or the server stops. The server binds
127.0.0.1 unless told otherwise, passes Gradio no ``allowed_paths``, and reads a typed path
only when path input is allowed (by default: only when bound to a loopback address).
"""

from __future__ import annotations

import atexit
import ipaddress
import os
import shutil
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ._deps import require_gradio
from .jobs import (DEMO_MODEL, MEMORY_POLICIES, JobError, ModelCache, ModelChoice, ReferringChoice, SegmentationJob,
                   expression_summary, preview)
from .prompts import PromptBook, PromptError
from .video import FrameReader, UploadError, VideoMeta, check_video

__all__ = ["AppConfig", "Session", "build_app", "serve"]

MODES = ("positive click", "negative click", "box: 2 clicks")
_USER_ERRORS = (UploadError, PromptError, JobError, ValueError, OSError, ImportError, IndexError)


@dataclass
class AppConfig:
    """How the app is served and what it starts with."""

    host: str = "127.0.0.1"
    port: int = 7860
    max_upload_mb: float = 500.0
    allow_path_input: bool | None = None  # None: only when bound to a loopback address
    model: str = DEMO_MODEL
    checkpoint: str | None = None
    image_size: int | None = None
    device: str = "cpu"
    memory: str = "efp"
    referring_checkpoint: str | None = None  # for text objects (None: the untrained network)
    workdir: Path | None = None  # parent of the per-session folders (default: a new temp dir)

    @property
    def path_input(self) -> bool:
        if self.allow_path_input is not None:
            return self.allow_path_input
        return _is_loopback(self.host)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


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

    @classmethod
    def create(cls, parent: Path) -> Session:
        return cls(parent / f"session-{uuid.uuid4().hex[:16]}")

    def folder(self) -> Path:
        self.root.mkdir(parents=True, exist_ok=True)
        return self.root

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
        gr = self.gr
        # a slider needs maximum > minimum: a one-frame video gets 0..1 (frame 1 is refused when asked for)
        slider = gr.update(minimum=0, maximum=max(meta.num_frames - 1, 1), value=0, step=1, interactive=True)
        return (s.reader.get(0), slider, [], None, None, "", None, s, _ok(f"opened {meta.describe()}"))

    def open_upload(self, file: Any, s: Session | None) -> tuple:
        s = self.session(s)
        path = getattr(file, "name", file)
        return self._opened(s, check_video(path, self.cfg.max_upload_mb))

    def open_path(self, text: str, s: Session | None) -> tuple:
        s = self.session(s)
        if not self.cfg.path_input:
            raise UploadError("typed paths are turned off on this server (see --allow-path-input); upload the file")
        return self._opened(s, check_video(text, self.cfg.max_upload_mb))

    def open_demo(self, s: Session | None) -> tuple:
        from ..demo import render_demo_clip
        from ..io import write_video

        s = self.session(s)
        path = s.folder() / "demo_clip.mp4"
        if not path.exists():
            write_video(path, render_demo_clip(frames=30).frames, fps=10)
        return self._opened(s, check_video(path, self.cfg.max_upload_mb))

    # -- prompts -----------------------------------------------------------------------------
    def _frame_out(self, s: Session, idx: int, msg: str, name: str, ckpt: str, size: float | None,
                   memory: str, show: bool) -> tuple:
        _, _, book = self.need_video(s)
        try:
            img = self.render(s, idx, self.choice(name, ckpt, size), memory, show)
        except JobError as exc:  # the prompt stays; only the preview failed
            img, msg = self.render(s, idx, None, memory, False), f"{msg}; preview failed: {exc}"
            return img, book.rows(), s, _err(msg)
        return img, book.rows(), s, _ok(msg)

    def scrub(self, idx: float, s: Session | None, name: str, ckpt: str, size: float | None, memory: str,
              show: bool) -> tuple:
        s = self.session(s)
        meta, _, _ = self.need_video(s)
        return self._frame_out(s, int(idx), f"frame {int(idx)} of {meta.num_frames}", name, ckpt, size, memory, show)

    def click(self, evt: Any, idx: float, mode: str, obj_id: float | None, s: Session | None, name: str,
              ckpt: str, size: float | None, memory: str, show: bool) -> tuple:
        s = self.session(s)
        _, _, book = self.need_video(s)
        x, y = _click_xy(evt)
        oid = _obj_id(obj_id)
        if mode == MODES[2]:
            msg = book.add_corner(oid, int(idx), x, y)
        else:
            msg = book.add_click(oid, int(idx), x, y, positive=mode != MODES[1])
        return self._frame_out(s, int(idx), msg, name, ckpt, size, memory, show)

    def typed_box(self, text: str, idx: float, obj_id: float | None, s: Session | None, name: str, ckpt: str,
                  size: float | None, memory: str, show: bool) -> tuple:
        s = self.session(s)
        _, _, book = self.need_video(s)
        msg = book.set_box_text(_obj_id(obj_id), int(idx), text)
        return self._frame_out(s, int(idx), msg, name, ckpt, size, memory, show)

    def typed_text(self, text: str, idx: float, obj_id: float | None, s: Session | None, name: str, ckpt: str,
                   size: float | None, memory: str, show: bool) -> tuple:
        s = self.session(s)
        _, _, book = self.need_video(s)
        msg = book.set_text(_obj_id(obj_id), text)
        return self._frame_out(s, int(idx), msg, name, ckpt, size, memory, show)

    def edit(self, action: str) -> Callable[..., tuple]:
        def handler(idx: float, obj_id: float | None, s: Session | None, name: str, ckpt: str,
                    size: float | None, memory: str, show: bool) -> tuple:
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
    def run(self, s: Session | None, name: str, ckpt: str, size: float | None, memory: str,
            max_frames: float | None, ref_ckpt: str | None = None, ref_preset: str | None = None,
            ref_size: float | None = None):
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
            job = SegmentationJob(meta, book, model, out, memory=memory, max_frames=int(max_frames or 0),
                                  model_label=choice.label(), referring=referring)
            if referring is not None and referring.untrained:
                yield (*keep, s, _err(f"{referring.warning()} (starting the run)"))
            last = 0.0
            for stat in job.frames():
                now = time.monotonic()
                if now - last > 0.5:
                    last = now
                    yield (*keep, s, _ok(f"segmenting: frame {stat.frame_idx + 1} of {job.total}, "
                                         f"{stat.engine_ms:.0f} ms ({stat.fps:.1f} FPS)"))
        except _USER_ERRORS as exc:
            yield fail(exc)
            return
        res = job.result
        import pandas as pd

        plot = pd.DataFrame(res.rows())
        texts = "".join(f"; {line}" for line in expression_summary(res.expressions, res.frames))
        warn = "; WARNING: untrained referring network" if res.warning else ""
        yield (str(res.overlay), [str(res.masks_zip), str(res.overlay)], res.summary(), plot, s,
               _ok(f"done: {res.frames} frames, masks of objects {res.obj_ids} in {res.masks_zip.name}{texts}{warn}"))


REF_DEFAULT = "(default)"


def _ok(msg: Any) -> str:
    return str(msg)


def _err(msg: Any) -> str:
    return f"**Error: {msg}**"


def _click_xy(evt: Any) -> tuple[float, float]:
    idx = getattr(evt, "index", None)
    if not isinstance(idx, (list, tuple)) or len(idx) != 2:
        raise PromptError("click on the frame image to place a point")
    return float(idx[0]), float(idx[1])


def _obj_id(value: float | None) -> int:
    if value is None or float(value) != int(value):
        raise PromptError(f"object id must be a whole number 1..255, got {value!r}")
    return int(value)


def build_app(cfg: AppConfig | None = None) -> Any:
    """The Gradio Blocks of the app (not launched)."""
    from ..modeling import list_presets

    gr = require_gradio()
    cfg = cfg or AppConfig()
    app = _App(cfg, gr)
    from ..demo import demo_checkpoint

    demo_ckpt = demo_checkpoint()
    demo_label = f"{DEMO_MODEL} ({demo_ckpt}, as `surgsam demo`)" if demo_ckpt else \
        f"{DEMO_MODEL} (untrained nano, as `surgsam demo`)"
    choices = [(demo_label, DEMO_MODEL)] + list_presets()
    # uploads and results Gradio copied to its cache are deleted after 12 h (checked hourly)
    with gr.Blocks(title="surgsam", analytics_enabled=False, delete_cache=(3600, 12 * 3600)) as demo:
        gr.Markdown("## surgsam: segment surgical video\nOpen a video, scrub to a frame, click the objects "
                    "(one object id each) or describe them in words, run, then watch and download.")
        status = gr.Markdown("Open a video to start.", elem_id="status")
        state = gr.State(None, delete_callback=_close_session)
        with gr.Row():
            with gr.Column(scale=1, min_width=320, elem_id="controls"):
                with gr.Accordion("1. Video", open=True):
                    upload = gr.File(label=f"upload a video (at most {cfg.max_upload_mb:g} MB)", file_count="single",
                                     elem_id="upload")
                    path = gr.Textbox(label="or a path on this machine", placeholder="/data/clip.mp4",
                                      visible=cfg.path_input, elem_id="path")
                    with gr.Row():
                        open_path = gr.Button("Open path", size="sm", visible=cfg.path_input, elem_id="open-path")
                        demo_clip = gr.Button("Synthetic demo clip", size="sm", elem_id="demo-clip")
                with gr.Accordion("2. Prompts", open=True):
                    mode = gr.Radio(list(MODES), value=MODES[0], label="a click on the frame adds", elem_id="mode")
                    obj_id = gr.Number(value=1, precision=0, minimum=1, maximum=255, label="object id", elem_id="obj-id")
                    with gr.Row():
                        box_text = gr.Textbox(label="or type a box x0,y0,x1,y1", scale=3, elem_id="box-text")
                        set_box = gr.Button("Set box", size="sm", scale=1, elem_id="set-box")
                    with gr.Row():
                        obj_text = gr.Textbox(label="or type an expression for this object id (whole video)",
                                              placeholder="the grasper on the left", scale=3, elem_id="obj-text")
                        set_text = gr.Button("Set text", size="sm", scale=1, elem_id="set-text")
                    with gr.Row():
                        undo = gr.Button("Undo", size="sm", elem_id="undo")
                        clear_obj = gr.Button("Clear object", size="sm", elem_id="clear-object")
                        clear_all = gr.Button("Clear all", size="sm", elem_id="clear-all")
                    show = gr.Checkbox(value=True, label="preview masks on the frame", elem_id="preview")
                    table = gr.Dataframe(headers=["object", "frame", "clicks x,y,label", "box", "text"], value=[],
                                         interactive=False, label="prompts", elem_id="prompts")
                with gr.Accordion("3. Model and run", open=True):
                    model = gr.Dropdown(choices, value=cfg.model, label="model preset", elem_id="model")
                    ckpt = gr.Textbox(value=cfg.checkpoint or "", label="checkpoint path (optional)",
                                      interactive=cfg.path_input, elem_id="checkpoint")
                    size = gr.Number(value=cfg.image_size or 0, precision=0, label="image size (0: the preset's)",
                                     elem_id="image-size")
                    memory = gr.Radio(list(MEMORY_POLICIES), value=cfg.memory, label="memory policy", elem_id="memory")
                    max_frames = gr.Number(value=0, precision=0, minimum=0, label="stop after N frames (0: all)",
                                           elem_id="max-frames")
                    with gr.Accordion("referring model (for text objects)", open=False, elem_id="referring"):
                        ref_ckpt = gr.Textbox(value=cfg.referring_checkpoint or "",
                                              label="referring checkpoint path or embedded name (empty: an "
                                              "UNTRAINED network, as `surgsam refer --untrained`)",
                                              interactive=cfg.path_input, elem_id="ref-checkpoint")
                        ref_preset = gr.Dropdown([REF_DEFAULT] + list_presets(), value=REF_DEFAULT,
                                                 label="its SAM preset (sam2.1_hiera_s for ReSurgSAM2's .pth)",
                                                 elem_id="ref-model")
                        ref_size = gr.Number(value=0, precision=0, label="its image size (0: default; 512 for "
                                             "ReSurgSAM2)", elem_id="ref-image-size")
                    with gr.Row():
                        run = gr.Button("Run", variant="primary", elem_id="run")
                        stop = gr.Button("Stop", variant="stop", elem_id="stop")
            with gr.Column(scale=2, elem_id="results"):
                frame = gr.Image(label="frame: click to prompt", interactive=False, format="jpeg", height=420,
                                 elem_id="frame")
                slider = gr.Slider(0, 1, value=0, step=1, label="frame index", interactive=False, elem_id="slider")
                overlay = gr.Video(label="overlay (masks, latency, FPS)", autoplay=True, loop=True, height=420,
                                   interactive=False, elem_id="overlay")
                summary = gr.Markdown(elem_id="summary")
                plot = gr.LinePlot(x="frame", y="engine ms", title="engine time per frame (ms)", elem_id="plot")
                files = gr.File(label="downloads: masks (PNG zip, DAVIS palette) and overlay mp4", file_count="multiple",
                                interactive=False, elem_id="downloads")
        m_in = [model, ckpt, size, memory, show]
        opened = [frame, slider, table, overlay, files, summary, plot, state, status]
        # the drop zone comes back after every upload, so another video can follow
        upload.upload(app.guarded(app.open_upload, len(opened)), [upload, state], opened).then(
            lambda: None, None, upload)
        open_path.click(app.guarded(app.open_path, len(opened)), [path, state], opened)
        path.submit(app.guarded(app.open_path, len(opened)), [path, state], opened)
        demo_clip.click(app.guarded(app.open_demo, len(opened)), [state], opened)
        fout = [frame, table, state, status]
        slider.input(app.guarded(app.scrub, 4), [slider, state, *m_in], fout, trigger_mode="always_last")

        def on_click(idx, mode_, oid, s, name, ckpt_, size_, memory_, show_, evt: gr.SelectData):
            return app.guarded(app.click, 4)(evt, idx, mode_, oid, s, name, ckpt_, size_, memory_, show_)

        on_click.__annotations__["evt"] = gr.SelectData  # a real class: Gradio reads it to pass the event

        frame.select(on_click, [slider, mode, obj_id, state, *m_in], fout)
        set_box.click(app.guarded(app.typed_box, 4), [box_text, slider, obj_id, state, *m_in], fout)
        box_text.submit(app.guarded(app.typed_box, 4), [box_text, slider, obj_id, state, *m_in], fout)
        set_text.click(app.guarded(app.typed_text, 4), [obj_text, slider, obj_id, state, *m_in], fout)
        obj_text.submit(app.guarded(app.typed_text, 4), [obj_text, slider, obj_id, state, *m_in], fout)
        for button, action in ((undo, "undo"), (clear_obj, "clear object"), (clear_all, "clear all")):
            button.click(app.guarded(app.edit(action), 4), [slider, obj_id, state, *m_in], fout)
        show.change(app.guarded(app.scrub, 4), [slider, state, *m_in], fout)
        running = run.click(app.run, [state, model, ckpt, size, memory, max_frames, ref_ckpt, ref_preset, ref_size],
                            [overlay, files, summary, plot, state, status])
        stop.click(lambda: _ok("stopped"), None, [status], cancels=[running])
    demo.app_state = app  # the handlers (tests and serve() reach the work folder through it)
    return demo


def serve(cfg: AppConfig | None = None, block: bool = True) -> Any:
    """Build and launch the app on ``cfg.host:cfg.port``; returns the Blocks."""
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    cfg = cfg or AppConfig()
    demo = build_app(cfg)
    atexit.register(shutil.rmtree, demo.app_state.workdir, True)
    demo.queue(default_concurrency_limit=1)
    demo.launch(server_name=cfg.host, server_port=cfg.port, max_file_size=int(cfg.max_upload_mb * 2**20),
                share=False, ssr_mode=False, prevent_thread_lock=not block, quiet=False, mcp_server=False)
    return demo
