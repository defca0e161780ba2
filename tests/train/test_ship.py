"""Packaging a trainer checkpoint as a bundled model file."""

from __future__ import annotations

import json

import pytest
import torch

from surgsam.modeling import CheckpointError, build_model, read_checkpoint, save_checkpoint
from surgsam.train.ship import main, ship, training_time


def _log(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_training_time_sums_resumed_segments(tmp_path):
    log = _log(
        tmp_path / "log.jsonl",
        [
            {"step": 1, "elapsed": 1.0},
            {"step": 2, "elapsed": 2.0},
            {"step": 3, "elapsed": 3.0},
            {"note": "not a step"},
            {"step": 3, "elapsed": 0.5},
            {"step": 4, "elapsed": 1.5},
            {"step": 5, "elapsed": 2.5},  # resumed at 2
        ],
    )
    assert training_time(log, 5) == pytest.approx(5.5)
    assert training_time(log, 4) == pytest.approx(4.5)
    assert training_time(log, 2) == pytest.approx(2.0)


def test_ship_keeps_weights_config_and_record(tmp_path):
    torch.manual_seed(3)
    net = build_model("nano", image_size=64)
    ck = save_checkpoint(
        net, tmp_path / "step_0000005.pt", net.cfg.to_dict(), step=5, recipe="nano-synth", train_config={"seed": 0}
    )
    log = _log(tmp_path / "log.jsonl", [{"step": s, "elapsed": float(s)} for s in range(1, 6)])
    (tmp_path / "eval.json").write_text(json.dumps({"efp": {"J&F": 50.0}}))
    assert (
        main(
            [
                str(ck),
                "--out",
                str(tmp_path / "a" / "m.pt"),
                "--command",
                "surgsam train x",
                "--log",
                str(log),
                "--eval",
                str(tmp_path / "eval.json"),
            ]
        )
        == 0
    )
    got = read_checkpoint(tmp_path / "a" / "m.pt")
    assert got.meta == {
        "recipe": "nano-synth",
        "step": 5,
        "train_config": {"seed": 0},
        "command": "surgsam train x",
        "train_time_s": 5.0,
        "evaluation": {"efp": {"J&F": 50.0}},
    }
    loaded = build_model(checkpoint=tmp_path / "a" / "m.pt")
    assert loaded.image_size == 64
    for a, b in zip(loaded.state_dict().values(), net.state_dict().values()):
        assert torch.equal(a, b)


def test_ship_refuses_a_file_without_config(tmp_path):
    torch.save(build_model("nano", image_size=64).state_dict(), tmp_path / "bare.pt")
    with pytest.raises(CheckpointError, match="no config"):
        ship(tmp_path / "bare.pt", tmp_path / "m.pt", command="x")
