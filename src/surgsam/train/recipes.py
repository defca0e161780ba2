"""Named training recipes: complete :class:`TrainConfig` defaults, overridable field by field.

* ``surgsam2`` — Surgical SAM 2's fine-tuning (SPEC §4): an official SAM 2(.1) Hiera-S
  checkpoint at 512 px, image encoder and prompt encoder frozen, mask decoder and memory
  modules trained; 8-frame clips with up to 3 objects alternating with image batches;
  AdamW lr 5e-5, weight decay 0.1 (0 for bias/norm/embeddings), layer decay 0.9, cosine to
  lr/10, no warm-up, gradient clip 0.1; SAM 2 losses and prompt simulation; bf16 on GPU.
* ``nano-synth`` — the embedded demo model: the ``nano`` preset at 256 px, everything trained
  from random init on synthetic videos; lr 5e-4 with a 300-step warm-up, cosine to lr/10,
  no layer decay, 30% of clips click/box-prompted, MSE for the IoU head; otherwise as above.
* ``resurgsam2-stage1`` / ``resurgsam2-stage2`` — ReSurgSAM2's referring training (SPEC §3-4) on
  ``sam2.1_hiera_s`` at 512 px with the ``resurgsam2`` referring preset (CLIP text tower,
  frozen): stage 1 = detection on 3-frame clips for 60 epochs, the SAM 2 part frozen for the
  first 5; stage 2 = 3 referring + 7 tracked frames mixed 50/50 with referring-only clips;
  lr 5e-5 for the SAM 2 part (layer decay 0.9 in the trunk) and 3e-4 for the token projection,
  sentence MLP and CSTMamba; 30% linear warm-up then cosine to lr/10; videos only. ``--init``
  a SAM 2 checkpoint (stage 1) or a referring checkpoint (stage 2: the stage-1 result).
* ``ref-nano-synth`` — the same two-stage scheme at demo scale: ``nano`` at 256 px with the
  ``tiny`` referring branch on the embedded all-MiniLM-L6-v2 encoder (384 wide), stage-2 clips
  (referring-only half the time) on synthetic Ref-EndoVis data, MSE for the IoU head as in
  ``nano-synth``; from a nano SAM checkpoint (``--init``, e.g. the nano-synth result) or random
  weights.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from ..referring.config import pooled_scale_for
from .clips import ClipConfig
from .losses import LossConfig
from .optim import OptimConfig
from .prompts import PromptConfig
from .referring_step import ReferringTrainConfig
from .trainer import TrainConfig

__all__ = [
    "RECIPES",
    "make_config",
    "surgsam2",
    "nano_synth",
    "resurgsam2_stage1",
    "resurgsam2_stage2",
    "ref_nano_synth",
]

REFERRING_MODULES = ("token_projection", "language_fusion_mlp", "cross_modal_fusion")


def surgsam2() -> TrainConfig:
    return TrainConfig(
        recipe="surgsam2",
        model="sam2.1_hiera_s",
        image_size=512,
        steps=0,
        epochs=30.0,
        batch_size=1,
        image_batch_size=4,
        image_every=2,  # video, image, video, image, ...
        clip=ClipConfig(num_frames=8, max_objects=3, image_size=512),
        prompts=PromptConfig(),
        optim=OptimConfig(
            lr=5e-5,
            weight_decay=0.1,
            layer_decay=0.9,
            warmup_steps=0,
            min_lr_ratio=0.1,
            grad_clip=0.1,
            freeze=("image_encoder", "sam_prompt_encoder"),
        ),
        ckpt_every=1000,
    )


def nano_synth() -> TrainConfig:
    return TrainConfig(
        recipe="nano-synth",
        model="nano",
        image_size=256,
        steps=20000,
        batch_size=1,
        image_batch_size=4,
        image_every=4,  # three video batches, then one image batch
        # 30% of clips start where an object enters the view: objects prompted on their first
        # sliver were lost on the next frame until the model saw such clips
        clip=ClipConfig(num_frames=8, max_objects=3, image_size=256, entry_prob=0.3),
        # mostly mask-prompted clips (the demo's and the evaluation's prompt); 30% click/box
        prompts=PromptConfig(prob_point_input=0.3),
        # SAM's MSE for the IoU head: from random init SAM 2's L1 regresses it to ~0 for every
        # candidate, and the engine then picks candidates blindly (tissue masks were lost)
        loss=LossConfig(iou_use_l1=False),
        # lr 1e-3 was unstable at batch 1 (loss spikes), 2e-4 slow
        optim=OptimConfig(
            lr=5e-4, weight_decay=0.1, layer_decay=1.0, warmup_steps=300, min_lr_ratio=0.1, grad_clip=0.1, freeze=()
        ),
        ckpt_every=1000,
    )


def _resurgsam2(stage: int, epochs: float, frames: int, freeze_epochs: float) -> TrainConfig:
    return TrainConfig(
        recipe=f"resurgsam2-stage{stage}",
        model="sam2.1_hiera_s",
        image_size=512,
        steps=0,
        epochs=epochs,
        batch_size=1,
        image_every=0,  # videos only
        clip=ClipConfig(num_frames=frames, max_objects=3, image_size=512, merge_same_text=True),
        prompts=PromptConfig(),
        optim=OptimConfig(
            lr=5e-5,
            lr_overrides=tuple((m, 3e-4) for m in REFERRING_MODULES),
            weight_decay=0.1,
            layer_decay=0.9,
            warmup_frac=0.3,
            min_lr_ratio=0.1,
            grad_clip=0.1,
            freeze=(),
        ),
        referring=ReferringTrainConfig(
            stage=stage, preset="resurgsam2", ref_frames=3, referring_only_prob=0.5, freeze_sam_epochs=freeze_epochs
        ),
        ckpt_every=1000,
    )


def resurgsam2_stage1() -> TrainConfig:
    return _resurgsam2(1, 60.0, 3, 5.0)


def resurgsam2_stage2() -> TrainConfig:
    return _resurgsam2(2, 60.0, 10, 0.0)


def ref_nano_synth() -> TrainConfig:
    return TrainConfig(
        recipe="ref-nano-synth",
        model="nano",
        image_size=256,
        steps=5000,
        batch_size=1,
        image_every=0,
        clip=ClipConfig(num_frames=10, max_objects=3, image_size=256, merge_same_text=True),
        prompts=PromptConfig(),
        optim=OptimConfig(
            lr=2e-4,
            lr_overrides=tuple((m, 1e-3) for m in REFERRING_MODULES),
            weight_decay=0.1,
            layer_decay=1.0,
            warmup_frac=0.3,
            min_lr_ratio=0.1,
            grad_clip=0.1,
            freeze=(),
        ),
        # MSE for the IoU head, as nano-synth: with L1 it regresses to ~0 on the mostly-wrong early
        # candidates and the detection picks its candidate blindly (seen in both runs here).
        loss=LossConfig(iou_use_l1=False),
        # pooled_scale: MiniLM's sentence embedding is unit-norm; see ReferringConfig.pooled_scale.
        # One detection mask, not three: with three candidates and the lowest-loss rule the
        # decoder can put each instrument in its own candidate, so the text need not choose (every
        # instrument sentence projected to one token in the multimask runs); with one it must.
        referring=ReferringTrainConfig(
            stage=2,
            preset="tiny",
            text_encoder="minilm",
            text_dim=384,
            pooled_scale=pooled_scale_for("minilm"),
            multimask_output=False,
            ref_frames=3,
            referring_only_prob=0.5,
            freeze_sam_steps=500,
        ),
        ckpt_every=500,
    )


RECIPES = {
    "surgsam2": surgsam2,
    "nano-synth": nano_synth,
    "resurgsam2-stage1": resurgsam2_stage1,
    "resurgsam2-stage2": resurgsam2_stage2,
    "ref-nano-synth": ref_nano_synth,
}


def make_config(recipe: str, **overrides: Any) -> TrainConfig:
    """The recipe's :class:`TrainConfig` with fields replaced by ``overrides`` (None = keep).

    ``image_size`` also sets the clip size; ``steps`` > 0 disables ``epochs``.
    """
    if recipe not in RECIPES:
        raise ValueError(f"unknown recipe {recipe!r}; choose one of {sorted(RECIPES)}")
    cfg = RECIPES[recipe]()
    kw = {k: v for k, v in overrides.items() if v is not None}
    if kw.get("steps"):
        kw.setdefault("epochs", None)
    elif kw.get("epochs"):
        kw["steps"] = 0  # derive the steps from the epochs
    cfg = replace(cfg, **kw)
    if cfg.image_size is not None and cfg.clip.image_size != cfg.image_size:
        cfg = replace(cfg, clip=replace(cfg.clip, image_size=cfg.image_size))
    return cfg
