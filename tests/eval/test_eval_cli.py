"""``surgsam eval`` through a local argparse harness, and torchrun sharding with two CPU ranks."""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from surgsam.data.synth import SynthConfig, generate
from surgsam.eval.cli import register

SRC = Path(__file__).resolve().parents[2] / "src"


def run_cli(*argv: str) -> int:
    p = argparse.ArgumentParser(prog="surgsam")
    register(p.add_subparsers(dest="cmd", required=True))
    args = p.parse_args(list(argv))
    return args.func(args)


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("synth_eval")
    generate(
        root, SynthConfig(width=96, height=80, frames=10), videos=5, seed=11, valid=4, overwrite=True, progress=False
    )
    return root


def test_e2e_oracle_saves_predictions_that_rescore_to_100(data, tmp_path, capsys):
    assert (
        run_cli(
            "eval",
            "--e2e",
            "--data",
            str(data),
            "--split",
            "valid",
            "--segmenter",
            "oracle",
            "--save-pred",
            str(tmp_path / "pred"),
            "--no-progress",
            "--out",
            str(tmp_path / "o1"),
        )
        == 0
    )
    s = json.loads((tmp_path / "o1" / "results.json").read_text())["summary"]["all"]
    assert s["J&F"] == 100.0
    assert (
        run_cli(
            "eval",
            "--gt",
            str(data),
            "--split",
            "valid",
            "--pred",
            str(tmp_path / "pred"),
            "--protocol",
            "resurgsam2",
            "--no-progress",
            "--out",
            str(tmp_path / "o2"),
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "instruments" in out and "tissue" in out
    s2 = json.loads((tmp_path / "o2" / "results.json").read_text())["summary"]
    assert s2["all"]["J"] == 100.0 and s2["instruments"]["challenge_iou"] == 100.0


def test_e2e_copy_baseline_is_far_from_perfect(data, tmp_path):
    assert (
        run_cli(
            "eval",
            "--e2e",
            "--data",
            str(data),
            "--split",
            "valid",
            "--segmenter",
            "copy",
            "--no-progress",
            "--summary-only",
            "--out",
            str(tmp_path),
        )
        == 0
    )
    s = json.loads((tmp_path / "results.json").read_text())["summary"]["all"]
    assert s["J&F"] < 70


def test_cli_errors(data, tmp_path, capsys):
    assert run_cli("eval", "--pred", str(tmp_path)) == 2
    assert run_cli("eval", "--gt", str(data), "--split", "valid") == 2
    assert run_cli("eval", "--gt", str(data), "--split", "valid", "--pred", str(tmp_path / "missing")) == 2
    assert "does not exist" in capsys.readouterr().err
    assert (
        run_cli("eval", "--e2e", "--gt", str(data), "--split", "valid", "--segmenter", "copy", "--prompt", "click") == 2
    )
    assert "applies to --segmenter engine only" in capsys.readouterr().err


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_torchrun_two_cpu_ranks_match_single_process(data, tmp_path):
    common = [
        "--e2e",
        "--data",
        str(data),
        "--split",
        "valid",
        "--segmenter",
        "copy",
        "--no-progress",
        "--summary-only",
    ]
    assert run_cli("eval", *common, "--out", str(tmp_path / "single")) == 0
    env = dict(
        os.environ, PYTHONPATH=os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")]), OMP_NUM_THREADS="1"
    )
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nnodes",
        "1",
        "--nproc_per_node",
        "2",
        "--master_addr",
        "127.0.0.1",
        "--master_port",
        str(_free_port()),
        "-m",
        "surgsam.eval",
        *common,
        "--out",
        str(tmp_path / "dist"),
    ]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "merged 4 videos from 2 ranks" in proc.stdout
    single = json.loads((tmp_path / "single" / "results.json").read_text())
    dist = json.loads((tmp_path / "dist" / "results.json").read_text())
    for group, row in single["summary"].items():
        assert dist["summary"][group] == pytest.approx(row)
    assert sorted(o["video"] for o in dist["objects"]) == sorted(o["video"] for o in single["objects"])


def test_e2e_with_the_engine(tmp_path, capsys):
    """The engine adapter on the real engine (random-weight nano preset, 64 px): runs and scores,
    and says that the weights are random (issue 18: an untrained model ran without a word)."""
    generate(tmp_path / "d", SynthConfig(width=64, height=64, frames=3), videos=1, seed=2, valid=1, progress=False)
    assert (
        run_cli(
            "eval",
            "--e2e",
            "--data",
            str(tmp_path / "d"),
            "--split",
            "valid",
            "--segmenter",
            "engine",
            "--model",
            "nano",
            "--image-size",
            "64",
            "--no-progress",
            "--out",
            str(tmp_path / "o"),
        )
        == 0
    )
    warned = [x for x in capsys.readouterr().err.splitlines() if "UNTRAINED" in x]
    assert warned == [
        "warning: no --checkpoint: the engine runs an UNTRAINED nano at 64 px (random weights: its "
        "scores mean nothing); pass --checkpoint surgsam-nano-synth (bundled, trained on synthetic "
        "videos) or an official checkpoint (surgsam download --list)"
    ]
    s = json.loads((tmp_path / "o" / "results.json").read_text())["summary"]["all"]
    assert 0 <= s["J"] <= 100 and s["n_objects"] >= 1
