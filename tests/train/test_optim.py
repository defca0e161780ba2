"""Parameter groups, weight decay, layer decay, schedule, frozen modules."""

from __future__ import annotations

import pytest

from surgsam.train.optim import (
    CosineSchedule,
    OptimConfig,
    build_optimizer,
    freeze_modules,
    param_groups,
    set_train_mode,
    warmup_warning,
)


def _group_of(groups, name):
    return next(g for g in groups if name in g["param_names"])


def test_weight_decay_and_layer_decay(nano):
    cfg = OptimConfig(
        lr=1e-3, lr_image_encoder=5e-4, weight_decay=0.1, layer_decay=0.9, lr_overrides=(("memory_attention", 2e-4),)
    )
    groups = param_groups(nano, cfg)
    wd = {n: g["weight_decay"] for g in groups for n in g["param_names"]}
    lr = {n: g["lr"] for g in groups for n in g["param_names"]}
    assert wd["sam_mask_decoder.transformer.layers.0.self_attn.q_proj.weight"] == 0.1
    assert wd["memory_encoder.pix_feat_proj.weight"] == 0.1
    for name in (
        "sam_mask_decoder.transformer.layers.0.self_attn.q_proj.bias",
        "image_encoder.trunk.blocks.0.norm1.weight",
        "memory_encoder.fuser.layers.0.norm.weight",
        "sam_prompt_encoder.point_embeddings.0.weight",
        "sam_mask_decoder.iou_token.weight",
        "maskmem_tpos_enc",
        "no_mem_embed",
        "image_encoder.trunk.pos_embed",
    ):
        assert wd[name] == 0.0, name
    blocks = 5  # nano trunk depth
    assert lr["image_encoder.trunk.blocks.4.attn.qkv.weight"] == pytest.approx(5e-4 * 0.9)
    assert lr["image_encoder.trunk.blocks.0.attn.qkv.weight"] == pytest.approx(5e-4 * 0.9**blocks)
    assert lr["image_encoder.trunk.patch_embed.proj.weight"] == pytest.approx(5e-4 * 0.9 ** (blocks + 1))
    assert lr["image_encoder.neck.convs.0.conv.weight"] == pytest.approx(5e-4)
    assert lr["memory_attention.layers.0.linear1.weight"] == pytest.approx(2e-4)
    assert lr["sam_mask_decoder.conv_s0.weight"] == pytest.approx(1e-3)
    assert sum(len(g["params"]) for g in groups) == len(list(nano.parameters()))


def test_warmup_then_cosine_to_a_tenth(nano):
    opt = build_optimizer(nano, OptimConfig(lr=1e-3, layer_decay=1.0))
    sched = CosineSchedule(opt, total_steps=110, warmup_steps=10, min_lr_ratio=0.1)
    lrs = []
    for s in range(110):
        sched.set(s)
        lrs.append(opt.param_groups[0]["lr"])
    assert lrs[0] == pytest.approx(1e-4) and lrs[9] == pytest.approx(1e-3)
    assert all(a <= b + 1e-15 for a, b in zip(lrs[:10], lrs[1:10]))
    assert all(a >= b - 1e-15 for a, b in zip(lrs[10:], lrs[11:]))
    assert lrs[-1] == pytest.approx(1e-4, rel=1e-2)
    sched.set(110)
    assert opt.param_groups[0]["lr"] == pytest.approx(1e-4)


def test_a_run_inside_its_warmup_is_named():
    """Issue 18: a 50-step fine-tune inside the 300-step warm-up said nothing."""
    line = warmup_warning(50, 300, 5e-4)
    assert line is not None and "\n" not in line and line.startswith("warning:")
    assert "whole 50-step run" in line and "300-step" in line and "17% of lr 0.0005" in line and "--warmup" in line
    assert "100% of lr" in warmup_warning(300, 300, 5e-4)  # reaches the peak on its last step, never decays
    assert warmup_warning(301, 300, 5e-4) is None and warmup_warning(50, 0, 5e-4) is None


def test_frozen_modules(nano):
    names = freeze_modules(nano, ["image_encoder", "sam_prompt_encoder"])
    assert names and all(n.startswith(("image_encoder.", "sam_prompt_encoder.")) for n in names)
    set_train_mode(nano, ["image_encoder", "sam_prompt_encoder"])
    assert not nano.image_encoder.training and nano.memory_attention.training
    opt = build_optimizer(nano, OptimConfig())
    in_opt = {id(p) for g in opt.param_groups for p in g["params"]}
    assert all(id(p) not in in_opt for n, p in nano.named_parameters() if n in names)
    with pytest.raises(ValueError):
        freeze_modules(nano, ["no_such_module"])
