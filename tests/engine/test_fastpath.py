"""Static-shape memory, traced calls and the fast path: the same masks as the dynamic eager
engine."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from surgsam.bench.paired import synthetic_clip
from surgsam.engine import VideoSegmenter, fastpath
from surgsam.engine.fastpath import CompiledOps, FastPath, TracedCall, resolve_fast_path
from surgsam.modeling.sam2 import SpatialMemory
from synthetic import moving_objects_video


@pytest.fixture(scope="module")
def video():
    return moving_objects_video(n=16, h=120, w=160)


def staggered_run(model, frames, gt, **kw):
    """Object 1 from a mask on frame 0, object 2 from a mask on frame 3, object 3 from a click
    on frame 6: three different memory layouts on most frames."""
    seg = VideoSegmenter(model, **kw)
    out = [seg.add_prompt(frames[0], obj_id=1, mask=gt[1][0])]
    for t in range(1, len(frames)):
        if t == 3:
            out.append(seg.add_prompt(frames[t], obj_id=2, mask=gt[2][t]))
        elif t == 6:
            ys, xs = np.nonzero(gt[2][t])
            out.append(seg.add_prompt(frames[t], obj_id=3, points=[[xs.mean(), ys.mean()]], labels=[1]))
        else:
            out.append(seg.step(frames[t]))
    return seg, out


@pytest.mark.parametrize("memory", ["fifo", "efp", "dlm"])
def test_static_memory_equals_dynamic(model, video, memory):
    frames, gt = video
    _, dyn = staggered_run(model, frames, gt, memory=memory)
    seg, sta = staggered_run(model, frames, gt, memory=memory, static_memory=True)
    assert seg.static_memory
    for a, b in zip(dyn, sta):
        assert a.obj_ids == b.obj_ids
        torch.testing.assert_close(b.low_res_logits, a.low_res_logits, atol=1e-4, rtol=0)
        assert (a.masks == b.masks).mean() > 0.9999


def test_padded_memory_layout_and_masked_attention(model):
    torch.manual_seed(1)
    c, cm, s = model.hidden_dim, model.mem_dim, model.cfg.feat_size
    spatial = [(slot, SpatialMemory(torch.randn(2, cm, s, s), torch.randn(2, cm, s, s))) for slot in (0, 5, 6)]
    pointers = [(d, torch.randn(2, c)) for d in (6, 1, 2)]
    tok, pos = model.memory_tokens(spatial, pointers, 15, 2)
    ptok, ppos, mask = model.padded_memory_tokens(spatial, pointers, 15, 2, (5, 4))
    hw, split = s * s, c // cm
    assert ptok.shape == (2, 5 * hw + 4 * split, cm)
    expect = torch.zeros(5 * hw + 4 * split, dtype=torch.bool)
    expect[: 3 * hw] = True
    expect[5 * hw : 5 * hw + 3 * split] = True
    assert torch.equal(mask[0], expect) and torch.equal(mask[1], expect)
    assert torch.equal(ptok[:, mask[0]], tok) and torch.equal(ppos[:, mask[0]], pos)
    assert not ptok[:, ~mask[0]].any()

    from surgsam.modeling.sam2 import FrameFeatures

    frame = FrameFeatures(torch.randn(2, c, s, s), torch.randn(2, c, s, s), (None, None))
    with torch.no_grad():
        ref = model.attend_memory(frame, tok, pos, len(pointers))
        # garbage in the padding must not leak through the mask
        noisy = torch.where(mask[..., None], ptok, torch.randn_like(ptok) * 100)
        out = model.attend_memory(frame, noisy, ppos, 4, mask)
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="exceed the slots"):
        model.padded_memory_tokens(spatial, pointers, 15, 2, (2, 4))


def test_policy_capacity():
    from surgsam.memory import make_policy

    assert make_policy("fifo", 7, 16).capacity() == (7, 16)
    assert make_policy("efp", 7, 16).capacity() == (5, 16)
    assert make_policy("dlm", 7, 16).capacity() == (10, 16)


def test_fast_path_resolution_on_cpu():
    cpu = torch.device("cpu")
    off = resolve_fast_path(False, "fp32", cpu)
    assert off == FastPath("fp32")
    auto = resolve_fast_path("auto", "fp32", cpu)
    assert not auto.compile and not auto.static_memory and "off on cpu" in auto.notice
    forced = resolve_fast_path(True, "fp32", cpu)
    assert forced.compile and forced.static_memory and not forced.tf32 and not forced.cuda_graphs
    with pytest.raises(ValueError, match="fast must be"):
        resolve_fast_path("yes", "fp32", cpu)


@pytest.mark.slow
def test_compiled_engine_matches_eager(model, video):
    """torch.compile on the CPU (forced): same masks as the eager engine, with one object and then
    two (a recompilation for the new batch); the third object of ``staggered_run`` would add a
    third compilation of every graph and no code path (about 1.5 min)."""
    frames, gt = video
    frames, gt = frames[:6], {k: v[:6] for k, v in gt.items()}
    _, eager = staggered_run(model, frames, gt, memory="efp")
    seg, comp = staggered_run(model, frames, gt, memory="efp", fast=True)
    assert seg.fast_path.compile
    for a, b in zip(eager, comp):
        torch.testing.assert_close(b.low_res_logits, a.low_res_logits, atol=1e-3, rtol=0)
        for i in range(len(a.obj_ids)):
            u = (a.masks[i] | b.masks[i]).sum()
            assert u == 0 or (a.masks[i] & b.masks[i]).sum() / u >= 0.999


def _four_objects(model, frames, masks, **kw):
    """Objects 1 and 2 from masks on frame 0, 3 from a mask on frame 2, 4 from a click on frame
    4: several memory layouts while the banks fill, one batch of four once they are full."""
    seg = VideoSegmenter(model, memory="fifo", **kw)
    out = []
    for t, f in enumerate(frames):
        if t == 0:
            seg.add_prompt(f, obj_id=1, mask=masks[0])
            out.append(seg.add_prompt(None, obj_id=2, mask=masks[1]))
        elif t == 2:
            out.append(seg.add_prompt(f, obj_id=3, mask=masks[2]))
        elif t == 4:
            ys, xs = np.nonzero(masks[3])
            out.append(seg.add_prompt(f, obj_id=4, points=[[xs.mean(), ys.mean()]], labels=[1]))
        else:
            out.append(seg.step(f))
    return seg, out


def test_traced_calls_give_the_eager_results(model):
    """Replaying the per-frame calls from traces changes no logit, mask, score or IoU of a
    4-object clip, and the steady-state frames are answered by the traces alone."""
    frames, masks = synthetic_clip(32, model.image_size, 4)
    _, eager = _four_objects(model, frames, masks)
    seg, traced = _four_objects(model, frames, masks, trace=True)
    assert seg.fast_path.trace and isinstance(seg._ops.attend_memory, TracedCall)
    for a, b in zip(eager, traced):
        assert a.obj_ids == b.obj_ids
        assert torch.equal(a.low_res_logits, b.low_res_logits), f"frame {a.frame_idx}: logits differ"
        assert np.array_equal(a.masks, b.masks) and np.array_equal(a.object_scores, b.object_scores)
        assert np.array_equal(a.ious, b.ious)
    assert traced[-1].obj_ids == [1, 2, 3, 4]
    for name in CompiledOps.NAMES:
        call = getattr(seg._ops, name)
        assert len(call) >= 1 and call.replays >= 1, name
    # a changed weight (even to the same values) drops every trace: they may hold its old values
    old = [e[0] for name in CompiledOps.NAMES for e in getattr(seg._ops, name)._traces.values()]  # kept alive
    with torch.no_grad():
        model.no_mem_embed.add_(0.0)
    seg.step(frames[0])
    new = [e[0] for name in CompiledOps.NAMES for e in getattr(seg._ops, name)._traces.values()]
    assert new and not any(t is o for t in new for o in old)


@pytest.mark.parametrize("precision", ["fp32", "bf16"], ids=["float32", "cpu-recipe"])
def test_traces_hold_cached_tables_as_constants(model, precision):
    """Under ``torch.jit.trace`` sizes are tensors; the caches of values computed from the
    weights and the grid size (RoPE tables, Hiera's interpolated position embedding) are keyed
    on plain numbers, so a trace holds their values instead of recomputing them every replay."""
    frames, masks = synthetic_clip(20, model.image_size, 2)  # the bank is full from frame 7
    fast = "auto" if precision == "bf16" else False
    seg = VideoSegmenter(model, memory="fifo", trace=True, precision=precision, fast=fast)
    seg.add_prompt(frames[0], obj_id=1, mask=masks[0])
    seg.add_prompt(None, obj_id=2, mask=masks[1])
    for f in frames[1:]:
        seg.step(f)
    graphs = {
        name: [str(e[0].inlined_graph) for e in getattr(seg._ops, name)._traces.values()]
        for name in ("encode_image", "attend_memory")
    }
    assert graphs["encode_image"] and graphs["attend_memory"]
    for name, found in graphs.items():
        for g in found:
            for op in ("aten::polar", "aten::upsample_bicubic2d", "aten::sin", "aten::cos", "aten::arange"):
                assert op not in g, f"{name}'s trace recomputes a cached table ({op})"


def test_a_trace_that_differs_from_eager_is_dropped(model, monkeypatch):
    """A trace whose first replays do not equal the eager call is never used: the call stays
    eager for that signature (same results)."""
    frames, masks = synthetic_clip(12, model.image_size, 2)
    monkeypatch.setattr(fastpath, "_same", lambda a, b: False)
    seg = VideoSegmenter(model, memory="fifo", trace=True)
    ref = VideoSegmenter(model, memory="fifo")
    for s in (seg, ref):
        s.add_prompt(frames[0], obj_id=1, mask=masks[0])
        s.add_prompt(None, obj_id=2, mask=masks[1])
    for f in frames[1:]:
        assert torch.equal(seg.step(f).low_res_logits, ref.step(f).low_res_logits)
    call = seg._ops.predict_masks
    assert len(call) == 0 and call.replays == 0 and call._eager_only


def test_traces_are_asked_for_never_automatic(model):
    cpu = torch.device("cpu")
    for fast in (False, "auto"):
        for width in (64, 256):
            assert not resolve_fast_path(fast, "fp32", cpu, width=width, bf16_speedup=lambda: 1.0).trace
    assert VideoSegmenter(model, trace=True).fast_path.trace
    with pytest.raises(ValueError, match="trace=True"):
        VideoSegmenter(model, fast=True, trace=True)


def test_auto_on_cuda_leaves_compilation_off(monkeypatch):
    """On CUDA sm80+ ``"auto"`` is eager bf16 autocast + TF32 (the compiled path measured
    slower on an H200); compilation comes only when forced or with CUDA graphs."""
    cuda = torch.device("cuda")
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (9, 0))
    auto = resolve_fast_path("auto", "auto", cuda)
    assert (auto.precision, auto.tf32, auto.compile, auto.static_memory) == ("bf16", True, False, False)
    assert "eager" in auto.notice and f"{fastpath.CUDA_COMPILED_SPEED}x" in auto.notice
    graphs = resolve_fast_path("auto", "auto", cuda, cuda_graphs=True)
    assert graphs.compile and graphs.static_memory and graphs.cuda_graphs
    assert graphs.notice == "fast path: bf16 autocast, TF32, torch.compile + CUDA graphs, static memory"
    forced = resolve_fast_path(True, "fp32", cuda)
    assert (forced.precision, forced.compile, forced.static_memory, forced.tf32) == ("fp32", True, True, True)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (7, 5))
    old = resolve_fast_path("auto", "auto", cuda)
    assert (old.precision, old.compile, old.tf32) == ("fp16", False, False)
