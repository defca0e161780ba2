"""ReSurgSAM2's two-stage referring training: step, freezing, groups, resume, CLI."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
import torch

from conftest import SIZE

pytest.importorskip("transformers")

REF_FRAMES, CLIP_FRAMES = 3, 5  # 3 referring + 2 tracked frames in the tests


@pytest.fixture(scope="module")
def ref_root(tmp_path_factory):
    """Three 6-frame synthetic Ref-EndoVis17 videos (expressions with locations)."""
    from surgsam.data.synth import SynthConfig, generate

    root = tmp_path_factory.mktemp("refsynth")
    generate(
        root,
        SynthConfig(width=96, height=64, frames=6, smoke=0.0, motion_blur=False, version=17),
        videos=3,
        seed=0,
        progress=False,
    )
    return root


@pytest.fixture(scope="module")
def ref_sampler(ref_root):
    from surgsam.train import ClipConfig, ClipSampler, open_datasets

    return ClipSampler(
        open_datasets([str(ref_root)]), ClipConfig(num_frames=CLIP_FRAMES, max_objects=2, image_size=SIZE)
    )


@pytest.fixture(scope="module")
def text_cache():
    from surgsam.referring import CLIPTextEncoder
    from surgsam.train import TextCache

    return TextCache(CLIPTextEncoder.tiny())


def _model():
    from surgsam.modeling import build_model
    from surgsam.referring import ReferringSAM2, get_referring_preset

    torch.manual_seed(0)
    return ReferringSAM2(build_model("nano", image_size=SIZE), get_referring_preset("tiny")).train()


def _batch(sampler, i=0):
    from surgsam.train import collate

    return collate([sampler.clip(i, np.random.default_rng(i))])


def _train_cfg(root, out, **kw):
    from surgsam.train import ClipConfig, OptimConfig, ReferringTrainConfig, TrainConfig
    from surgsam.train.recipes import REFERRING_MODULES

    ref = ReferringTrainConfig(stage=2, preset="tiny", text_encoder="clip-tiny", **kw.pop("ref", {}))
    return TrainConfig(
        recipe="test-ref",
        model="nano",
        image_size=SIZE,
        data=(str(root),),
        out=str(out),
        steps=4,
        image_every=0,
        clip=ClipConfig(num_frames=CLIP_FRAMES, max_objects=2, image_size=SIZE),
        seed=3,
        progress=False,
        optim=OptimConfig(
            lr=5e-4, lr_overrides=tuple((m, 2e-3) for m in REFERRING_MODULES), warmup_frac=0.3, layer_decay=1.0
        ),
        referring=ref,
        **kw,
    )


def test_flip_swaps_left_right_in_expressions(ref_root):
    from surgsam.train import ClipConfig, ClipSampler, open_datasets, swap_left_right

    ds = open_datasets([str(ref_root)])
    kw = dict(num_frames=CLIP_FRAMES, image_size=SIZE, reverse_prob=0.0)
    plain, flipped = (
        ClipSampler(ds, ClipConfig(hflip_prob=0.0, **kw)),
        ClipSampler(ds, ClipConfig(hflip_prob=1.0, **kw)),
    )
    sided = 0
    for i in range(plain.num_clips):
        a, b = plain.clip(i, np.random.default_rng(i)), flipped.clip(i, np.random.default_rng(i))
        assert b.flipped and b.obj_ids == a.obj_ids and all(isinstance(t, str) for t in a.texts)
        assert b.texts == [swap_left_right(t) for t in a.texts]
        sided += sum(("left" in t or "right" in t) for t in a.texts)
    assert sided > 0  # the check above did swap something


@pytest.mark.parametrize("stage", [1, 2])
def test_few_steps_on_a_fixed_batch_lower_the_loss(ref_sampler, text_cache, stage):
    from surgsam.train import ReferringTrainConfig, ReferringTrainStep

    model = _model()
    step = ReferringTrainStep(model, ReferringTrainConfig(stage=stage), text_cache)
    batch = _batch(ref_sampler)
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=0.0)
    losses = []
    for _ in range(6):
        torch.manual_seed(0)
        loss, _, out = step(batch, seed=1, track=stage == 2)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert out.plan.kind == ("refer+track" if stage == 2 else "refer")
    assert len(out.frames) == (CLIP_FRAMES if stage == 2 else REF_FRAMES)
    assert out.plan.cond_frames == ([REF_FRAMES - 1] if stage == 2 else [])
    assert losses[-1] < 0.8 * losses[0], losses


# SAM 2 parameters a text-referred clip does not use: click/box embeddings and mask-prompt
# paths (no clicks, no mask prompts), and no_mem_pos_enc, which SAM 2 never reads.
UNUSED_SAM = (
    "sam.sam_prompt_encoder.point_embeddings",
    "sam.sam_prompt_encoder.mask_downscaling",
    "sam.mask_downsample",
    "sam.no_mem_pos_enc",
)


def test_stage2_gradients_reach_every_trainable_part(ref_sampler, text_cache):
    from surgsam.train import ReferringTrainConfig, ReferringTrainStep

    model = _model()
    step = ReferringTrainStep(model, ReferringTrainConfig(stage=2), text_cache)
    loss, _, out = step(_batch(ref_sampler), seed=2, track=True)
    loss.backward()
    assert out.plan.kind == "refer+track"
    missing = []
    for name, p in model.named_parameters():
        if p.grad is None:
            if not any(name.startswith(u) for u in UNUSED_SAM):
                missing.append(name)
            continue
        assert torch.isfinite(p.grad).all(), name
    assert not missing, missing
    for mod in model.referring_modules().values():  # the text side learns
        assert any(float(p.grad.abs().sum()) > 0 for p in mod.parameters())
    for prefix in ("sam.memory_encoder", "sam.memory_attention", "sam.image_encoder", "sam.obj_ptr_proj"):
        grads = [p.grad for n, p in model.named_parameters() if n.startswith(prefix)]
        assert grads and any(float(g.abs().sum()) > 0 for g in grads), prefix


def test_param_groups_and_schedule_of_the_resurgsam2_recipe():
    from surgsam.train import build_optimizer, make_config
    from surgsam.train.optim import CosineSchedule

    cfg = make_config("resurgsam2-stage1")
    assert (
        cfg.referring.stage == 1
        and cfg.clip.num_frames == 3
        and cfg.epochs == 60
        and cfg.referring.freeze_sam_epochs == 5
    )
    assert cfg.optim.warmup_frac == 0.3 and cfg.image_size == 512 and cfg.model == "sam2.1_hiera_s"
    assert make_config("resurgsam2-stage2").clip.num_frames == 10
    model = _model()
    opt = build_optimizer(model, replace(cfg.optim, layer_decay=0.5))
    lrs = {n: g["base_lr"] for g in opt.param_groups for n in g["param_names"]}
    assert lrs["token_projection.layers.0.weight"] == 3e-4 and lrs["language_fusion_mlp.layers.0.weight"] == 3e-4
    assert all(v == 3e-4 for n, v in lrs.items() if n.startswith("cross_modal_fusion."))
    assert lrs["sam.sam_mask_decoder.iou_token.weight"] == 5e-5 and lrs["sam.memory_encoder.out_proj.weight"] == 5e-5
    trunk = [v for n, v in lrs.items() if n.startswith("sam.image_encoder.trunk.")]
    assert min(trunk) < max(trunk) <= 5e-5  # layer decay applies to the nested trunk
    sched = CosineSchedule(opt, 100, 30, 0.1)
    f = [sched.factor(s) for s in (0, 29, 30, 99)]
    assert f[0] == pytest.approx(1 / 30) and f[1] == pytest.approx(1.0) and f[2] == pytest.approx(1.0) and f[3] > 0.1


def test_sam_frozen_first_steps_text_encoder_never_changes(ref_root, tmp_path):
    from surgsam.referring import CLIPTextEncoder
    from surgsam.train import TextCache, Trainer

    enc = CLIPTextEncoder.tiny()
    enc_before = {k: v.clone() for k, v in enc.state_dict().items()}
    cfg = _train_cfg(ref_root, tmp_path / "f", ref={"freeze_sam_steps": 2}, ckpt_every=100)
    tr = Trainer(cfg, text_encoder=TextCache(enc))
    assert tr.sam_freeze_steps == 2
    sam0 = {k: v.clone() for k, v in tr.model.sam.state_dict().items()}
    ref0 = {k: v.clone() for k, v in tr.model.state_dict().items() if not k.startswith("sam.")}
    seen = {}
    orig = tr.step_module.forward

    def spy(batch, seed, track=None):  # gradients while frozen: none on SAM, some on the referring modules
        out = orig(batch, seed, track)
        seen[len(seen)] = (tr.model.sam.training, any(p.requires_grad for p in tr.model.sam.parameters()))
        return out

    tr.step_module.forward = spy
    tr.train(until=2)
    assert seen == {0: (False, False), 1: (False, False)}
    assert all(torch.equal(v, tr.model.sam.state_dict()[k]) for k, v in sam0.items())
    now = tr.model.state_dict()
    assert any(not torch.equal(v, now[k]) for k, v in ref0.items())
    tr.train()
    assert seen[2] == (True, True) and tr.step == 4
    assert any(not torch.equal(v, tr.model.sam.state_dict()[k]) for k, v in sam0.items())
    assert all(torch.equal(v, enc.state_dict()[k]) for k, v in enc_before.items())
    assert not any(p.requires_grad for p in enc.parameters())


def test_resume_reproduces_the_uninterrupted_run(ref_root, tmp_path):
    from surgsam.referring import build_referring_model
    from surgsam.train import Trainer

    full = Trainer(_train_cfg(ref_root, tmp_path / "a", ref={"freeze_sam_steps": 1}, ckpt_every=2))
    full.train()
    part = Trainer(_train_cfg(ref_root, tmp_path / "b", ref={"freeze_sam_steps": 1}, ckpt_every=2))
    part.train(until=2)
    resumed = Trainer(_train_cfg(ref_root, tmp_path / "b", ref={"freeze_sam_steps": 1}, ckpt_every=2), resume=True)
    assert resumed.step == 2
    resumed.train()
    a, b = full.model.state_dict(), resumed.model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    la = [json.loads(x)["loss"] for x in (tmp_path / "a" / "log.jsonl").read_text().splitlines()]
    lb = [json.loads(x)["loss"] for x in (tmp_path / "b" / "log.jsonl").read_text().splitlines()]
    assert la == lb and len(la) == 4
    kinds = {json.loads(x)["prompt"] for x in (tmp_path / "a" / "log.jsonl").read_text().splitlines()}
    assert kinds <= {"refer", "refer+track"}
    m = build_referring_model(checkpoint=tmp_path / "a" / "model.pt")  # no names needed
    assert m.cfg.name == "tiny" and torch.equal(
        m.token_projection.layers[0].weight, a["token_projection.layers.0.weight"]
    )


def test_cli_two_steps_then_segment_with_the_checkpoint(ref_root, tmp_path):
    from surgsam.cli import main
    from surgsam.data import open_dataset
    from surgsam.referring import ReferringSegmenter, build_referring_model

    out = tmp_path / "cli"
    rc = main(
        [
            "train",
            "--recipe",
            "ref-nano-synth",
            "--data",
            str(ref_root),
            "--out",
            str(out),
            "--steps",
            "2",
            "--image-size",
            str(SIZE),
            "--frames",
            str(CLIP_FRAMES),
            "--max-objects",
            "2",
            "--ckpt-every",
            "1",
            "--text-encoder",
            "clip-tiny",
            "--freeze-sam-steps",
            "1",
            "--no-progress",
        ]
    )
    assert rc == 0
    saved = json.loads((out / "train_config.json").read_text())
    assert saved["recipe"] == "ref-nano-synth" and saved["referring"]["stage"] == 2
    assert saved["referring"]["text_encoder"] == "clip-tiny" and saved["referring"]["freeze_sam_steps"] == 1
    assert len((out / "log.jsonl").read_text().splitlines()) == 2
    ckpt = out / "checkpoints" / "step_0000002.pt"
    assert ckpt.is_file() and (out / "model.pt").is_file()
    model = build_referring_model(checkpoint=ckpt)
    assert model.sam.cfg.name == "nano" and model.cfg.text_encoder == "clip-tiny" and model.sam.image_size == SIZE
    # the recipe's MiniLM sentence scale is not carried over to another encoder
    assert saved["referring"]["pooled_scale"] == 1.0 and model.cfg.pooled_scale == 1.0
    assert model.cfg.multimask_output is False  # the recipe's single detection mask
    seg = ReferringSegmenter(model)
    video = open_dataset(ref_root, "valid")[0]
    seg.add_text(1, "the instrument on the left")
    for t in range(3):
        res = seg.step(video.frames[t])
        assert res.masks.shape[0] == 1


def test_cli_stage_one_trains_detection_only(ref_root, tmp_path):
    from surgsam.cli import main
    from surgsam.train import make_config

    out = tmp_path / "s1"
    rc = main(
        [
            "train",
            "--recipe",
            "ref-nano-synth",
            "--stage",
            "1",
            "--frames",
            str(REF_FRAMES),
            "--data",
            str(ref_root),
            "--out",
            str(out),
            "--steps",
            "2",
            "--image-size",
            str(SIZE),
            "--max-objects",
            "2",
            "--text-encoder",
            "clip-tiny",
            "--no-progress",
        ]
    )
    assert rc == 0
    saved = json.loads((out / "train_config.json").read_text())
    assert saved["referring"]["stage"] == 1 and saved["clip"]["merge_same_text"] is True
    assert saved["loss"]["iou_use_l1"] is False  # the recipe's MSE IoU loss (L1 collapses from scratch)
    recipe = make_config("ref-nano-synth").referring
    assert recipe.pooled_scale == pytest.approx(384**0.5) and recipe.multimask_output is False
    logs = [json.loads(x) for x in (out / "log.jsonl").read_text().splitlines()]
    assert [x["prompt"] for x in logs] == ["refer", "refer"] and all(x["frames"] == REF_FRAMES for x in logs)


def test_cli_rejects_referring_options_for_plain_recipes(synth_root, tmp_path, capsys):
    from surgsam.cli import main

    rc = main(
        [
            "train",
            "--recipe",
            "nano-synth",
            "--data",
            str(synth_root),
            "--out",
            str(tmp_path / "x"),
            "--text-encoder",
            "minilm",
            "--steps",
            "1",
        ]
    )
    assert rc == 2 and "referring recipes" in capsys.readouterr().err
    rc = main(
        [
            "train",
            "--recipe",
            "nano-synth",
            "--data",
            str(synth_root),
            "--out",
            str(tmp_path / "y"),
            "--stage",
            "1",
            "--steps",
            "1",
        ]
    )
    assert rc == 2 and "--stage" in capsys.readouterr().err
