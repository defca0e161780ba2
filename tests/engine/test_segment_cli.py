"""`surgsam segment` and `segment_video` end to end on a small mp4 (nano preset, random weights)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from surgsam.cli import main
from surgsam.engine import Prompt, segment_video
from surgsam.io import read_palette_png, write_palette_png, write_video
from surgsam.modeling import build_model
from synthetic import moving_objects_video

pytest.importorskip("av")


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    d = tmp_path_factory.mktemp("clip")
    frames, gt = moving_objects_video(n=8, h=120, w=160)
    write_video(d / "clip.mp4", frames, fps=10)
    label = np.zeros((120, 160), np.uint8)
    label[gt[1][0]] = 1
    label[gt[2][0]] = 2
    write_palette_png(d / "first.png", label)
    return d, frames, gt


def test_segment_cli_writes_masks_and_overlay(clip, capsys):
    d, frames, gt = clip
    out = d / "out"
    rc = main(
        [
            "segment",
            str(d / "clip.mp4"),
            "--model",
            "nano",
            "--mask",
            str(d / "first.png"),
            "--memory",
            "efp",
            "--out",
            str(out),
            "--overlay",
            str(d / "ov.mp4"),
            "--no-progress",
        ]
    )
    assert rc == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["frames"] == 8 and summary["memory"] == "efp"
    pngs = sorted(out.glob("*.png"))
    assert [p.name for p in pngs] == [f"{i:05d}.png" for i in range(8)]
    first = read_palette_png(pngs[0])
    assert set(np.unique(first)) <= {0, 1, 2} and first.shape == (120, 160)
    import av

    with av.open(str(d / "ov.mp4")) as c:
        assert sum(1 for _ in c.decode(video=0)) == 8


def test_segment_cli_points_per_object_layout(clip, tmp_path):
    d, _, _ = clip
    rc = main(
        [
            "segment",
            str(d / "clip.mp4"),
            "--model",
            "nano",
            "--points",
            "60,70;10,10",
            "--labels",
            "1,0",
            "--obj-id",
            "4",
            "--frame",
            "2",
            "--format",
            "per-object",
            "--out",
            str(tmp_path),
            "--no-progress",
        ]
    )
    assert rc == 0
    assert sorted(p.name for p in (tmp_path / "004").glob("*.png"))[0] == "00002.png"


def test_segment_cli_trace_gives_the_same_masks(clip, tmp_path, monkeypatch):
    """``--trace`` reaches the session (the per-frame calls replayed from traces) and writes
    the masks of the eager run; with ``--fast on`` (compiled) it is refused up front."""
    from surgsam.engine import session as session_module

    d, _, _ = clip
    made = []
    init = session_module.VideoSegmenter.__init__

    def recording(self, *args, **kwargs):
        init(self, *args, **kwargs)
        made.append(self.fast_path.trace)

    monkeypatch.setattr(session_module.VideoSegmenter, "__init__", recording)
    import torch

    ckpt = tmp_path / "nano.pt"  # one set of random weights for both runs
    torch.save({"model": build_model("nano").state_dict()}, ckpt)
    base = [
        "segment",
        str(d / "clip.mp4"),
        "--model",
        "nano",
        "--checkpoint",
        str(ckpt),
        "--mask",
        str(d / "first.png"),
    ]
    base.append("--no-progress")
    assert main([*base, "--out", str(tmp_path / "eager")]) == 0
    assert main([*base, "--out", str(tmp_path / "traced"), "--trace"]) == 0
    assert made == [False, True]
    for a, b in zip(sorted((tmp_path / "eager").glob("*.png")), sorted((tmp_path / "traced").glob("*.png"))):
        assert np.array_equal(read_palette_png(a), read_palette_png(b)), a.name
    with pytest.raises(ValueError, match="--trace .* --fast on"):
        main([*base, "--out", str(tmp_path / "x"), "--trace", "--fast", "on"])


@pytest.mark.parametrize(
    "extra,err",
    [
        (["--points", "500,10"], "outside"),
        (["--points", "1,2,3"], "groups of 2"),
        (["--box", "10,10,5,5"], "x1 > x0"),
        (["--points", "5,5", "--labels", "1,1"], "--labels has 2 values for 1 points"),
        # the one-object options are read by surgsam.io.prompt_args, shared with the ONNX runner
        (["--points", "5,5;6,6", "--labels", "1,2"], r"--labels must be 1 \(positive\) or 0 \(negative\)"),
        (["--box", "10,10,50,50", "--labels", "1"], "--labels goes with --points"),
        (["--prompts", "p.json", "--labels", "1"], "--labels goes with --points; in a prompts file"),
    ],
)
def test_segment_cli_bad_prompts(clip, tmp_path, extra, err):
    d, _, _ = clip
    with pytest.raises(ValueError, match=err):
        main(["segment", str(d / "clip.mp4"), "--model", "nano", "--out", str(tmp_path), "--no-progress", *extra])


def test_segment_video_late_objects_and_unused_prompts(clip):
    d, frames, gt = clip
    model = build_model("nano")
    prompts = [Prompt(1, 0, mask=gt[1][0]), Prompt(2, 3, mask=gt[2][3])]
    res = list(segment_video(frames, prompts, model, memory="dlm"))
    assert [r.obj_ids for r in res] == [[1]] * 3 + [[1, 2]] * 5
    with pytest.raises(ValueError, match="never used"):
        list(segment_video(frames, [Prompt(1, 20, mask=gt[1][0])], model))
    with pytest.raises(ValueError, match="at least one prompt"):
        list(segment_video(frames, [], model))


# -- reliability (issue 17): output folder rules, atomic outputs, refusals before any work ------
def _segment_args(clip_path, out, *extra):
    return [
        "segment",
        str(clip_path),
        "--model",
        "nano",
        "--points",
        "60,70",
        "--out",
        str(out),
        "--no-progress",
        *extra,
    ]


def _cli(monkeypatch, capsys, argv) -> tuple[int, str]:
    """The console entry point (``surgsam ...``): exit code and stderr."""
    from surgsam.cli import run

    monkeypatch.setattr("sys.argv", ["surgsam", *argv])
    rc = run()
    return rc, capsys.readouterr().err


def test_segment_out_folder_rules_and_manifest(clip, tmp_path, monkeypatch, capsys):
    d, frames, _ = clip
    out = tmp_path / "out"
    assert main(_segment_args(d / "clip.mp4", out)) == 0
    man = json.loads((out / "surgsam_manifest.json").read_text())
    assert man["command"] == "segment" and man["frames_written"] == 8 and man["model"] == "nano"
    assert man["checkpoint"] == "untrained" and man["objects"] == [1] and man["arguments"]["points"] == "60,70"
    assert sorted(p.name for p in out.iterdir()) == [f"{i:05d}.png" for i in range(8)] + ["surgsam_manifest.json"]
    rc, err = _cli(monkeypatch, capsys, _segment_args(d / "clip.mp4", out))
    assert rc == 2 and "is not empty" in err and "--overwrite" in err and "Traceback" not in err
    # a shorter video into the same folder with --overwrite: no frame of the old run is left
    write_video(tmp_path / "short.mp4", frames[:3], fps=10)
    assert main(_segment_args(tmp_path / "short.mp4", out, "--overwrite")) == 0
    assert sorted(p.name for p in out.iterdir()) == [f"{i:05d}.png" for i in range(3)] + ["surgsam_manifest.json"]
    assert json.loads((out / "surgsam_manifest.json").read_text())["frames_written"] == 3
    rc, err = _cli(monkeypatch, capsys, _segment_args(d / "clip.mp4", d / "clip.mp4"))
    assert rc == 2 and "is a file, not a folder" in err


def test_segment_refused_while_another_run_writes_the_folder(clip, tmp_path, monkeypatch, capsys):
    from surgsam.io.outdir import OutputFolder

    d, _, _ = clip
    with OutputFolder(tmp_path / "out"):
        rc, err = _cli(monkeypatch, capsys, _segment_args(d / "clip.mp4", tmp_path / "out", "--overwrite"))
    assert rc == 2 and "another surgsam run" in err and "Traceback" not in err
    assert list((tmp_path / "out").glob("*.png")) == []


def test_segment_prompt_frame_beyond_the_video_refused_up_front(clip, tmp_path, monkeypatch, capsys):
    from surgsam.engine import VideoSegmenter

    d, _, _ = clip
    calls = []
    monkeypatch.setattr(VideoSegmenter, "step", lambda self, frame: calls.append(1))
    rc, err = _cli(monkeypatch, capsys, _segment_args(d / "clip.mp4", tmp_path / "out", "--frame", "999"))
    assert rc == 2 and "has 8 frames (0..7); prompts on frames [999]" in err
    assert calls == [] and list((tmp_path / "out").iterdir()) == []


def test_segment_refuses_a_still_image_named_mp4(tmp_path, monkeypatch, capsys):
    from PIL import Image

    Image.fromarray(np.zeros((40, 60, 3), np.uint8)).save(tmp_path / "still.mp4", format="PNG")
    rc, err = _cli(monkeypatch, capsys, _segment_args(tmp_path / "still.mp4", tmp_path / "out"))
    assert rc == 2 and "is a still image (png), not a video" in err
    assert not (tmp_path / "out").exists()


def test_segment_overlay_full_disk_keeps_the_earlier_overlay(clip, tmp_path, monkeypatch, capsys):
    import errno

    import av

    d, _, _ = clip
    out, ov = tmp_path / "out", tmp_path / "ov.mp4"
    assert main(_segment_args(d / "clip.mp4", out, "--overlay", str(ov))) == 0
    before = ov.read_bytes()
    real, n = av.container.OutputContainer.mux, []

    def mux(self, packets):  # the disk fills up after the first packet of the new overlay
        n.append(1)
        if len(n) > 1:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(self, packets)

    monkeypatch.setattr(av.container.OutputContainer, "mux", mux)
    rc, err = _cli(monkeypatch, capsys, _segment_args(d / "clip.mp4", out, "--overlay", str(ov), "--overwrite"))
    assert rc == 2 and "Traceback" not in err and "no space left on device" in err and "ov.mp4" in err
    assert ov.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["out", "ov.mp4"]
    assert not (out / "surgsam_manifest.json").exists()  # the folder no longer holds one finished run
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temporary file, no lock left


_LIMITED_RUN = """
import resource, signal, sys
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (200, 200))
from surgsam.cli import run
sys.argv = ["surgsam", *sys.argv[1:]]
sys.exit(run())
"""


def test_segment_file_size_limit_keeps_earlier_masks(clip, tmp_path):
    """`ulimit -f` (as on a full disk): the earlier valid 00000.png is untouched, the command
    ends with a message naming the frame, not a traceback."""
    import subprocess
    import sys

    d, _, _ = clip
    out = tmp_path / "out"
    assert main(_segment_args(d / "clip.mp4", out)) == 0
    before = {p.name: p.read_bytes() for p in out.glob("*.png")}
    proc = subprocess.run(
        [sys.executable, "-c", _LIMITED_RUN, *_segment_args(d / "clip.mp4", out, "--overwrite")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr and "00000.png (frame 0): file too large" in proc.stderr
    assert {p.name: p.read_bytes() for p in out.glob("*.png")} == before
    # the manifest goes when an --overwrite run starts writing: the folder no longer claims a finished run
    assert sorted(p.name for p in out.iterdir()) == sorted(before)


def test_segment_half_precision_checkpoint_needs_the_flag(clip, tmp_path, monkeypatch, capsys):
    import torch

    d, _, _ = clip
    sd = {k: v.half() for k, v in build_model("nano").state_dict().items()}
    torch.save({"model": sd}, tmp_path / "half.pt")
    argv = _segment_args(d / "clip.mp4", tmp_path / "out", "--checkpoint", str(tmp_path / "half.pt"))
    rc, err = _cli(monkeypatch, capsys, argv)
    assert rc == 2 and "half precision" in err and "--allow-half-weights" in err
    assert main([*argv, "--allow-half-weights"]) == 0


def test_segment_defaults_to_the_embedded_model_and_takes_threads(clip, tmp_path, capsys):
    """No --checkpoint and no --model: the embedded surgsam-nano-synth (as demo, refer and app);
    --threads sets torch's CPU threads for the command and the previous setting comes back."""
    import torch

    from surgsam.modeling.embedded import is_embedded_available

    d, _, _ = clip
    before = torch.get_num_threads()
    rc = main(
        [
            "segment",
            str(d / "clip.mp4"),
            "--mask",
            str(d / "first.png"),
            "--out",
            str(tmp_path / "a"),
            "--threads",
            "1",
            "--no-progress",
        ]
    )
    assert rc == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["torch_threads"] == 1 and torch.get_num_threads() == before
    if is_embedded_available("surgsam-nano-synth"):
        assert summary["checkpoint"] == "surgsam-nano-synth" and summary["model"] == "nano"
    rc = main(
        [
            "segment",
            str(d / "clip.mp4"),
            "--mask",
            str(d / "first.png"),
            "--out",
            str(tmp_path / "b"),
            "--untrained",
            "--no-progress",
        ]
    )
    captured = capsys.readouterr()
    assert rc == 0 and json.loads(captured.out.strip().splitlines()[-1])["checkpoint"] == "untrained"
    assert "random weights" in captured.err
    with pytest.raises(ValueError, match="--threads"):
        main(
            [
                "segment",
                str(d / "clip.mp4"),
                "--mask",
                str(d / "first.png"),
                "--out",
                str(tmp_path / "c"),
                "--threads",
                "0",
                "--no-progress",
            ]
        )


def test_auto_threads_leaves_busy_cores_out():
    from surgsam.runtime import auto_threads

    assert auto_threads(cpus=2, load=0.1) == 2
    assert auto_threads(cpus=2, load=1.2) == 1
    assert auto_threads(cpus=2, load=30.0) == 1
    assert auto_threads(cpus=16, load=3.4) == 13


def test_segment_prompts_file_several_objects_on_several_frames(clip, tmp_path, capsys):
    d, _, _ = clip
    prompts = [
        {"obj_id": 1, "frame": 0, "mask": str(d / "first.png"), "mask_id": 1},
        {"obj_id": 7, "frame": 0, "points": [[60, 70], [10, 10]], "labels": [1, 0]},
        {"obj_id": 9, "frame": 3, "box": [100, 80, 150, 118]},
    ]
    (tmp_path / "p.json").write_text(json.dumps(prompts))
    out = tmp_path / "out"
    rc = main(
        [
            "segment",
            str(d / "clip.mp4"),
            "--prompts",
            str(tmp_path / "p.json"),
            "--untrained",
            "--format",
            "per-object",
            "--out",
            str(out),
            "--no-progress",
        ]
    )
    assert rc == 0
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == ["001", "007", "009"]
    assert sorted(p.name for p in (out / "009").glob("*.png"))[0] == "00003.png"
    capsys.readouterr()


@pytest.mark.parametrize(
    "entry,err",
    [
        ({"frame": 0, "box": [1, 1, 5, 5]}, "obj_id is missing"),
        ({"obj_id": 300, "box": [1, 1, 5, 5]}, "1..255"),
        ({"obj_id": 1, "points": [[1, 2, 3]]}, "P x 2"),
        ({"obj_id": 1, "mask": "nope.png"}, "mask file not found"),
        ({"obj_id": 1, "frame": -1, "box": [1, 1, 5, 5]}, "non-negative"),
        ({"obj_id": 1, "colour": "red", "box": [1, 1, 5, 5]}, "unknown keys"),
        ({"obj_id": 1}, "needs a mask"),
    ],
)
def test_prompts_file_errors_name_the_entry(tmp_path, entry, err):
    from surgsam.engine import read_prompts

    (tmp_path / "p.json").write_text(json.dumps([{"obj_id": 2, "box": [1, 1, 9, 9]}, entry]))
    with pytest.raises(ValueError, match=err) as e:
        read_prompts(tmp_path / "p.json")
    assert "prompt 1" in str(e.value)
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(ValueError, match="not a JSON prompts file"):
        read_prompts(tmp_path / "bad.json")


def test_segment_keeps_the_input_frame_names(clip, tmp_path, capsys):
    """A folder of frame100.jpg ... gives frame100.png ... (DAVIS tools match by name)."""
    from PIL import Image

    d, frames, _ = clip
    src = tmp_path / "frames"
    src.mkdir()
    for i, f in enumerate(frames[:4]):
        Image.fromarray(f).save(src / f"frame{100 + 10 * i}.jpg")
    out = tmp_path / "out"
    assert (
        main(["segment", str(src), "--mask", str(d / "first.png"), "--untrained", "--out", str(out), "--no-progress"])
        == 0
    )
    assert sorted(p.name for p in out.glob("*.png")) == ["frame100.png", "frame110.png", "frame120.png", "frame130.png"]
    capsys.readouterr()
