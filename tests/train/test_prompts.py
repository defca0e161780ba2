"""Prompt simulation: clicks in error regions, boxes, prompt-type frequencies."""

from __future__ import annotations

import random

import torch

from surgsam.train.prompts import PromptConfig, mask_to_box, plan_prompts, sample_box, sample_error_clicks


def _blobs(n: int, size: int, gen: torch.Generator) -> torch.Tensor:
    """Random rectangles, ``n x size x size`` bool."""
    out = torch.zeros(n, size, size, dtype=torch.bool)
    for i in range(n):
        x0, y0 = torch.randint(0, size - 8, (2,), generator=gen).tolist()
        w, h = torch.randint(3, 8, (2,), generator=gen).tolist()
        out[i, y0 : y0 + h, x0 : x0 + w] = True
    return out


def test_correction_clicks_lie_in_the_error_regions():
    gen = torch.Generator().manual_seed(0)
    gt, pred = _blobs(32, 24, gen), _blobs(32, 24, gen)
    for _ in range(20):
        pts, labels = sample_error_clicks(gt, pred, gen)
        assert pts.shape == (32, 1, 2) and labels.shape == (32, 1) and labels.dtype == torch.int32
        x, y = pts[:, 0, 0].long(), pts[:, 0, 1].long()
        rows = torch.arange(32)
        g, p = gt[rows, y, x], pred[rows, y, x]
        pos = labels[:, 0] == 1
        assert (g & ~p)[pos].all(), "positive clicks must be false negatives"
        assert (p & ~g)[~pos].all(), "negative clicks must be false positives"


def test_first_click_is_inside_the_object_and_perfect_prediction_gives_background_click():
    gen = torch.Generator().manual_seed(1)
    gt = _blobs(16, 20, gen)
    pts, labels = sample_error_clicks(gt, None, gen)
    x, y = pts[:, 0, 0].long(), pts[:, 0, 1].long()
    assert (labels == 1).all() and gt[torch.arange(16), y, x].all()
    pts, labels = sample_error_clicks(gt, gt.clone(), gen)
    x, y = pts[:, 0, 0].long(), pts[:, 0, 1].long()
    assert (labels == 0).all() and not gt[torch.arange(16), y, x].any()


def test_boxes_from_masks_with_bounded_noise():
    gen = torch.Generator().manual_seed(2)
    gt = _blobs(16, 32, gen)
    tight = mask_to_box(gt)
    ys, xs = torch.nonzero(gt[0], as_tuple=True)
    assert tight[0].tolist() == [xs.min().item(), ys.min().item(), xs.max().item(), ys.max().item()]
    exact, labels = sample_box(gt, PromptConfig(box_noise=0.0), gen)
    assert torch.equal(exact.view(16, 4), tight) and labels.tolist() == [[2, 3]] * 16
    noisy, _ = sample_box(gt, PromptConfig(box_noise=0.1, box_noise_px=1024.0), gen)
    w = (tight[:, 2] - tight[:, 0])[:, None]
    h = (tight[:, 3] - tight[:, 1])[:, None]
    bound = torch.cat([w, h, w, h], 1) * 0.1 + 1e-5
    assert ((noisy.view(16, 4) - tight).abs() <= bound).all()
    assert not torch.equal(noisy.view(16, 4), tight)


def test_prompt_type_frequencies_and_frames():
    rng = random.Random(0)
    cfg = PromptConfig()
    kinds = {"point": 0, "box": 0, "mask": 0}
    n = 4000
    for _ in range(n):
        plan = plan_prompts(8, cfg, rng)
        kinds[plan.kind] += 1
        assert plan.init_cond_frames == [0]
        if plan.kind == "mask":
            assert plan.correct_frames == [] and plan.cond_frames == [0]
        else:
            assert plan.correct_frames[0] == 0 and 1 <= len(plan.correct_frames) <= 2
            assert plan.cond_frames == sorted(plan.correct_frames)
        assert plan.processing_order[0] == 0 and sorted(plan.processing_order) == list(range(8))
    assert abs(kinds["mask"] / n - 0.5) < 0.03
    assert abs(kinds["box"] / n - 0.25) < 0.03
    assert abs(kinds["point"] / n - 0.25) < 0.03
    for _ in range(50):  # single images: always clicks or a box, corrected
        plan = plan_prompts(1, cfg, rng)
        assert plan.kind in ("point", "box") and plan.correct_frames == [0]
