"""The ``surgsam`` command line, the lazy top-level API and the demo."""

from __future__ import annotations

import subprocess
import sys
import types
from pathlib import Path

import pytest

import surgsam
from surgsam import cli

ROOT = Path(__file__).resolve().parent.parent


def _run(*args: str) -> subprocess.CompletedProcess:
    env = {"PYTHONPATH": str(ROOT / "src"), "PATH": "/usr/bin:/bin"}
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, env=env, cwd=ROOT, timeout=120)


def test_import_is_light():
    code = "import sys, surgsam; print(sorted(m for m in ('torch', 'numpy', 'PIL') if m in sys.modules))"
    r = _run("-c", code)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[]"


def test_help_and_subpackages_do_not_load_torch():
    """The CLI parser imports every subcommand module; none of them (nor the packages holding
    them) loads torch until a command runs."""
    code = (
        "import sys, surgsam.cli, surgsam.engine, surgsam.train, surgsam.referring, surgsam.export; "
        "surgsam.cli.build_parser(); print('torch' in sys.modules)"
    )
    r = _run("-c", code)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "False"


def test_lazy_subpackage_exports():
    import surgsam.engine as engine
    import surgsam.train as train
    from surgsam.engine.session import VideoSegmenter
    from surgsam.train.trainer import Trainer

    assert engine.VideoSegmenter is VideoSegmenter and train.Trainer is Trainer
    assert "segment_video" in dir(engine) and set(engine.__all__) >= {"VideoSegmenter", "Prompt"}
    with pytest.raises(AttributeError, match="'surgsam.train' has no attribute 'Nope'"):
        train.Nope  # noqa: B018


def test_lazy_public_api():
    from surgsam.modeling import build_model
    from surgsam.predictor import ImagePredictor

    assert surgsam.build_model is build_model
    assert surgsam.ImagePredictor is ImagePredictor
    assert "ImagePredictor" in dir(surgsam)
    assert isinstance(surgsam.__version__, str) and surgsam.__version__
    with pytest.raises(AttributeError, match="no attribute 'nothing_here'"):
        surgsam.nothing_here  # noqa: B018


def test_root_package_uses_the_subpackages_lazy_exports():
    """``surgsam`` exports lazily the way every subpackage does (one mechanism, surgsam._lazy)."""
    import surgsam.engine as engine

    assert set(surgsam.__all__) >= {"__version__", "build_model", "VideoSegmenter"}
    assert surgsam.VideoSegmenter is engine.VideoSegmenter
    assert surgsam.__getattr__.__module__ == engine.__getattr__.__module__ == "surgsam._lazy"


LAZY_PACKAGES = ["surgsam", "surgsam.engine", "surgsam.export", "surgsam.referring", "surgsam.train"]


@pytest.mark.parametrize("package", LAZY_PACKAGES)
def test_type_checking_imports_mirror_the_lazy_exports(package):
    """Each lazy package repeats its exports as ``if TYPE_CHECKING:`` imports (so mypy and editors
    see real types): the two lists must name the same objects from the same modules, and every
    export must resolve to the object its module defines."""
    import ast
    import importlib

    module = importlib.import_module(package)
    tree = ast.parse(Path(module.__file__).read_text())
    guarded: dict[str, str] = {}
    for node in tree.body:
        if isinstance(node, ast.If) and getattr(node.test, "id", None) == "TYPE_CHECKING":
            for imp in node.body:
                assert isinstance(imp, ast.ImportFrom) and imp.level == 1, ast.dump(imp)
                for alias in imp.names:
                    assert alias.asname == alias.name, f"{alias.name}: use 'import X as X' (explicit re-export)"
                    guarded[alias.name] = "." + (imp.module or "")
    assert guarded == module._EXPORTS
    for name, sub in module._EXPORTS.items():
        assert getattr(module, name) is getattr(importlib.import_module(sub, package), name)


def test_star_import_works():
    ns: dict = {}
    exec("from surgsam import *", ns)
    assert "build_model" in ns and "ImagePredictor" in ns


def test_version_and_module_entry_point():
    r = _run("-m", "surgsam", "--version")
    assert r.returncode == 0 and r.stdout.startswith("surgsam "), r.stderr


def test_presets(capsys):
    assert cli.main(["presets"]) == 0
    out = capsys.readouterr().out
    assert "sam2.1_hiera_small" in out and "46.1M" in out and "nano" in out and "1024" in out


def test_no_command_prints_help(capsys):
    assert cli.main([]) == 2
    assert "COMMAND" in capsys.readouterr().err


def test_subcommands_registered(capsys):
    with pytest.raises(SystemExit):
        cli.main(["--help"])
    out = capsys.readouterr().out
    for cmd in ("presets", "download", "demo"):
        assert cmd in out


def test_every_subcommand_is_registered(capsys):
    """No subcommand is optional: each listed module registers its commands."""
    parser = cli.build_parser()
    for cmd in ("presets", "download", "demo", "segment", "eval", "train", "refer", "app", "live", "export"):
        with pytest.raises(SystemExit) as exit_:
            parser.parse_args([cmd, "--help"])
        assert exit_.value.code == 0, cmd
    capsys.readouterr()


def test_missing_subcommand_module_is_an_error(monkeypatch):
    monkeypatch.setattr(cli, "SUBCOMMAND_MODULES", ["surgsam.hub", "surgsam.nowhere.cli"])
    with pytest.raises(ModuleNotFoundError, match="surgsam.nowhere"):
        cli.build_parser()


def test_broken_subcommand_module_propagates(monkeypatch):
    """A module that exists but fails to import (here: a missing dependency) is an error."""

    def fake_import(path):
        if path == "surgsam._broken_cli":
            raise ModuleNotFoundError("No module named 'some_dependency'", name="some_dependency")
        return types.SimpleNamespace(register=lambda sub: None)

    monkeypatch.setattr(cli, "SUBCOMMAND_MODULES", ["surgsam._broken_cli"])
    monkeypatch.setattr(cli.importlib, "import_module", fake_import)
    with pytest.raises(ModuleNotFoundError, match="some_dependency"):
        cli.build_parser()


def test_module_without_register_is_an_error(monkeypatch):
    monkeypatch.setattr(cli, "SUBCOMMAND_MODULES", ["surgsam.predictor"])
    with pytest.raises(AttributeError, match="register"):
        cli.build_parser()


def test_demo(tmp_path, capsys):
    pytest.importorskip("av")
    assert cli.main(["demo", "--out", str(tmp_path), "--frames", "6"]) == 0
    out = capsys.readouterr().out
    assert "model: surgsam-nano-synth (nano" in out and "untrained" not in out  # the embedded model
    assert "J&F" in out and "FPS" in out and "peak memory" in out
    from surgsam.io import read_palette_png

    pngs = sorted((tmp_path / "masks").glob("*.png"))
    assert [p.name for p in pngs] == [f"{i:05d}.png" for i in range(6)]
    assert read_palette_png(pngs[0]).shape == (256, 320)
    import av

    with av.open(str(tmp_path / "overlay.mp4")) as c:
        assert sum(1 for _ in c.decode(video=0)) == 6


def test_demo_untrained(tmp_path, capsys):
    pytest.importorskip("av")
    assert cli.main(["demo", "--out", str(tmp_path), "--frames", "3", "--untrained"]) == 0
    out = capsys.readouterr().out
    assert "untrained network (random weights)" in out and "model: untrained (nano" in out
    with pytest.raises(ValueError, match="exclude each other"):
        cli.main(["demo", "--out", str(tmp_path), "--untrained", "--checkpoint", "x.pt"])


def test_demo_rejects_a_one_frame_clip(tmp_path):
    with pytest.raises(ValueError, match="at least 2"):
        cli.main(["demo", "--out", str(tmp_path), "--frames", "1"])


def test_console_entry_prints_user_errors_without_traceback(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(
        "sys.argv",
        [
            "surgsam",
            "segment",
            str(tmp_path / "missing.mp4"),
            "--model",
            "nano",
            "--points",
            "1,1",
            "--out",
            str(tmp_path / "o"),
        ],
    )
    assert cli.run() == 2
    err = capsys.readouterr().err
    assert err.startswith("surgsam: error:") and "missing.mp4" in err and "Traceback" not in err
