"""Training: clip sampler, prompt simulation, SAM 2 losses, differentiable clip forward,
optimiser/schedule, the trainer loop (DDP, checkpoints, JSONL logs), recipes, an auxiliary
per-pixel object-type loss (``aux_types``), and ReSurgSAM2's two-stage referring training
(``referring_step``).

    from surgsam.train import make_config, Trainer
    cfg = make_config("nano-synth", data=("data/synth",), out="runs/nano", steps=20000)
    Trainer(cfg).train()

Command line: ``surgsam train --recipe nano-synth --data DIR --out DIR`` (see docs/training.md).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._lazy import lazy_exports

# public name -> submodule (imported on first use, so importing the package does not load torch)
_EXPORTS = {
    "AuxTypeConfig": ".aux_types",
    "TypeHead": ".aux_types",
    "type_loss": ".aux_types",
    "type_map": ".aux_types",
    "Clip": ".clips",
    "ClipBatch": ".clips",
    "ClipConfig": ".clips",
    "ClipSampler": ".clips",
    "collate": ".clips",
    "open_datasets": ".clips",
    "swap_left_right": ".clips",
    "DecoderStep": ".losses",
    "LossConfig": ".losses",
    "LossTerms": ".losses",
    "dice_loss": ".losses",
    "frame_loss": ".losses",
    "iou_targets": ".losses",
    "sam2_loss": ".losses",
    "sigmoid_focal_loss": ".losses",
    "ClipOutput": ".model_step",
    "FrameTrace": ".model_step",
    "TrainStep": ".model_step",
    "forward_clip": ".model_step",
    "CosineSchedule": ".optim",
    "OptimConfig": ".optim",
    "build_optimizer": ".optim",
    "freeze_modules": ".optim",
    "param_groups": ".optim",
    "set_train_mode": ".optim",
    "PromptConfig": ".prompts",
    "PromptPlan": ".prompts",
    "initial_clicks": ".prompts",
    "mask_to_box": ".prompts",
    "plan_prompts": ".prompts",
    "sample_box": ".prompts",
    "sample_error_clicks": ".prompts",
    "RECIPES": ".recipes",
    "make_config": ".recipes",
    "TrainConfig": ".trainer",
    "Trainer": ".trainer",
    "TrainResult": ".trainer",
    "ReferringTrainConfig": ".referring_step",
    "ReferringTrainStep": ".referring_step",
    "TextCache": ".referring_step",
    "forward_referring_clip": ".referring_step",
    "set_sam_frozen": ".referring_step",
}
if TYPE_CHECKING:  # the same names, for type checkers and editors (tests/test_lazy_exports.py)
    from .aux_types import (
        AuxTypeConfig as AuxTypeConfig,
        TypeHead as TypeHead,
        type_loss as type_loss,
        type_map as type_map,
    )
    from .clips import (
        Clip as Clip,
        ClipBatch as ClipBatch,
        ClipConfig as ClipConfig,
        ClipSampler as ClipSampler,
        collate as collate,
        open_datasets as open_datasets,
        swap_left_right as swap_left_right,
    )
    from .losses import (
        DecoderStep as DecoderStep,
        LossConfig as LossConfig,
        LossTerms as LossTerms,
        dice_loss as dice_loss,
        frame_loss as frame_loss,
        iou_targets as iou_targets,
        sam2_loss as sam2_loss,
        sigmoid_focal_loss as sigmoid_focal_loss,
    )
    from .model_step import (
        ClipOutput as ClipOutput,
        FrameTrace as FrameTrace,
        TrainStep as TrainStep,
        forward_clip as forward_clip,
    )
    from .optim import (
        CosineSchedule as CosineSchedule,
        OptimConfig as OptimConfig,
        build_optimizer as build_optimizer,
        freeze_modules as freeze_modules,
        param_groups as param_groups,
        set_train_mode as set_train_mode,
    )
    from .prompts import (
        PromptConfig as PromptConfig,
        PromptPlan as PromptPlan,
        initial_clicks as initial_clicks,
        mask_to_box as mask_to_box,
        plan_prompts as plan_prompts,
        sample_box as sample_box,
        sample_error_clicks as sample_error_clicks,
    )
    from .recipes import RECIPES as RECIPES, make_config as make_config
    from .trainer import TrainConfig as TrainConfig, Trainer as Trainer, TrainResult as TrainResult
    from .referring_step import (
        ReferringTrainConfig as ReferringTrainConfig,
        ReferringTrainStep as ReferringTrainStep,
        TextCache as TextCache,
        forward_referring_clip as forward_referring_clip,
        set_sam_frozen as set_sam_frozen,
    )

__all__ = list(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
