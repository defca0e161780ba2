"""benchmarks/rebase_referring.py: a referring model's text branch on another SAM 2 model."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch

from surgsam.modeling import SAM2Model, get_preset, save_checkpoint
from surgsam.referring import (
    ReferringSAM2,
    build_referring_model,
    get_referring_preset,
    read_referring_checkpoint,
    save_referring_checkpoint,
)

ROOT = Path(__file__).resolve().parents[1]


def _script():
    spec = importlib.util.spec_from_file_location("rebase_referring", ROOT / "benchmarks" / "rebase_referring.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _referring(seed: int) -> ReferringSAM2:
    torch.manual_seed(seed)
    return ReferringSAM2(SAM2Model(get_preset("nano", 128)), get_referring_preset("tiny"))


def test_text_branch_kept_and_every_sam_weight_replaced(tmp_path):
    ref, other = _referring(0), _referring(1)
    ref_path = save_referring_checkpoint(ref, tmp_path / "ref.pt", step=9)
    sam_path = save_checkpoint(other.sam, tmp_path / "sam.pt", config=other.sam.cfg.to_dict())
    out = _script().rebase(str(ref_path), str(sam_path), tmp_path / "init.pt")
    got = read_referring_checkpoint(out)
    assert got.sam_config == ref.sam.cfg and got.referring_config == ref.cfg
    want_sam = other.sam.state_dict()
    want_ref = {k: v for k, v in ref.state_dict().items() if not k.startswith("sam.")}
    net = build_referring_model(checkpoint=out)
    for k, v in net.state_dict().items():
        if k.startswith("sam."):
            assert torch.equal(v, want_sam[k[4:]]), k
        else:
            assert torch.equal(v, want_ref[k]), k
    key = "image_encoder.trunk.patch_embed.proj.weight"  # the two seeds differ, so the check can fail
    assert want_ref and not torch.equal(ref.sam.state_dict()[key], want_sam[key])


def test_a_sam_checkpoint_of_another_preset_is_refused(tmp_path, capsys):
    ref_path = save_referring_checkpoint(_referring(0), tmp_path / "ref.pt")
    tiny = SAM2Model(get_preset("sam2.1_hiera_tiny", 128))
    sam_path = save_checkpoint(tiny, tmp_path / "tiny.pt", config=tiny.cfg.to_dict())
    assert _script().main(["--referring", str(ref_path), "--sam", str(sam_path), "--out", str(tmp_path / "x.pt")]) == 2
    assert "sam2.1_hiera_tiny" in capsys.readouterr().err and not (tmp_path / "x.pt").exists()
    with pytest.raises(FileNotFoundError):
        _script().rebase(str(ref_path), str(tmp_path / "missing.pt"), tmp_path / "y.pt")
