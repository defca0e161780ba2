"""The ``surgsam`` command line.

Each subcommand lives in its own module exposing ``register(subparsers)``, which adds a
subparser with ``set_defaults(func=handler)``; ``handler(args) -> int`` is the exit code.
The modules in :data:`SUBCOMMAND_MODULES` are imported when the parser is built.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

SUBCOMMAND_MODULES = [
    "surgsam.hub",
    "surgsam.demo",
    "surgsam.engine.cli",
    "surgsam.data.cli",
    "surgsam.eval.cli",
    "surgsam.train.cli",
    "surgsam.referring.cli",
    "surgsam.app.cli",
    "surgsam.export.cli",
    "surgsam.bench.cli",
]


#: Subcommands that compute with torch and take ``--threads`` (``train`` has its own).
THREADED_COMMANDS = ("demo", "segment", "refer", "live", "app", "eval", "export")


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    parser = argparse.ArgumentParser(
        prog="surgsam",
        description="Real-time segmentation of surgical video: SAM 2, Surgical SAM 2 (EFP), ReSurgSAM2.",
    )
    parser.add_argument("--version", action="version", version=f"surgsam {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    _register_presets(sub)
    for path in SUBCOMMAND_MODULES:
        mod = importlib.import_module(path)
        register = getattr(mod, "register", None)
        if register is None:
            raise AttributeError(f"{path} is listed as a surgsam subcommand but has no register(subparsers)")
        register(sub)
    for name in THREADED_COMMANDS:
        p = sub.choices.get(name)
        if p is not None:
            p.add_argument(
                "--threads",
                default="auto",
                help="torch CPU threads: a number, or auto (default) = the cores the 1-minute load "
                "average leaves free, at least 1 (torch's one-per-core default collapses on a busy machine)",
            )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the process exit code."""
    parser = build_parser()
    args = parser.parse_args(list(argv) if argv is not None else None)
    func = getattr(args, "func", None)
    if func is None:
        parser.print_help(sys.stderr)
        return 2
    try:
        if args.command in THREADED_COMMANDS and hasattr(args, "threads"):
            from .runtime import torch_threads

            with torch_threads(args.threads):
                return int(func(args) or 0)
        return int(func(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


# ---------------------------------------------------------------------- surgsam presets
def _register_presets(sub) -> None:
    p = sub.add_parser("presets", help="list the model presets (parameters, default image size)")
    p.set_defaults(func=_cmd_presets)


def _cmd_presets(args: argparse.Namespace) -> int:
    import torch

    from .modeling import EMBEDDED_MODELS, SAM2Model, get_preset, list_presets
    from .modeling.embedded import is_embedded_available

    rows = [("preset", "params", "image size", "trunk (dim, stages)", "version")]
    for name in list_presets():
        cfg = get_preset(name)
        with torch.device("meta"):  # shapes only: counting needs no memory or init time
            n = sum(p.numel() for p in SAM2Model(cfg).parameters())
        rows.append(
            (
                name,
                f"{n / 1e6:.1f}M",
                str(cfg.image_size),
                f"{cfg.hiera.embed_dim}, {list(cfg.hiera.stages)}",
                cfg.version,
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())
    print(
        "\naliases: sam2_hiera_{t,s,b+,l}, sam2.1_hiera_{t,s,b+,l}; any image size that is a multiple of 32 "
        "(512 for the surgical models)"
    )
    print("\nembedded models (pass the name as --checkpoint / build_model(checkpoint=...)):")
    for m in EMBEDDED_MODELS.values():
        state = "" if is_embedded_available(m.name) else " [not in this installation]"
        card = f"\n    model card: {m.card}" if m.card else ""
        print(f"  {m.name}: {m.summary}{state}{card}")
    return 0


def run() -> int:
    """Console entry point: like :func:`main`, but a user error (bad input, missing file,
    wrong checkpoint, an output file that could not be written) prints one line instead of a
    traceback and exits with status 2."""
    try:
        return main()
    except (ValueError, FileNotFoundError, KeyError, TypeError, ImportError) as e:
        msg = e.args[0] if isinstance(e, KeyError) and e.args else e
        print(f"surgsam: error: {msg}", file=sys.stderr)
        return 2
    except OSError as e:
        from .io.atomic import OutputError  # imported only here: it loads surgsam.io

        if not isinstance(e, OutputError):
            raise
        print(f"surgsam: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(run())
