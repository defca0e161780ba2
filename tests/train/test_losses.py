"""SAM 2 losses against hand-computed values."""

from __future__ import annotations

import math

import pytest
import torch

from surgsam.train.losses import (
    DecoderStep,
    LossConfig,
    dice_loss,
    frame_loss,
    iou_targets,
    sam2_loss,
    sigmoid_focal_loss,
)


def _sig(x):
    return 1 / (1 + math.exp(-x))


def test_focal_loss_by_hand():
    logits = torch.tensor([0.0, 2.0]).view(1, 1, 1, 2)
    target = torch.tensor([1.0, 0.0]).view(1, 1, 1, 2)
    # pixel 1: p=0.5, target 1 -> alpha 0.25 * (1-0.5)^2 * ln 2
    a = 0.25 * 0.25 * math.log(2)
    # pixel 2: p=sigmoid(2), target 0 -> (1-alpha) * p^2 * -ln(1-p)
    p = _sig(2.0)
    b = 0.75 * p**2 * -math.log(1 - p)
    got = sigmoid_focal_loss(logits, target, 0.25, 2.0)
    assert got.shape == (1, 1)
    assert got.item() == pytest.approx((a + b) / 2, rel=1e-6)
    # gamma 0 and alpha < 0: plain BCE
    bce = sigmoid_focal_loss(logits, target, -1, 0.0).item()
    assert bce == pytest.approx((math.log(2) + -math.log(1 - p)) / 2, rel=1e-6)


def test_dice_loss_by_hand():
    logits = torch.tensor([0.0, 100.0, -100.0]).view(1, 1, 1, 3)
    target = torch.tensor([1.0, 1.0, 0.0]).view(1, 1, 1, 3)
    # sigmoid = (0.5, 1, 0): numerator 2*1.5 + 1 = 4, denominator 1.5 + 2 + 1 = 4.5
    assert dice_loss(logits, target).item() == pytest.approx(1 - 4 / 4.5, rel=1e-6)


def test_iou_targets():
    logits = torch.tensor([[1.0, 1.0, -1.0, -1.0], [1.0, -1.0, -1.0, -1.0]]).view(1, 2, 1, 4)
    target = torch.tensor([1.0, 0.0, 1.0, 0.0]).view(1, 1, 1, 4).expand(1, 2, 1, 4)
    assert iou_targets(logits, target).tolist() == [[pytest.approx(1 / 3), pytest.approx(1 / 2)]]
    # empty prediction and empty target: IoU 0 (union clamped to 1)
    assert iou_targets(-torch.ones(1, 1, 2, 2), torch.zeros(1, 1, 2, 2)).item() == 0.0


def _multimask_case():
    target = torch.zeros(1, 4, 4, dtype=torch.bool)
    target[0, :2, :2] = True
    good = torch.where(target[0], 8.0, -8.0)
    bad = -good
    logits = torch.stack([bad, good, torch.zeros(4, 4)])[None].requires_grad_(True)  # 1 x 3 x 4 x 4
    ious = torch.tensor([[0.5, 0.9, 0.1]], requires_grad=True)
    score = torch.tensor([[3.0]], requires_grad=True)
    return DecoderStep(logits, ious, score), target


def test_multimask_backprops_only_the_lowest_loss_mask_and_supervises_all_ious():
    step, target = _multimask_case()
    cfg = LossConfig()
    terms = frame_loss(step, target, num_objects=1.0, cfg=cfg)
    t = target[:, None].float()
    focal = sigmoid_focal_loss(step.multimask_logits.detach(), t.expand(1, 3, 4, 4))
    dice = dice_loss(step.multimask_logits.detach(), t.expand(1, 3, 4, 4))
    best = int((20 * focal + dice).argmin())
    assert best == 1
    assert terms.mask.item() == pytest.approx(focal[0, 1].item(), rel=1e-6)
    assert terms.dice.item() == pytest.approx(dice[0, 1].item(), rel=1e-6)
    actual = torch.tensor([0.0, 1.0, 0.0])  # bad: IoU 0; good: 1; zeros (logit 0 is not > 0): 0
    expected_iou = (step.ious.detach()[0] - actual).abs().mean().item()
    assert terms.iou.item() == pytest.approx(expected_iou, rel=1e-6)
    assert terms.cls.item() == pytest.approx(-math.log(_sig(3.0)), rel=1e-6)
    assert terms.total.item() == pytest.approx(
        20 * terms.mask.item() + terms.dice.item() + terms.iou.item() + terms.cls.item(), rel=1e-6
    )
    (20 * terms.mask + terms.dice).backward()
    g = step.multimask_logits.grad[0]
    assert g[1].abs().sum() > 0
    assert g[0].abs().sum() == 0 and g[2].abs().sum() == 0


def test_absent_object_only_pays_the_object_score():
    step, _ = _multimask_case()
    empty = torch.zeros(1, 4, 4, dtype=torch.bool)
    terms = frame_loss(step, empty, num_objects=1.0)
    assert terms.mask.item() == 0 and terms.dice.item() == 0 and terms.iou.item() == 0
    assert terms.cls.item() == pytest.approx(-math.log(1 - _sig(3.0)), rel=1e-6)


def test_absent_weight_scales_only_the_absent_objects_score_term():
    """``weight_absent`` multiplies what an absent object pays (its object-score term) in the
    total; present objects and the logged (unweighted) terms do not change; 1 is SAM 2's loss."""
    step, target = _multimask_case()
    empty = torch.zeros(1, 4, 4, dtype=torch.bool)
    base, heavy = LossConfig(), LossConfig(weight_absent=3.0)
    absent, absent3 = frame_loss(step, empty, 1.0, base), frame_loss(step, empty, 1.0, heavy)
    assert absent3.total.item() == pytest.approx(3 * absent.total.item(), rel=1e-6)
    assert absent3.cls.item() == absent.cls.item()
    assert torch.equal(frame_loss(step, target, 1.0, heavy).total, frame_loss(step, target, 1.0, base).total)
    # one present and one absent object in one call: only the absent one's term is weighted
    two = DecoderStep(
        step.multimask_logits.repeat(2, 1, 1, 1), step.ious.repeat(2, 1), step.object_score_logits.repeat(2, 1)
    )
    mixed = torch.cat([target, empty])
    diff = frame_loss(two, mixed, 2.0, heavy).total - frame_loss(two, mixed, 2.0, base).total
    assert diff.item() == pytest.approx(2 * absent.cls.item() / 2.0, rel=1e-5)
    for bad in (-0.5, float("nan")):
        with pytest.raises(ValueError, match="weight_absent must be >= 0"):
            LossConfig(weight_absent=bad)


def test_normalised_by_number_of_objects_and_summed_over_steps():
    step, target = _multimask_case()
    one = frame_loss(step, target, 1.0)
    two = DecoderStep(
        step.multimask_logits.repeat(2, 1, 1, 1), step.ious.repeat(2, 1), step.object_score_logits.repeat(2, 1)
    )
    both = frame_loss(two, target.repeat(2, 1, 1), 2.0)
    assert both.total.item() == pytest.approx(one.total.item(), rel=1e-6)
    # two frames, the second with two decoder calls: three times the single loss
    total = sam2_loss([[step], [step, step]], target[None].repeat(2, 1, 1, 1), 1.0)
    assert total.total.item() == pytest.approx(3 * one.total.item(), rel=1e-6)
