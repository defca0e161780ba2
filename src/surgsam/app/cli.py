"""``surgsam app`` (the local web app) and ``surgsam live`` (real-time tracking)."""

from __future__ import annotations

import argparse
import json
from contextlib import AbstractContextManager
from pathlib import Path

from ..options import add_memory_argument


def register(subparsers) -> None:
    """Add ``surgsam app`` and ``surgsam live``."""
    _register_app(subparsers)
    _register_live(subparsers)


# ----------------------------------------------------------------------------- surgsam app
def _register_app(subparsers) -> None:
    p = subparsers.add_parser(
        "app",
        help="local web app: open a video, click objects, run, watch the overlay, download masks",
        description="A local Gradio web app. Open a video (upload or a typed path), scrub to a frame, click "
        "positive/negative points or give boxes for one or several objects, choose the model and memory "
        "policy, run, watch the overlay with per-frame FPS, and download the masks (zip of DAVIS palette "
        "PNGs) and the overlay mp4. Needs the demo extra: pip install 'surgsam[demo]'.",
    )
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=7860)
    p.add_argument("--max-upload-mb", type=float, default=500.0, help="largest video accepted (MB, default 500)")
    p.add_argument(
        "--allow-paths",
        "--allow-path-input",
        dest="allow_paths",
        action="store_true",
        help="let users open files and checkpoints by typing a path on this machine (default: off; uploads only)",
    )
    p.add_argument(
        "--allowed-host",
        action="append",
        default=[],
        metavar="NAME[:PORT]",
        help="a Host name the app answers to besides localhost, 127.0.0.1, [::1] and --host "
        "(e.g. this machine's LAN name or a reverse proxy's); repeat for several. Requests naming any "
        "other host or Origin are refused (403): DNS rebinding",
    )
    p.add_argument(
        "--max-runs", type=int, default=4, help="segmentation runs at once, of different sessions (default 4)"
    )
    p.add_argument("--model", default="demo", help="preset preselected in the UI (default: the demo's model)")
    p.add_argument("--checkpoint", default=None, help="checkpoint preselected in the UI")
    p.add_argument("--image-size", type=int, default=None)
    add_memory_argument(p)
    p.add_argument(
        "--referring-checkpoint",
        default=None,
        help="referring checkpoint preselected for text objects (default: the embedded "
        "surgsam-ref-nano-synth; '' for an untrained network)",
    )
    p.add_argument("--device", default="cpu")
    p.set_defaults(func=_cmd_app)


def _cmd_app(args: argparse.Namespace) -> int:
    import signal

    from ..referring.build import default_referring_checkpoint
    from .guard import HostPolicy
    from .server import AppConfig, serve, serve_forever, signals_as_interrupt

    if args.max_upload_mb <= 0:
        raise ValueError("--max-upload-mb must be positive")
    if not 0 < args.port < 65536:
        raise ValueError(f"--port must be 1..65535, got {args.port}")
    if args.max_runs < 1:
        raise ValueError("--max-runs must be at least 1")
    cfg = AppConfig(
        host=args.host,
        port=args.port,
        max_upload_mb=args.max_upload_mb,
        allow_path_input=args.allow_paths,
        model=args.model,
        checkpoint=args.checkpoint,
        image_size=args.image_size,
        device=args.device,
        memory=args.memory,
        referring_checkpoint=default_referring_checkpoint(args.referring_checkpoint)
        if args.referring_checkpoint != ""
        else None,
        allowed_hosts=tuple(args.allowed_host),
        max_runs=args.max_runs,
    )
    policy = HostPolicy.for_server(cfg.host, cfg.port, cfg.allowed_hosts)  # a bad name fails before starting
    print(
        f"surgsam app: uploads up to {cfg.max_upload_mb:g} MB; typed paths "
        f"{'on' if cfg.path_input else 'off (see --allow-paths)'}; answers requests for {policy.describe()} "
        "(see --allowed-host); Ctrl+C stops it",
        flush=True,
    )
    with signals_as_interrupt(signal.SIGTERM, signal.SIGHUP):  # also while starting: the folder still goes
        demo = serve(cfg, block=False)
        print(f"surgsam app: private folder {demo.surgsam_dir} (removed on exit)", flush=True)
        serve_forever(demo)
    return 0


# ----------------------------------------------------------------------------- surgsam live
def _register_live(subparsers) -> None:
    from ..engine.cli import add_prompt_arguments

    p = subparsers.add_parser(
        "live",
        help="track objects in a camera, stream or file in real time (drops frames rather than lag)",
        description="Real-time tracking from a camera index, a stream URL (rtsp://...), a named pipe or a video "
        "file read as live (paced at its frame rate). Prompts go on the first frame: click in the window "
        "(needs OpenCV with GUI support, i.e. opencv-python) or give --mask / --points / --box. Or describe "
        "objects with --text (ids 1..N): each is searched for from the first frame by the referring network, "
        "chosen as in `surgsam refer` (--checkpoint, --model, --referring, --image-size, --text-encoder). Frames "
        "the engine cannot keep up with are dropped and counted; a JSON report is printed at the end.",
    )
    p.add_argument("--source", required=True, help="camera index (0), stream URL, named pipe or video file")
    add_prompt_arguments(p, required=False)
    p.add_argument(
        "--text",
        action="append",
        default=None,
        metavar="EXPRESSION",
        help="a referring expression (repeat for several objects, ids 1..N); not with --mask/--points/--box",
    )
    p.add_argument(
        "--model",
        default=None,
        help="preset (default: the demo's model, as `surgsam demo`; with --text: as `surgsam refer --model`)",
    )
    p.add_argument(
        "--checkpoint",
        default=None,
        help="SAM checkpoint (default: the demo's model); with --text a referring checkpoint (default: the "
        "embedded surgsam-ref-nano-synth)",
    )
    p.add_argument(
        "--untrained",
        action="store_true",
        help="random weights instead of the embedded model (with --text: an untrained referring network)",
    )
    p.add_argument("--image-size", type=int, default=None)
    p.add_argument("--referring", default=None, help="with --text: referring preset (as `surgsam refer`)")
    p.add_argument("--text-encoder", default=None, help="with --text: text encoder (as `surgsam refer`)")
    p.add_argument(
        "--no-cifs", action="store_true", help="with --text: start tracking on the first frame passing both thresholds"
    )
    p.add_argument("--seed", type=int, default=0, help="with --text --untrained: weights seed of the network")
    add_memory_argument(p)
    p.add_argument("--precision", default="auto", choices=["fp32", "bf16", "auto"])
    p.add_argument("--device", default="cpu")
    p.add_argument("--record", type=Path, default=None, help="also write the overlay (in real time) to this mp4")
    p.add_argument(
        "--headless",
        action="store_true",
        help="no window: prompts from --mask/--points/--box or --text, overlay to --record "
        "(default out/live/overlay.mp4)",
    )
    p.add_argument("--max-frames", type=int, default=None, help="stop after this many processed frames")
    p.add_argument("--no-drop", action="store_true", help="process every frame in order (lags when slow)")
    p.add_argument(
        "--realtime",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="pace a file at its frame rate (default: on for files, off for cameras and streams)",
    )
    p.add_argument(
        "--read-timeout",
        type=float,
        default=10.0,
        help="seconds to wait for the source to open (a pipe: for a writer) and for each frame",
    )
    p.set_defaults(func=_cmd_live, frame=0)


def _cmd_live(args: argparse.Namespace) -> int:
    """Live mode; Ctrl+C and SIGTERM end it with the JSON report (exit 130 / 143)."""
    import sys
    import time

    from .live import Interrupted, LiveReport

    t0 = time.monotonic()
    with _live_signals():
        try:
            report = _live(args)
        except Interrupted as exc:  # before the first frame: building the model, opening the source
            report = LiveReport.not_started(str(args.source), exc.reason, time.monotonic() - t0)
    if isinstance(report, int):
        return report
    print(
        f"{report.processed} of {report.frames_read} frames processed, {report.dropped} dropped "
        f"({report.dropped_while_prompting} while prompting); {report.fps:.1f} FPS, latency median "
        f"{report.latency_median_ms:.0f} ms, p95 {report.latency_p95_ms:.0f} ms; stopped: {report.end}"
        + (f" ({report.error})" if report.error else "")
        + (f"; overlay in {report.record}" if report.record else ""),
        file=sys.stderr,
    )
    print(json.dumps(report.to_dict()), flush=True)
    if report.end.startswith("interrupted ("):
        return 130 if "SIGINT" in report.end else 143
    return 1 if report.error else 0


def _live_signals() -> AbstractContextManager[None]:
    """Context: SIGINT and SIGTERM raise :class:`~.live.Interrupted` once in the main thread (a
    second one while the run winds up is ignored, so the report is still printed)."""
    import signal

    from .live import Interrupted
    from .signals import raise_on_signals

    return raise_on_signals((signal.SIGINT, signal.SIGTERM), Interrupted, once=True)


def _live(args: argparse.Namespace):
    """Build, open and run; the :class:`~.live.LiveReport`, or an exit code for an error."""
    import sys

    from ..engine import VideoSegmenter
    from ..engine.cli import build_prompts
    from .live import LiveError, open_live, run_live
    from .live_gui import HEADLESS_HINT, ClickPrompter, Window, gui_support

    given = any(v is not None for v in (args.mask, args.points, args.box))
    if args.text and given:
        raise ValueError("give either --text or --mask/--points/--box, not both (live mode does not mix them)")
    record = args.record
    if args.headless:
        if not given and not args.text:
            raise ValueError("--headless needs the prompts on the command line: --mask, --points, --box or --text")
        record = record or Path("out/live/overlay.mp4")
    else:
        why = gui_support()
        if why is not None:
            raise ValueError(f"cannot open a window: {why}; {HEADLESS_HINT}")
    if args.max_frames is not None and args.max_frames < 1:
        raise ValueError("--max-frames must be at least 1")
    if not args.read_timeout > 0:
        raise ValueError("--read-timeout must be positive")
    prompts: list | ClickPrompter | None = build_prompts(args) if given else None
    if args.text:
        model = None
        seg = _live_referrer(args)
        prompts = []
    else:
        model = _live_model(args)
        seg = VideoSegmenter(model, memory=args.memory, precision=args.precision)
    try:  # --read-timeout bounds the wait for the source too (a named pipe with no writer)
        source = open_live(
            int(args.source) if args.source.strip().isdigit() else args.source,
            drop_frames=not args.no_drop,
            realtime=args.realtime,
            open_timeout_s=args.read_timeout,
            read_timeout_s=args.read_timeout,
        )
    except OSError as exc:
        print(f"surgsam live: error: {exc}", file=sys.stderr)
        return 2
    window = None if args.headless else Window(f"surgsam live: {source.name}")
    if prompts is None:
        from .jobs import preview

        prompts = ClickPrompter(window, preview=lambda frame, ps: preview(model, frame, ps, args.memory))
    try:
        return run_live(
            source,
            seg,
            prompts,
            sink=window,
            record=record,
            max_frames=args.max_frames,
            read_timeout_s=args.read_timeout,
        )
    except LiveError as exc:
        print(f"surgsam live: error: {exc}", file=sys.stderr)
        return 2
    finally:
        source.close()
        if window is not None:
            window.close()


def _live_referrer(args: argparse.Namespace):
    """A ReferringSegmenter holding --text (ids 1..N), its network built as `surgsam refer` builds it."""
    import sys

    from ..referring.build import UNTRAINED_NOTE
    from ..referring.cifs import CIFSConfig
    from ..referring.cli import build
    from .jobs import JobError, ReferringModel, make_referrer

    net, enc, untrained, _ = build(args)
    ref = ReferringModel(net, enc, untrained)
    if untrained:
        print(f"WARNING: {UNTRAINED_NOTE.format(sam=net.sam.cfg.name, ref=net.cfg.name)}", file=sys.stderr)
    try:
        return make_referrer(
            ref,
            {i + 1: t for i, t in enumerate(args.text)},
            memory=args.memory,
            precision=args.precision,
            cifs=CIFSConfig(enabled=not args.no_cifs),
        )
    except JobError as exc:
        raise ValueError(str(exc)) from None


def _live_model(args: argparse.Namespace):
    from ..modeling.embedded import build_demo_model
    from ..modeling import build_model

    if args.untrained and args.checkpoint is not None:
        raise ValueError("--untrained and --checkpoint exclude each other")
    if args.model is None and args.image_size is None:
        return build_demo_model(args.checkpoint, device=args.device, untrained=args.untrained)
    return build_model(
        args.model or ("nano" if args.checkpoint is None else None),
        image_size=args.image_size,
        checkpoint=args.checkpoint,
        device=args.device,
    )
