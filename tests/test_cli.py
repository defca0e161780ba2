"""The ``surgsam`` command line, the lazy top-level API and the demo."""

from __future__ import annotations

import subprocess
import sys
import types
from pathlib import Path

import numpy as np
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


def test_lazy_public_api():
    from surgsam.modeling import build_model
    from surgsam.predictor import ImagePredictor

    assert surgsam.build_model is build_model
    assert surgsam.ImagePredictor is ImagePredictor
    assert "ImagePredictor" in dir(surgsam)
    assert isinstance(surgsam.__version__, str) and surgsam.__version__
    with pytest.raises(AttributeError, match="no attribute 'nothing_here'"):
        surgsam.nothing_here  # noqa: B018


def test_lazy_name_of_missing_module(monkeypatch):
    monkeypatch.setitem(surgsam._LAZY, "Ghost", "surgsam.not_written_yet")
    with pytest.raises(AttributeError, match="not part of this installation"):
        surgsam.Ghost  # noqa: B018


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


@pytest.mark.parametrize("disk_check", [True, False], ids=["on_disk", "by_import"])
def test_missing_subcommand_modules_are_skipped(monkeypatch, disk_check):
    monkeypatch.setattr(cli, "SUBCOMMAND_MODULES", ["surgsam.hub", "surgsam.nowhere.cli", "surgsam.data.nowhere"])
    if not disk_check:  # e.g. a zipped install: the ModuleNotFoundError decides
        monkeypatch.setattr(cli, "_exists_on_disk", lambda path: None)
    parser = cli.build_parser()
    assert parser.parse_args(["download", "--list"]).func is not None


def test_broken_subcommand_module_propagates(monkeypatch):
    """A module that exists but fails to import (here: a missing dependency) is an error."""
    def fake_import(path):
        if path == "surgsam._broken_cli":
            raise ModuleNotFoundError("No module named 'some_dependency'", name="some_dependency")
        return types.SimpleNamespace(register=lambda sub: None)

    monkeypatch.setattr(cli, "SUBCOMMAND_MODULES", ["surgsam._broken_cli"])
    monkeypatch.setattr(cli, "_exists_on_disk", lambda path: True)
    monkeypatch.setattr(cli.importlib, "import_module", fake_import)
    with pytest.raises(ModuleNotFoundError, match="some_dependency"):
        cli.build_parser()


def test_module_without_register_is_an_error(monkeypatch):
    monkeypatch.setattr(cli, "SUBCOMMAND_MODULES", ["surgsam.predictor"])
    with pytest.raises(AttributeError, match="register"):
        cli.build_parser()


def test_demo(tmp_path, capsys):
    assert cli.main(["demo", "--out", str(tmp_path), "--runs", "2"]) == 0
    out = capsys.readouterr().out
    assert "untrained network: masks are not meaningful" in out
    assert "set_image" in out and "predict" in out
    from PIL import Image

    mask = np.asarray(Image.open(tmp_path / "mask.png"))
    overlay = np.asarray(Image.open(tmp_path / "overlay.png"))
    assert mask.shape == (256, 256) and set(np.unique(mask)) <= {0, 255}
    assert overlay.shape == (256, 256, 3)


def test_synthetic_frame_box_covers_the_bar():
    from surgsam.demo import synthetic_frame

    frame, (x0, y0, x1, y1) = synthetic_frame()
    assert frame.shape == (256, 256, 3) and frame.dtype == np.uint8
    assert 0 <= x0 < x1 <= 256 and 0 <= y0 < y1 <= 256
    grey = (np.abs(frame[..., 0].astype(int) - frame[..., 1]) < 20) & (frame[..., 1] > 120)
    ys, xs = np.nonzero(grey)
    assert xs.min() >= x0 and xs.max() < x1 and ys.min() >= y0 and ys.max() < y1
