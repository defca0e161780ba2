"""ONNX export: onnxruntime reproduces PyTorch and the streaming engine (static memory)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

from surgsam.engine import VideoSegmenter  # noqa: E402
from surgsam.export import OnnxModel, export_onnx  # noqa: E402
from surgsam.modeling import build_model  # noqa: E402

sys.path.insert(0, str(Path(__file__).parents[1] / "engine"))
from synthetic import moving_objects_video  # noqa: E402


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    m = build_model("nano", image_size=128)
    with torch.no_grad():  # random weights: make objects "present" so masks are not empty
        m.sam_mask_decoder.pred_obj_score_head.layers[-1].bias.fill_(4.0)
    return m.eval()


@pytest.fixture(scope="module")
def exported(model, tmp_path_factory):
    out = tmp_path_factory.mktemp("onnx")
    man = export_onnx(model, out, memory="efp")
    return out, man


def test_manifest_and_files(exported, model):
    out, man = exported
    assert (out / "image_encoder.onnx").stat().st_size > 100_000
    assert man.slots == (5, 16) and man.image_size == 128 and man.feat_size == 8
    assert man.memory_tokens == 5 * 64 + 16 * (model.hidden_dim // model.mem_dim)
    assert OnnxModel(out).manifest == man


def test_engine_step_reproduced_by_onnxruntime(model, exported):
    """Track two objects for 9 frames in the engine, then compute frame 10 once with the
    engine and once with the exported graphs fed the engine's own memory."""
    out, man = exported
    ort_model = OnnxModel(out)
    frames, gt = moving_objects_video(n=10, h=120, w=160)
    seg = VideoSegmenter(model, memory="efp", static_memory=True)
    seg.add_prompt(frames[0], obj_id=1, mask=gt[1][0])
    seg.add_prompt(None, obj_id=2, mask=gt[2][0])
    for f in frames[1:9]:
        seg.step(f)
    t = 9
    # the engine's inputs for frame t, as the host side of an ONNX deployment assembles them
    x = model.preprocess(torch.from_numpy(frames[t]).permute(2, 0, 1)[None], resize="pil")
    image = ((x * model.pixel_std + model.pixel_mean) * 255).numpy()
    enc = ort_model.encode_image(image)
    with torch.no_grad():
        ref = model.encode_image(x)
    np.testing.assert_allclose(enc["features"], ref.features.numpy(), atol=1e-4)
    np.testing.assert_allclose(enc["high_res_0"], ref.high_res[0].numpy(), atol=1e-4)
    tmax = max(1, model.cfg.max_obj_ptrs_in_encoder - 1)
    toks = []
    for oid in (1, 2):
        sel = seg.policy.select(seg.objects[oid].bank, t)
        spatial = [(slot, seg._spatial(e)) for slot, e in sel.spatial]
        pointers = [(d, e.obj_ptr) for d, e in sel.pointers]
        assert len(spatial) == 5  # efp: the bank is full and pruned
        with torch.no_grad():
            toks.append(model.padded_memory_tokens(spatial, pointers, tmax, 1, man.slots))
    mem, pos, mask = (torch.cat(v).numpy() for v in zip(*toks))
    rep = lambda a: np.repeat(a, 2, axis=0)  # noqa: E731
    step = ort_model.track_step(
        features=rep(enc["features"]), pos=rep(enc["pos"]), high_res_0=rep(enc["high_res_0"]),
        high_res_1=rep(enc["high_res_1"]), memory=mem, memory_pos=pos, memory_mask=mask,
    )
    res = seg.step(frames[t])
    np.testing.assert_allclose(step["low_res_masks"], res.low_res_logits.numpy(), atol=2e-3)
    assert np.abs(step["low_res_masks"]).max() < 1000  # objects present: real logits, not the no-object fill
    for i, oid in enumerate((1, 2)):
        committed = seg.objects[oid].bank.recent[t].features.float().numpy()
        np.testing.assert_allclose(step["memory_features"][i : i + 1], committed, atol=2e-2)  # stored in bf16
    # one object through the dynamic object axis
    one = ort_model.track_step(**{k: v[:1] for k, v in dict(
        features=enc["features"], pos=enc["pos"], high_res_0=enc["high_res_0"], high_res_1=enc["high_res_1"],
        memory=mem, memory_pos=pos, memory_mask=mask).items()})
    np.testing.assert_allclose(one["low_res_masks"], step["low_res_masks"][:1], atol=1e-4)


def test_cli_export_and_check(tmp_path, capsys):
    from surgsam.cli import main

    assert main(["export", "--model", "nano", "--image-size", "64", "--memory", "fifo", "--out", str(tmp_path)]) == 0
    text = capsys.readouterr().out
    assert "7 spatial + 16 pointer slots" in text
    for line in text.splitlines()[1:]:
        assert float(line.split("torch|")[1].split(";")[0]) < 1e-3, line


def test_runner_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="surgsam export"):
        OnnxModel(tmp_path)
