"""The CPU fast path: bf16 recipe masks against float32, cached memory projections exact, the
decisions of fast="auto" / precision="auto", and one place deciding precision."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from surgsam.engine import VideoSegmenter, cpufast
from surgsam.engine.cpufast import bf16_attention, fast_model
from surgsam.engine.fastpath import CPU_BF16_MIN_SPEEDUP, resolve_fast_path
from surgsam.engine.precision import autocast, measure_bf16_speedup, resolve_precision
from surgsam.modeling import build_model
from synthetic import moving_objects_video

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def video():
    return moving_objects_video(n=12, h=96, w=128)


def run(seg, frames, gt):
    """Object 1 from frame 0, object 2 from frame 2: by frame 9 both banks are full (1
    conditioning + 6 recent memories) and every memory has moved through the slots."""
    out = [seg.add_prompt(frames[0], obj_id=1, mask=gt[1][0])]
    for t in range(1, len(frames)):
        out.append(seg.add_prompt(frames[t], obj_id=2, mask=gt[2][t]) if t == 2 else seg.step(frames[t]))
    return out


def iou(a: np.ndarray, b: np.ndarray) -> float:
    u = (a | b).sum()
    return 1.0 if u == 0 else float((a & b).sum() / u)


@pytest.mark.parametrize("memory", ["fifo", "dlm"])
def test_cached_memory_projections_are_exact(model, video, memory):
    frames, gt = video
    ref = VideoSegmenter(model, memory=memory)
    plain = run(ref, frames, gt)
    seg = VideoSegmenter(model, memory=memory, cached_memory=True)
    cached = run(seg, frames, gt)
    assert seg._projected is not None
    for a, b in zip(plain, cached):
        assert a.obj_ids == b.obj_ids
        torch.testing.assert_close(b.low_res_logits, a.low_res_logits, atol=1e-4, rtol=0)
    # one frame's selection (7 memories per object, two objects) plus last frame's newest
    assert 7 <= len(seg._projected) <= 2 * 7 + 2
    assert seg.memory_footprint() == ref.memory_footprint() + seg._projected.nbytes() > ref.memory_footprint()


def test_bf16_recipe_masks_match_fp32(model, video):
    frames, gt = video
    ref = run(VideoSegmenter(model), frames, gt)
    seg = VideoSegmenter(model, precision="bf16", fast="auto")  # an explicit bf16 request: the recipe, any width
    assert seg.fast_path.matmul == "bf16" and seg.precision == "fp32" and seg.net is not model
    fast = run(seg, frames, gt)
    ious = [iou(a.masks[i], b.masks[i]) for a, b in zip(ref, fast) for i in range(len(a.obj_ids))]
    assert min(ious) >= 0.98, ious
    # not the same numbers: the recipe really ran in bf16
    assert max(float((a.low_res_logits - b.low_res_logits).abs().max()) for a, b in zip(ref, fast)) > 1e-4


def test_fast_model_leaves_the_model_alone_and_shares_float32_weights(model):
    before = {k: v.clone() for k, v in model.state_dict().items()}
    fast = fast_model(model, "bf16")
    assert fast_model(model, "fp32") is model
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]) and v.dtype == before[k].dtype, k
    assert fast.sam_mask_decoder.iou_token.weight is model.sam_mask_decoder.iou_token.weight
    assert fast.memory_encoder.fuser.layers[0].pwconv1.weight is model.memory_encoder.fuser.layers[0].pwconv1.weight
    assert fast.memory_attention.layers[0].linear1.weight.dtype == torch.bfloat16
    assert type(model.memory_attention.layers[0].linear1) is torch.nn.Linear
    assert model.memory_attention.layers[0].self_attn.kernel is None
    # the memory encoder's wide mask convolutions (16 -> 64, 64 -> 256) in bf16, in the copy only
    convs = [type(m).__name__ for m in fast.memory_encoder.mask_downsampler.encoder if "Conv" in type(m).__name__]
    assert convs == ["Conv2d", "Conv2d", "LowPrecisionConv2d", "LowPrecisionConv2d", "Conv2d"]
    assert all(type(m) is not cpufast.LowPrecisionConv2d for m in model.memory_encoder.modules())
    # the nano's 16-wide trunk stays float32; a SAM 2 trunk (96 wide) computes in bf16
    assert not any(isinstance(m, cpufast.LowPrecisionLinear) for m in fast.image_encoder.trunk.modules())
    tiny = fast_model(build_model("sam2.1_hiera_tiny", image_size=128), "bf16")
    assert isinstance(tiny.image_encoder.trunk.blocks[0].attn.qkv, cpufast.LowPrecisionLinear)
    with pytest.raises(ValueError, match="matmul"):
        fast_model(model, "int8")


@pytest.mark.parametrize("score_block", [1 << 21, 16 * 6 * 300])  # one block; row blocks of 16 (the last of 8)
def test_bf16_attention_matches_sdpa(monkeypatch, score_block):
    monkeypatch.setattr(cpufast, "SCORE_BLOCK", score_block)
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 3, n, 32, generator=g) for n in (40, 300, 300))
    key_mask = torch.rand(2, 1, 1, 300, generator=g) > 0.3
    row_mask = torch.rand(2, 3, 40, 300, generator=g) > 0.3
    row_mask[..., 0] = True  # every query attends to something
    for m in (None, key_mask, row_mask):
        ref = F.scaled_dot_product_attention(q, k, v, attn_mask=m)
        got = bf16_attention(q, k, v, m)
        assert got.dtype == torch.bfloat16 and got.shape == ref.shape
        torch.testing.assert_close(got.float(), ref, atol=2e-2, rtol=0)


def test_cpu_fast_path_decisions():
    def never():
        raise AssertionError("the bf16 probe must not run here")

    fast = resolve_fast_path("auto", "auto", CPU, width=256, bf16_speedup=lambda: 3.7)
    assert fast.matmul == "bf16" and fast.precision == "fp32" and not fast.compile and "3.7x" in fast.notice
    slow = resolve_fast_path("auto", "auto", CPU, width=256, bf16_speedup=lambda: CPU_BF16_MIN_SPEEDUP - 0.1)
    assert slow.matmul == "fp32" and "off on cpu" in slow.notice and "below" in slow.notice
    assert resolve_fast_path("auto", "fp32", CPU, width=256, bf16_speedup=never).matmul == "fp32"
    narrow = resolve_fast_path("auto", "auto", CPU, width=64, bf16_speedup=never)
    assert narrow.matmul == "fp32" and "64-wide" in narrow.notice
    asked = resolve_fast_path("auto", "bf16", CPU, width=64, bf16_speedup=lambda: 0.8)
    assert asked.matmul == "bf16" and "SLOWER than float32" in asked.notice  # asked for: given, with a warning
    assert "SLOWER" not in resolve_fast_path("auto", "bf16", CPU, width=64, bf16_speedup=lambda: 1.2).notice
    assert not any(f.cached_memory for f in (fast, slow, narrow, asked))  # measured not to pay: never automatic
    assert resolve_fast_path(False, "auto", CPU, bf16_speedup=never).matmul == "fp32"
    eager_bf16 = resolve_fast_path(False, "bf16", CPU, bf16_speedup=lambda: 0.1)
    assert eager_bf16.precision == "bf16" and eager_bf16.matmul == "fp32" and "SLOWER" in eager_bf16.notice
    assert resolve_fast_path(False, "bf16", CPU, bf16_speedup=lambda: 2.0).notice == ""
    forced = resolve_fast_path(True, "auto", CPU, bf16_speedup=never)
    assert forced.compile and forced.static_memory and forced.matmul == "bf16" and forced.precision == "fp32"


def test_bf16_speedup_probe_uses_the_injected_clock():
    ticks = iter(range(1000))
    calls = []

    def clock():
        calls.append(1)
        return float(next(ticks))

    assert measure_bf16_speedup(tokens=8, dim=8, repeats=2, clock=clock) == 1.0  # every call "took" one tick
    assert len(calls) == 2 * 2 * 2


def test_one_place_decides_precision(monkeypatch):
    from surgsam.referring import segmenter as referring_segmenter
    from surgsam.train import trainer

    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (7, 5))
    assert resolve_precision("auto", "cuda") == "fp16"
    assert resolve_precision("auto", "cuda", training=True) == "fp32"  # no fp16 training without loss scaling
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (8, 0))
    assert resolve_precision("auto", "cuda") == resolve_precision("auto", "cuda", training=True) == "bf16"
    assert resolve_precision("auto", CPU) == resolve_precision("auto", CPU, training=True) == "fp32"
    with pytest.raises(ValueError, match="precision must be one of"):
        resolve_precision("fp16", CPU, training=True)
    with pytest.raises(ValueError, match="resolved precision"):
        autocast("auto", CPU)
    assert trainer.resolve_precision is resolve_precision
    assert referring_segmenter.autocast is autocast
