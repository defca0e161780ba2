"""Weighted averages of checkpoints (surgsam.train.average)."""

from __future__ import annotations

import pytest
import torch

from surgsam.modeling import CheckpointError, build_model, read_checkpoint, save_checkpoint
from surgsam.modeling.checkpoint import save_state_dict
from surgsam.train.average import average_checkpoints, main


def _ckpt(tmp_path, name, seed, image_size=64, **meta):
    torch.manual_seed(seed)
    net = build_model("nano", image_size=image_size)
    return save_checkpoint(net, tmp_path / name, net.cfg.to_dict(), **meta), net


def test_weighted_average_is_the_blend_and_loads(tmp_path):
    a, net_a = _ckpt(tmp_path, "a.pt", 1, step=10, recipe="nano-synth")
    b, net_b = _ckpt(tmp_path, "b.pt", 2, step=20, recipe="nano-synth")
    assert main([str(a), str(b), "--weights", "0.25", "0.75", "--out", str(tmp_path / "out" / "m.pt")]) == 0
    got = read_checkpoint(tmp_path / "out" / "m.pt")
    assert got.meta == {
        "recipe": "nano-synth",
        "averaged": [
            {"checkpoint": str(a), "weight": 0.25, "step": 10},
            {"checkpoint": str(b), "weight": 0.75, "step": 20},
        ],
    }
    sa, sb = net_a.state_dict(), net_b.state_dict()
    moved = 0
    for k, v in got.state_dict.items():
        want = (0.25 * sa[k].double() + 0.75 * sb[k].double()).float()
        assert torch.equal(v, want), k
        moved += int(not torch.equal(sa[k], sb[k]))
    assert moved > 10  # the two inputs really differ, so the blend is not one of them
    model = build_model(checkpoint=tmp_path / "out" / "m.pt")  # strict load
    assert model.image_size == 64


def test_equal_weights_by_default_and_recipe_dropped_when_inputs_differ(tmp_path):
    a, net_a = _ckpt(tmp_path, "a.pt", 1, recipe="nano-synth")
    b, net_b = _ckpt(tmp_path, "b.pt", 2, recipe="ref-nano-synth")
    c, net_c = _ckpt(tmp_path, "c.pt", 3, recipe="nano-synth")
    sd, _, meta = average_checkpoints([a, b, c])
    assert "recipe" not in meta and [m["weight"] for m in meta["averaged"]] == pytest.approx([1 / 3] * 3)
    k = next(k for k, v in sd.items() if v.numel() > 4)
    want = (net_a.state_dict()[k].double() + net_b.state_dict()[k].double() + net_c.state_dict()[k].double()) / 3
    assert torch.allclose(sd[k].double(), want, atol=1e-7)


@pytest.mark.parametrize(
    ("weights", "message"),
    [
        ([0.5, 0.6], "sum to 1"),
        ([1.5, -0.5], "non-negative"),
        ([1.0], "one weight per checkpoint"),
        ([float("nan"), 1.0], "non-negative"),
    ],
)
def test_bad_weights_are_refused(tmp_path, weights, message):
    a, _ = _ckpt(tmp_path, "a.pt", 1)
    b, _ = _ckpt(tmp_path, "b.pt", 2)
    with pytest.raises(ValueError, match=message):
        average_checkpoints([a, b], weights)


def test_different_networks_and_bare_files_are_refused(tmp_path):
    a, _ = _ckpt(tmp_path, "a.pt", 1)
    other, _ = _ckpt(tmp_path, "other.pt", 2, image_size=128)
    with pytest.raises(CheckpointError, match="different networks"):
        average_checkpoints([a, other])
    torch.save(build_model("nano", image_size=64).state_dict(), tmp_path / "bare.pt")
    with pytest.raises(CheckpointError, match="no config"):
        average_checkpoints([a, tmp_path / "bare.pt"])
    with pytest.raises(ValueError, match="at least two"):
        average_checkpoints([a])


def test_unequal_integer_tensors_are_refused(tmp_path):
    cfg = build_model("nano", image_size=64).cfg.to_dict()
    x = save_state_dict({"w": torch.ones(2), "n": torch.tensor([1, 2])}, tmp_path / "x.pt", cfg)
    y = save_state_dict({"w": torch.zeros(2), "n": torch.tensor([1, 3])}, tmp_path / "y.pt", cfg)
    with pytest.raises(CheckpointError, match="not floating point"):
        average_checkpoints([x, y])
    z = save_state_dict({"w": torch.zeros(2), "n": torch.tensor([1, 2])}, tmp_path / "z.pt", cfg)
    sd, _, _ = average_checkpoints([x, z])
    assert torch.equal(sd["n"], torch.tensor([1, 2])) and torch.equal(sd["w"], torch.full((2,), 0.5))


def test_a_failed_average_keeps_the_earlier_output(tmp_path, capsys):
    a, _ = _ckpt(tmp_path, "a.pt", 1)
    b, _ = _ckpt(tmp_path, "b.pt", 2)
    out = tmp_path / "m.pt"
    assert main([str(a), str(b), "--out", str(out)]) == 0
    before = out.read_bytes()
    other, _ = _ckpt(tmp_path, "other.pt", 3, image_size=128)
    with pytest.raises(SystemExit):
        main([str(a), str(other), "--out", str(out)])
    assert "different networks" in capsys.readouterr().err
    assert out.read_bytes() == before
