"""The differentiable clip forward: gradients, multimask, frozen modules, optimisation."""

from __future__ import annotations

import torch

from surgsam.train import LossConfig, PromptConfig, PromptPlan, TrainStep
from surgsam.train.optim import OptimConfig, build_optimizer, freeze_modules, set_train_mode

# Meta's SAM 2 registers no_mem_pos_enc but never uses it (directly_add_no_mem_embed).
UNUSED = {"no_mem_pos_enc"}


def _plan(kind: str, frames: int) -> PromptPlan:
    correct = [] if kind == "mask" else [0, frames - 1]
    return PromptPlan(kind, frames, [0], correct, sorted({0, *correct}))


def test_every_trainable_parameter_gets_a_finite_gradient(nano, batch):
    step = TrainStep(nano, PromptConfig(num_correction_clicks=2), LossConfig())
    t = batch.num_frames
    for i, kind in enumerate(("mask", "box", "point")):
        loss, terms, out = step(batch, seed=i, plan=_plan(kind, t))
        assert torch.isfinite(loss)
        loss.backward()
        if kind == "point":  # single click and tracking: 3 candidates; more clicks: 1
            f0 = out.frames[0]
            assert [s.multimask_logits.shape[1] for s in f0.steps] == [3, 1, 1]
            assert f0.points.shape[1] == 3 and f0.labels.shape[1] == 3
            assert out.frames[1].steps[0].multimask_logits.shape[1] == 3 and len(out.frames[1].steps) == 1
            assert len(out.frames[t - 1].steps) == 3 and out.frames[t - 1].is_cond
        if kind == "box":
            assert out.frames[0].steps[0].multimask_logits.shape[1] == 1
            assert out.frames[0].labels[0, :2].tolist() == [2, 3]
    missing = [n for n, p in nano.named_parameters() if p.grad is None and n not in UNUSED]
    assert not missing, f"no gradient for {missing}"
    bad = [n for n, p in nano.named_parameters() if p.grad is not None and not torch.isfinite(p.grad).all()]
    assert not bad, f"non-finite gradient for {bad}"
    nonzero = [n for n, p in nano.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0]
    assert len(nonzero) > 0.9 * len(list(nano.parameters()))


def test_frozen_modules_get_no_gradient_and_do_not_change(nano, batch):
    frozen = ["image_encoder", "sam_prompt_encoder"]
    names = set(freeze_modules(nano, frozen))
    set_train_mode(nano, frozen)
    before = {n: p.detach().clone() for n, p in nano.named_parameters()}
    opt = build_optimizer(nano, OptimConfig(lr=1e-3, freeze=tuple(frozen)))
    step = TrainStep(nano, PromptConfig(num_correction_clicks=1))
    for i in range(2):
        loss, _, _ = step(batch, seed=i, plan=_plan("point", batch.num_frames))
        loss.backward()
        assert all(p.grad is None for n, p in nano.named_parameters() if n in names)
        opt.step()
        opt.zero_grad(set_to_none=True)
    for n, p in nano.named_parameters():
        if n in names:
            assert torch.equal(p, before[n]), n
    changed = [n for n, p in nano.named_parameters() if n not in names and not torch.equal(p, before[n])]
    assert "sam_mask_decoder.conv_s0.weight" in changed and "memory_attention.layers.0.linear1.weight" in changed


def test_a_few_steps_lower_the_loss_on_a_fixed_batch(nano, batch):
    step = TrainStep(nano, PromptConfig(num_correction_clicks=1))
    opt = build_optimizer(nano, OptimConfig(lr=1e-3, layer_decay=1.0))
    plan = _plan("point", batch.num_frames)
    losses = []
    for _ in range(8):
        torch.manual_seed(0)  # same dropout every step
        loss, _, _ = step(batch, seed=0, plan=plan)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(nano.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        losses.append(float(loss.detach()))
    print(losses)
    assert losses[-1] < 0.7 * losses[0], losses
