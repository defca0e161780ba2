"""``python -m surgsam.export.run`` before any graph runs: its prompt options are the engine's
(:mod:`surgsam.io.prompt_args`, torch-free) and are refused up front with the engine's messages;
an option only the engine has is refused with the reason, not ignored (issue 18 follow-up)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from surgsam.export.run import ENGINE_ONLY, main

SRC = Path(__file__).resolve().parents[2] / "src"

NO_TORCH = textwrap.dedent("""
    import sys

    class NoTorch:
        def find_spec(self, name, path=None, target=None):
            if name == "torch" or name.startswith("torch."):
                raise ImportError(f"blocked: {name}")
            return None

    sys.meta_path.insert(0, NoTorch())
    import surgsam.io.prompt_args
    from surgsam.export.run import main

    rc = main(sys.argv[1:])
    leaked = [m for m in sys.modules if m == "torch" or m.startswith("torch.")]
    assert not leaked, leaked
    print("rc", rc)
""")


def test_labels_count_checked_up_front_without_torch(tmp_path):
    """2 points and 1 label: the engine's message, before the export folder or the video is
    read (the runner used to pass the count on and fail later, on the first frame), in a
    process where importing torch raises."""
    out = tmp_path / "out"
    argv = [str(tmp_path / "no_export"), str(tmp_path / "no_video"), "--points", "10,10;20,20", "--labels", "1"]
    proc = subprocess.run(
        [sys.executable, "-c", NO_TORCH, *argv, "--out", str(out)],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(SRC)},
        timeout=120,
    )
    assert proc.stdout.strip() == "rc 2", proc.stderr[-2000:]
    assert "error: --labels has 1 values for 2 points" in proc.stderr
    assert not out.exists()


@pytest.mark.parametrize(
    "extra,err",
    [
        (["--points", "5,5;6,6", "--labels", "1,2"], "--labels must be 1 (positive) or 0 (negative)"),
        (["--points", "5,5", "--labels", "x"], "cannot parse --labels 'x'"),
        (["--box", "1,2,3,4", "--labels", "1"], "--labels goes with --points"),
        (["--points", "1,2,3"], "--points must be groups of 2 comma-separated numbers"),
        (
            ["--box", "5,5,9,9", "--frame", "3", "--max-frames", "3"],
            "--max-frames 3 stops before the prompt on frame 3",
        ),
        (["--box", "5,5,9,9", "--frame", "-1"], "--frame must be >= 0"),
    ],
)
def test_bad_prompts_refused_before_any_work(tmp_path, capsys, extra, err):
    out = tmp_path / "out"
    assert main([str(tmp_path / "no_export"), str(tmp_path / "no_video"), *extra, "--out", str(out)]) == 2
    assert f"error: {err}" in capsys.readouterr().err
    assert not out.exists()


@pytest.mark.parametrize(
    "extra,err",
    [
        (["--direction", "both"], "--direction: the ONNX runner tracks forward only"),
        (["--direction=reverse"], "--direction: the ONNX runner tracks forward only"),
        (["--prompts", "p.json"], "--prompts: the ONNX runner takes one prompt"),
        (["--object", "2:box=1,2,3,4"], "--object: the ONNX runner takes one prompt"),
        (["--clicks", "replace"], "--clicks: the ONNX runner takes no corrections"),
        (["--text", "the grasper"], "--text: the ONNX runner has no text prompts"),
        (["--memory", "dlm"], "the ONNX runner has no dlm memory (fifo and efp only)"),
        (["--memory", "lru"], "the ONNX runner's memory policies are fifo, efp, not 'lru'"),
        (["--colour", "red"], "unrecognized arguments: --colour red"),
    ],
)
def test_engine_only_options_refused_with_the_reason(tmp_path, capsys, extra, err):
    with pytest.raises(SystemExit) as e:
        main(["export", "video", "--mask", "m.png", "--out", str(tmp_path / "out"), *extra])
    assert e.value.code == 2
    assert err in capsys.readouterr().err


def test_help_states_the_limits(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    for phrase in ("--frame", "tracked forward only", "no corrections", "no dlm", "no text prompts", "surgsam segment"):
        assert phrase in text, phrase
    assert set(ENGINE_ONLY) == {"--direction", "--prompts", "--object", "--clicks", "--text"}


def test_runner_cli_passes_the_video_length_as_segment_does(tmp_path, monkeypatch):
    """The length scales the object pointers' temporal encoding (clips under 16 frames), so the
    runner must hand it to the segmenter as ``surgsam segment`` does, or the two commands give
    different masks on short clips; the opened video is closed when the export cannot load."""
    import numpy as np
    from PIL import Image

    import surgsam.export.runner as runner

    frames = tmp_path / "frames"
    frames.mkdir()
    for t in range(5):
        Image.fromarray(np.full((32, 40, 3), 40 * t, np.uint8)).save(frames / f"{t:05d}.png")
    seen = {}

    class Recorder:
        def __init__(self, export, **kw):
            seen.update(kw)
            raise RuntimeError("recorded")

    monkeypatch.setattr(runner, "OnnxVideoSegmenter", Recorder)
    with pytest.raises(RuntimeError, match="recorded"):
        main([str(tmp_path / "export"), str(frames), "--box", "2,2,9,9", "--out", str(tmp_path / "out")])
    assert seen["num_frames"] == 5
