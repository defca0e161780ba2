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


def test_ship_records_a_chain_of_runs_on_a_shipped_base(tmp_path):
    """Two runs, the second from step 3 of the first, on top of a shipped file: steps and
    times add up along the chain, the base's record is kept, a run without its step is refused."""
    net = build_model("nano", image_size=64)
    base = save_checkpoint(
        net, tmp_path / "base.pt", net.cfg.to_dict(), step=100, command="run 0", train_time_s=1000.0, recipe="r"
    )
    ck = save_checkpoint(net, tmp_path / "step_0000002.pt", net.cfg.to_dict(), step=2, recipe="r")
    first = _log(tmp_path / "a.jsonl", [{"step": s, "elapsed": 10.0 * s} for s in range(1, 6)])
    second = _log(tmp_path / "b.jsonl", [{"step": s, "elapsed": 1.0 * s} for s in range(1, 4)])
    out = ship(ck, tmp_path / "m.pt", command="runs 1-2", log=[f"{first}:3", second], base=base)
    meta = read_checkpoint(out).meta
    assert meta["step"] == 2 and meta["global_step"] == 100 + 3 + 2
    assert meta["train_time_s"] == pytest.approx(1000.0 + 30.0 + 2.0)
    assert meta["base"] == {"recipe": "r", "step": 100, "command": "run 0", "train_time_s": 1000.0}
    again = ship(out, tmp_path / "m2.pt", command="run 3", log=[second], base=out)  # a chain on a chain
    assert read_checkpoint(again).meta["global_step"] == 105 + 2
    # an older base records only its last run's step: its global step is given
    assert (
        read_checkpoint(ship(ck, tmp_path / "m4.pt", command="x", base=base, base_step=250)).meta["global_step"] == 252
    )
    with pytest.raises(ValueError, match="needs the step taken from it"):
        ship(ck, tmp_path / "m3.pt", command="x", log=[first, second], base=base)
