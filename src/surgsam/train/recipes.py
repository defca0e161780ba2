"""Named training recipes: complete :class:`TrainConfig` defaults, overridable field by field.

* ``surgsam2`` — Surgical SAM 2's fine-tuning (SPEC §4): an official SAM 2(.1) Hiera-S
  checkpoint at 512 px, image encoder and prompt encoder frozen, mask decoder and memory
  modules trained; 8-frame clips with up to 3 objects alternating with image batches;
  AdamW lr 5e-5, weight decay 0.1 (0 for bias/norm/embeddings), layer decay 0.9, cosine to
  lr/10, no warm-up, gradient clip 0.1; SAM 2 losses and prompt simulation; bf16 on GPU.
* ``nano-synth`` — the embedded demo model: the ``nano`` preset at 256 px, everything trained
  from random init on synthetic videos; lr 1e-3 with a 5% warm-up, cosine to lr/10,
  no layer decay; otherwise as above.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from .clips import ClipConfig
from .optim import OptimConfig
from .prompts import PromptConfig
from .trainer import TrainConfig

__all__ = ["RECIPES", "make_config", "surgsam2", "nano_synth"]


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
        optim=OptimConfig(lr=5e-5, weight_decay=0.1, layer_decay=0.9, warmup_steps=0, min_lr_ratio=0.1,
                          grad_clip=0.1, freeze=("image_encoder", "sam_prompt_encoder")),
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
        clip=ClipConfig(num_frames=8, max_objects=3, image_size=256),
        prompts=PromptConfig(),
        optim=OptimConfig(lr=1e-3, weight_decay=0.1, layer_decay=1.0, warmup_frac=0.05, min_lr_ratio=0.1,
                          grad_clip=0.1, freeze=()),
        ckpt_every=1000,
    )


RECIPES = {"surgsam2": surgsam2, "nano-synth": nano_synth}


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
