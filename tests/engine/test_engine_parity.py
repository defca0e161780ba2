"""Our streaming engine (fifo) against Meta's SAM2VideoPredictor with identical weights.

20 synthetic frames; object 1 from a mask on frame 0, object 2 from one click on frame 10
(added mid-stream). Meta is driven the streaming way: propagate 0..9, add the click, then
propagate 10..19, and it sees exactly our preprocessed frames.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from oracle import build_reference, needs_oracle
from surgsam.engine import VideoSegmenter
from surgsam.modeling import build_model
from synthetic import moving_objects_video

pytestmark = [needs_oracle, pytest.mark.oracle]


def iou(a: np.ndarray, b: np.ndarray) -> float:
    u = np.logical_or(a, b).sum()
    return 1.0 if u == 0 else float(np.logical_and(a, b).sum() / u)


@pytest.mark.parametrize("name", ["sam2.1_hiera_tiny", "sam2_hiera_tiny"])
def test_fifo_matches_reference_predictor(name, tmp_path):
    size = 512
    frames, gt = moving_objects_video()
    n, h, w = frames.shape[:3]
    ref = build_reference(name, size, video=True)
    with torch.no_grad():  # random weights: bias the object-score head towards "present"
        ref.sam_mask_decoder.pred_obj_score_head.layers[-1].bias.fill_(4.0)
    ckpt = tmp_path / "w.pt"
    torch.save({"model": ref.state_dict()}, ckpt)
    model = build_model(name, image_size=size, checkpoint=ckpt)

    jpg = tmp_path / "frames"
    jpg.mkdir()
    for i, f in enumerate(frames):
        Image.fromarray(f).save(jpg / f"{i:05d}.jpg")
    with torch.inference_mode():
        images = torch.cat([model.preprocess(torch.from_numpy(f).permute(2, 0, 1)[None]) for f in frames])
        state = ref.init_state(video_path=str(jpg))
        state["images"] = images  # same input pixels on both sides
        state["cached_features"] = {}
        click = np.array([[190.0 - 30, 120.0]], dtype=np.float32)  # on object 2 at frame 10
        ref_out = {}
        _, _, m0 = ref.add_new_mask(state, 0, 1, gt[1][0])
        for t, ids, m in ref.propagate_in_video(state, start_frame_idx=0, max_frame_num_to_track=9):
            ref_out[t] = (list(ids), m[:, 0].clone())
        ref.add_new_points_or_box(state, 10, 2, points=click, labels=np.array([1], np.int32))
        for t, ids, m in ref.propagate_in_video(state, start_frame_idx=10):
            ref_out[t] = (list(ids), m[:, 0].clone())

    seg = VideoSegmenter(model, memory="fifo", num_frames=n)
    ours = {}
    for t in range(n):
        if t == 0:
            r = seg.add_prompt(frames[0], obj_id=1, mask=gt[1][0])
        elif t == 10:
            r = seg.add_prompt(frames[10], obj_id=2, points=click, labels=[1])
        else:
            r = seg.step(frames[t])
        ours[t] = r
    worst_iou, worst_logit, nontrivial = 1.0, 0.0, 0
    for t in range(n):
        ids, ref_logits = ref_out[t]
        assert ours[t].obj_ids == ids, f"frame {t}: objects {ours[t].obj_ids} vs {ids}"
        ol = ours[t].logits()
        for k in range(len(ids)):
            rl = ref_logits[k]
            d = (ol[k] - rl).abs().max().item()
            worst_logit = max(worst_logit, d)
            j = iou(ol[k].numpy() > 0, rl.numpy() > 0)
            worst_iou = min(worst_iou, j)
            nontrivial += int((rl > 0).any().item() and (rl <= 0).any().item())
            assert j >= 0.999, f"frame {t} obj {ids[k]}: IoU {j:.5f}"
            assert d <= 1e-3, f"frame {t} obj {ids[k]}: logits differ by {d:.3g}"
    print(f"\n{name}: worst IoU {worst_iou:.6f}, worst |logit diff| {worst_logit:.2e}, non-trivial masks {nontrivial}/30")
    assert nontrivial >= 15, "random-weight masks were mostly empty/full: the comparison would be vacuous"
