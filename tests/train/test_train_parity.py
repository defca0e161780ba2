"""The training forward against Meta's SAM2Base driven the way SAM2Train drives it.

Same weights and input pixels, eval mode (no dropout). Frame 0 is prompted with the
ground-truth mask, one click or a box; with clicks, frames 0 and 2 receive
correction clicks (frame 2 then becomes a conditioning frame for frame 3, as
``add_all_frames_to_correct_as_cond``); the other frames are tracked from memory (fifo,
object pointers); memories come from sigmoid(high-res logits). The reference re-runs the SAM
heads per click with the previous low-res logits, like ``SAM2Train._iter_correct_pt_sampling``;
it is fed our sampled clicks so both sides see the same clicks. Our only deviation from
SAM2Train, the engine's +-32 clamp of fed-back logits, is switched off here.
"""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

import surgsam.train.model_step as model_step
from oracle import build_reference, needs_oracle
from surgsam.modeling import SAM2Model, get_preset
from surgsam.train import ClipConfig, ClipSampler, PromptConfig, PromptPlan, collate, forward_clip, open_datasets

pytestmark = [needs_oracle, pytest.mark.oracle]
NAME, SIZE, FRAMES = "sam2.1_hiera_tiny", 128, 4


def _ref_track_step(ref, t, is_init, feats, pos, sizes, point_inputs, mask_inputs, output_dict, clicks, n_init):
    """SAM2Train.track_step: track, then one SAM-head pass per correction click."""
    out, sam, hr, pix = ref._track_step(
        t, is_init, feats, pos, sizes, point_inputs, mask_inputs, output_dict, FRAMES, False, None
    )
    low, high, ptr, score = sam[3], sam[4], sam[5], sam[6]
    if clicks is not None:
        for k in range(n_init + 1, clicks[0].shape[1] + 1):
            point_inputs = {"point_coords": clicks[0][:, :k], "point_labels": clicks[1][:, :k]}
            sam = ref._forward_sam_heads(pix, point_inputs, low, hr, ref._use_multimask(is_init, point_inputs))
            low, high, ptr, score = sam[3], sam[4], sam[5], sam[6]
    out.update(pred_masks=low, pred_masks_high_res=high, obj_ptr=ptr, object_score_logits=score)
    ref._encode_memory_in_output(feats, sizes, point_inputs, True, high, score, out)
    return out


def _reference_clip(ref, frames, gt, plan, ours):
    backbone_out = ref.forward_image(frames)
    _, feats, pos, sizes = ref._prepare_backbone_features(backbone_out)
    n = gt.shape[1]
    output_dict = {"cond_frame_outputs": {}, "non_cond_frame_outputs": {}}
    outs = {}
    for t in plan.processing_order:
        idx = [t] * n
        init = t in plan.init_cond_frames
        tr = ours.frames[t]
        point_inputs = mask_inputs = None
        n_init = 0
        if init and plan.kind == "mask":
            mask_inputs = gt[t][:, None].float()
        elif init:
            n_init = 2 if plan.kind == "box" else 1
            point_inputs = {"point_coords": tr.points[:, :n_init], "point_labels": tr.labels[:, :n_init]}
        clicks = (tr.points, tr.labels) if t in plan.correct_frames else None
        out = _ref_track_step(
            ref,
            t,
            init,
            [x[:, idx] for x in feats],
            [x[:, idx] for x in pos],
            sizes,
            point_inputs,
            mask_inputs,
            output_dict,
            clicks,
            n_init,
        )
        output_dict["cond_frame_outputs" if t in plan.cond_frames else "non_cond_frame_outputs"][t] = out
        outs[t] = out
    return outs


@pytest.mark.parametrize("kind", ["mask", "point", "box"])
def test_clip_forward_matches_reference(kind, synth_root, monkeypatch):
    monkeypatch.setattr(model_step, "PREV_LOGITS_CLAMP", float("inf"))
    ref = build_reference(NAME, SIZE)
    with torch.no_grad():  # random weights: bias the object-score head towards "present"
        ref.sam_mask_decoder.pred_obj_score_head.layers[-1].bias.fill_(4.0)
    model = SAM2Model(get_preset(NAME, image_size=SIZE))
    model.load_state_dict(ref.state_dict())
    model.eval()
    sampler = ClipSampler(
        open_datasets([str(synth_root)]), ClipConfig(num_frames=FRAMES, max_objects=2, image_size=SIZE)
    )
    batch = collate([sampler.clip(0, np.random.default_rng(0))])
    cfg = PromptConfig(num_correction_clicks=2)
    correct = [] if kind == "mask" else [0, FRAMES - 2]
    plan = PromptPlan(kind, FRAMES, [0], correct, sorted({0, *correct}))
    with torch.no_grad():
        ours = forward_clip(model, batch, plan, cfg, random.Random(0), torch.Generator().manual_seed(0))
        theirs = _reference_clip(ref, batch.frames[0], batch.masks, plan, ours)
    if kind != "mask":
        assert ours.frames[0].points.shape[1] == (3 if kind == "point" else 4)
        f2 = ours.frames[FRAMES - 2]
        assert f2.points.shape[1] == 2 and len(f2.steps) == 3 and f2.is_cond
    for t in range(FRAMES):
        a, b = ours.frames[t].high_res_masks, theirs[t]["pred_masks_high_res"]
        torch.testing.assert_close(a, b, atol=2e-4, rtol=1e-4, msg=f"frame {t}")
        torch.testing.assert_close(
            ours.frames[t].steps[-1].object_score_logits, theirs[t]["object_score_logits"], atol=2e-4, rtol=1e-4
        )
        assert 0 < (a > 0).float().mean() < 1
