"""The auxiliary per-pixel object-type loss: targets, head gradients, weight 0 = the old
training bit for bit, checkpoints without the head, exact resume with it, the CLI."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
import torch

from conftest import FRAMES, SIZE
from surgsam.modeling import build_model, get_preset
from surgsam.modeling.sam2 import SAM2Model
from surgsam.train import AuxTypeConfig, ClipConfig, ClipSampler, PromptConfig, Trainer, TrainStep, collate, make_config
from surgsam.train import open_datasets
from surgsam.train.aux_types import (
    IGNORE,
    INSTRUMENT_CLASSES,
    TYPE_NAMES,
    TypeHead,
    type_index,
    type_loss,
    type_map,
    video_categories,
)


@pytest.fixture(scope="module")
def typed_sampler(synth_root):
    cfg = ClipConfig(num_frames=FRAMES, max_objects=2, image_size=SIZE, type_maps=True)
    return ClipSampler(open_datasets([str(synth_root)]), cfg)


def _model():
    torch.manual_seed(0)
    return SAM2Model(get_preset("nano", image_size=SIZE))


def _cfg(out, data, steps=4, **kw):
    cfg = make_config(
        "nano-synth",
        data=(str(data),),
        out=str(out),
        steps=steps,
        image_size=SIZE,
        image_every=2,
        image_batch_size=2,
        ckpt_every=2,
        progress=False,
        **kw,
    )
    return replace(
        cfg, clip=replace(cfg.clip, num_frames=FRAMES, max_objects=2), prompts=PromptConfig(num_correction_clicks=2)
    )


def test_type_map_and_vocabulary():
    assert len(TYPE_NAMES) == 12 and TYPE_NAMES[0] == "bipolar forceps" and TYPE_NAMES[-1] == "small-intestine"
    assert INSTRUMENT_CLASSES == tuple(range(1, 10))
    assert type_index("Suction Instrument") == type_index("suction") == 5
    assert type_index("small intestine") == 12 and type_index("harmonic scalpel") == IGNORE
    lab = np.array([[0, 1, 2], [3, 17, 250]], dtype=np.uint8)
    out = type_map(
        lab, {1: "prograsp forceps", 2: "something new", 17: "small-intestine", 3: "clip applier"}, void_id=3
    )
    assert out.dtype == np.uint8
    assert out.tolist() == [[0, 2, IGNORE], [IGNORE, 12, IGNORE]]
    assert type_map(np.array([[0, 300]]), None).tolist() == [[0, IGNORE]]  # ids above 255, no categories


def test_type_loss_balanced_and_plain_by_hand():
    torch.manual_seed(0)
    logits = torch.randn(2, 13, 4, 4, requires_grad=True)
    tgt = torch.zeros(2, 4, 4, dtype=torch.uint8)
    tgt[0, :2, :2] = 3  # 4 instrument pixels
    tgt[1, 0, 0] = 12  # 1 tissue pixel
    tgt[1, 3, 3] = IGNORE
    ce = torch.nn.functional.cross_entropy(logits, tgt.long(), ignore_index=IGNORE, reduction="none")
    want = torch.stack([ce[tgt == k].mean() for k in (0, 3, 12)]).mean()
    loss, acc = type_loss(logits, tgt)
    assert torch.allclose(loss, want)
    hit = (logits.argmax(1)[tgt == 3] == 3).float().mean()
    assert torch.allclose(acc, hit)  # instruments only
    plain, _ = type_loss(logits, tgt, "pixel")
    assert torch.allclose(plain, ce[tgt != IGNORE].mean())
    loss.backward()
    assert torch.isfinite(logits.grad).all() and logits.grad[1, :, 3, 3].abs().sum() == 0  # ignored pixel
    # an all-ignored batch gives 0 with a graph; no instrument pixel gives NaN accuracy
    zero, nan = type_loss(logits, torch.full_like(tgt, IGNORE))
    assert zero.item() == 0 and zero.requires_grad and nan.isnan()
    with pytest.raises(ValueError, match="balance"):
        AuxTypeConfig(1.0, balance="median")


def test_sampler_type_maps_match_the_masks_and_draw_nothing_random(synth_root, sampler, typed_sampler):
    for i in range(4):
        a, b = sampler.clip(i, np.random.default_rng(i)), typed_sampler.clip(i, np.random.default_rng(i))
        assert a.types is None and torch.equal(a.frames, b.frames) and torch.equal(a.masks, b.masks)
        assert b.types.shape == (FRAMES, SIZE, SIZE) and b.types.dtype == torch.uint8
        cats = video_categories(next(v for v in typed_sampler.videos if v.name == b.video))
        for k, oid in enumerate(b.obj_ids):  # an object's pixels carry its category (nearest resize: most)
            m = b.masks[:, k]
            if m.sum() > 20:
                frac = (b.types[m] == type_index(cats[oid])).float().mean()
                assert frac > 0.8, (b.video, oid, frac)
        assert (b.types == 0).any() and ((b.types > 0) & (b.types != IGNORE)).any()
    img = typed_sampler.image(0, np.random.default_rng(0))
    assert img.types.shape == (1, SIZE, SIZE)
    batch = collate([typed_sampler.clip(0, np.random.default_rng(0)), typed_sampler.clip(1, np.random.default_rng(1))])
    assert batch.types.shape == (2, FRAMES, SIZE, SIZE) and batch.to("cpu").types is not None


def test_head_and_image_encoder_get_gradients_from_the_type_loss(typed_sampler):
    model = _model().train()
    batch = collate([typed_sampler.clip(0, np.random.default_rng(0))])
    for level in ("s16", "s4", "s16+s4"):
        head = TypeHead.for_model(model, AuxTypeConfig(1.0, level))
        model.zero_grad(set_to_none=True)
        feats = model.encode_image(batch.frames.flatten(0, 1))
        logits = head(feats)
        assert logits.shape == (FRAMES, AuxTypeConfig().num_classes, SIZE // 4, SIZE // 4)
        loss, acc = type_loss(logits, batch.types.flatten(0, 1))
        assert torch.isfinite(loss) and loss > 0 and (0.0 <= float(acc) <= 1.0 or acc.isnan())
        loss.backward()
        for n, p in head.named_parameters():
            assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, (level, n)
        if "s16" in level:  # the type loss reaches the encoder's first layer
            g = model.image_encoder.trunk.patch_embed.proj.weight.grad
            assert g is not None and g.abs().sum() > 0
    # in the training step: the total adds weight x the type loss, the SAM 2 terms are unchanged
    torch.manual_seed(0)
    head = TypeHead.for_model(model, AuxTypeConfig(0.5))
    plain, aux = TrainStep(model, PromptConfig()), TrainStep(model, PromptConfig(), type_head=head, aux_weight=0.5)
    torch.manual_seed(1)
    l0, t0, _ = plain(batch, seed=3)
    torch.manual_seed(1)
    l1, t1, _ = aux(batch, seed=3)
    assert t0.aux_type is None and t1.aux_type is not None
    for name in ("mask", "dice", "iou", "cls"):
        assert torch.equal(getattr(t0, name), getattr(t1, name)), name
    assert torch.allclose(l1, l0 + 0.5 * t1.aux_type)
    with pytest.raises(ValueError, match="type maps"):
        aux(replace(batch, types=None), seed=3)


def test_weight_zero_is_the_old_training_bit_for_bit(tmp_path, synth_root, sampler):
    old = Trainer(_cfg(tmp_path / "a", synth_root), model=_model(), sampler=sampler)
    old.train()
    off = _cfg(tmp_path / "b", synth_root, aux_type=AuxTypeConfig(weight=0.0, level="s16+s4"))
    new = Trainer(off, model=_model(), sampler=sampler)
    assert new.type_head is None and not new.cfg.clip.type_maps
    new.train()
    for (n, p), q in zip(old.model.named_parameters(), new.model.parameters()):
        assert torch.equal(p, q), n
    la = [json.loads(x) for x in (tmp_path / "a" / "log.jsonl").read_text().splitlines()]
    lb = [json.loads(x) for x in (tmp_path / "b" / "log.jsonl").read_text().splitlines()]
    assert [r["loss"] for r in la] == [r["loss"] for r in lb] and "loss_aux_type" not in lb[0]


def test_checkpoints_hold_no_head_and_resume_is_exact(tmp_path, synth_root, typed_sampler):
    aux = AuxTypeConfig(weight=1.0)
    full = Trainer(_cfg(tmp_path / "a", synth_root, aux_type=aux), model=_model(), sampler=typed_sampler)
    head0 = {k: v.clone() for k, v in full.type_head.state_dict().items()}
    full.train()
    assert any(not torch.equal(head0[k], v) for k, v in full.type_head.state_dict().items())  # the head trained
    lrs = {g["name"]: g["base_lr"] for g in full.optimizer.param_groups}
    assert lrs["aux_type"] == 10 * lrs["rest"]  # AuxTypeConfig.lr_scale
    # checkpoints have exactly the model's keys: they load strictly into a plain model
    fresh = set(build_model("nano", image_size=SIZE).state_dict())
    for path in (tmp_path / "a" / "model.pt", tmp_path / "a" / "checkpoints" / "step_0000004.pt"):
        from surgsam.modeling import read_checkpoint

        assert set(read_checkpoint(path).state_dict) == fresh
        m = build_model(checkpoint=path)
        assert torch.equal(m.no_mem_embed, full.model.no_mem_embed.cpu())
    state = torch.load(tmp_path / "a" / "checkpoints" / "step_0000004.state.pt", weights_only=True)
    assert set(state["aux_type_head"]) == {"s16.weight", "s16.bias"}
    log = [json.loads(x) for x in (tmp_path / "a" / "log.jsonl").read_text().splitlines()]
    assert all(r["loss_aux_type"] > 0 for r in log) and "aux_type_acc" in log[0]
    # resume from step 2 reproduces the uninterrupted run, head included
    first = Trainer(_cfg(tmp_path / "b", synth_root, aux_type=aux), model=_model(), sampler=typed_sampler)
    first.train(until=2)
    resumed = Trainer(
        _cfg(tmp_path / "b", synth_root, aux_type=aux), model=_model(), sampler=typed_sampler, resume=True
    )
    assert resumed.step == 2
    resumed.train()
    for (n, p), q in zip(full.model.named_parameters(), resumed.model.parameters()):
        assert torch.equal(p, q), n
    for k, v in full.type_head.state_dict().items():
        assert torch.equal(v, resumed.type_head.state_dict()[k]), k
    # the head needs a sampler with type maps; a run without the head is not resumed with one
    plain = ClipSampler(open_datasets([str(synth_root)]), ClipConfig(num_frames=FRAMES, max_objects=2, image_size=SIZE))
    with pytest.raises(ValueError, match="type_maps"):
        Trainer(_cfg(tmp_path / "c", synth_root, aux_type=aux), model=_model(), sampler=plain)
    Trainer(_cfg(tmp_path / "d", synth_root, steps=2), model=_model(), sampler=plain).train()
    with pytest.raises(ValueError, match="without"):
        Trainer(_cfg(tmp_path / "d", synth_root, aux_type=aux), model=_model(), sampler=typed_sampler, resume=True)


def test_cli_aux_type_options(tmp_path, synth_root):
    from surgsam.cli import main

    out = tmp_path / "cli"
    rc = main(
        [
            "train",
            "--recipe",
            "nano-synth",
            "--data",
            str(synth_root),
            "--out",
            str(out),
            "--steps",
            "2",
            "--image-size",
            str(SIZE),
            "--frames",
            str(FRAMES),
            "--max-objects",
            "1",
            "--ckpt-every",
            "1",
            "--aux-type-loss",
            "0.5",
            "--aux-type-level",
            "s16+s4",
            "--aux-type-lr-scale",
            "3",
            "--aux-type-balance",
            "pixel",
            "--keep-checkpoints",
            "0",
            "--no-progress",
        ]
    )
    assert rc == 0
    saved = json.loads((out / "train_config.json").read_text())
    assert (
        saved["aux_type"] == {"weight": 0.5, "level": "s16+s4", "balance": "pixel", "lr_scale": 3.0}
        and saved["clip"]["type_maps"] is True
    )
    assert saved["keep_checkpoints"] == 0
    assert len(list((out / "checkpoints").glob("step_*.state.pt"))) == 2  # nothing pruned
    rec = json.loads((out / "log.jsonl").read_text().splitlines()[0])
    assert rec["loss_aux_type"] > 0
    assert (
        main(
            [
                "train",
                "--recipe",
                "nano-synth",
                "--data",
                str(synth_root),
                "--out",
                str(out / "x"),
                "--aux-type-loss",
                "-1",
            ]
        )
        == 2
    )
    assert (
        main(
            [
                "train",
                "--recipe",
                "ref-nano-synth",
                "--data",
                str(synth_root),
                "--out",
                str(out / "y"),
                "--aux-type-loss",
                "1",
            ]
        )
        == 2
    )
