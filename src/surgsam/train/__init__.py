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
__all__ = list(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
