"""benchmarks/object_score_shift.py: a shifted copy is the same model with a stricter presence threshold."""

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch

import surgsam
from surgsam.data.synth import render_demo_clip
from surgsam.modeling.sam2 import SAM2Model

ROOT = Path(__file__).resolve().parents[1]


def _module():
    spec = importlib.util.spec_from_file_location("object_score_shift", ROOT / "benchmarks" / "object_score_shift.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _track(model: SAM2Model, frames: list[np.ndarray], box: tuple[int, int, int, int]) -> list[int]:
    seg = surgsam.VideoSegmenter(model, memory="efp")
    seg.add_prompt(frames[0], obj_id=1, box=box)
    return [int(seg.step(f).masks[0].sum()) for f in frames[1:]]


def test_shifted_copies_lower_the_object_score_by_the_shift(tmp_path):
    mod = _module()
    paths = mod.write_shifted("surgsam-nano-synth", tmp_path, [0.0, 1.5, 1000.0])
    assert [p.name for p in paths] == ["step_0000000.pt", "step_0000015.pt", "step_0010000.pt"]
    base, shifted, never = (surgsam.build_model(checkpoint=p) for p in paths)  # strict loads
    tokens = torch.randn(5, base.hidden_dim)
    with torch.no_grad():
        diff = base.sam_mask_decoder.pred_obj_score_head(tokens) - shifted.sam_mask_decoder.pred_obj_score_head(tokens)
    torch.testing.assert_close(diff, torch.full_like(diff, 1.5))
    other = {k: v for k, v in base.state_dict().items() if k != mod.SCORE_BIAS}
    assert all(torch.equal(v, shifted.state_dict()[k]) for k, v in other.items())
    # the threshold moves everywhere: with a shift no logit reaches, no frame after the prompt has a mask
    clip = render_demo_clip()
    frames = list(clip.frames[:6])
    assert min(_track(base, frames, (100, 60, 220, 180))) > 0
    assert _track(never, frames, (100, 60, 220, 180)) == [0] * 5
    with pytest.raises(ValueError, match="multiples of 0.1"):
        mod.write_shifted("surgsam-nano-synth", tmp_path, [0.25])
