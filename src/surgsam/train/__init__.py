"""Training: clip sampler, prompt simulation, SAM 2 losses, differentiable clip forward,
optimiser/schedule, the trainer loop (DDP, checkpoints, JSONL logs), recipes, and ReSurgSAM2's
two-stage referring training (``referring_step``).

    from surgsam.train import make_config, Trainer
    cfg = make_config("nano-synth", data=("data/synth",), out="runs/nano", steps=20000)
    Trainer(cfg).train()

Command line: ``surgsam train --recipe nano-synth --data DIR --out DIR`` (see docs/training.md).
"""

from .clips import Clip, ClipBatch, ClipConfig, ClipSampler, collate, open_datasets, swap_left_right
from .losses import DecoderStep, LossConfig, LossTerms, dice_loss, frame_loss, iou_targets, sam2_loss, sigmoid_focal_loss
from .model_step import ClipOutput, FrameTrace, TrainStep, forward_clip
from .optim import CosineSchedule, OptimConfig, build_optimizer, freeze_modules, param_groups, set_train_mode
from .prompts import PromptConfig, PromptPlan, initial_clicks, mask_to_box, plan_prompts, sample_box, sample_error_clicks
from .recipes import RECIPES, make_config
from .referring_step import ReferringTrainConfig, ReferringTrainStep, TextCache, forward_referring_clip, set_sam_frozen
from .trainer import TrainConfig, Trainer, TrainResult

__all__ = [
    "Clip", "ClipBatch", "ClipConfig", "ClipSampler", "collate", "open_datasets", "swap_left_right",
    "DecoderStep", "LossConfig", "LossTerms", "dice_loss", "frame_loss", "iou_targets", "sam2_loss", "sigmoid_focal_loss",
    "ClipOutput", "FrameTrace", "TrainStep", "forward_clip",
    "CosineSchedule", "OptimConfig", "build_optimizer", "freeze_modules", "param_groups", "set_train_mode",
    "PromptConfig", "PromptPlan", "initial_clicks", "mask_to_box", "plan_prompts", "sample_box", "sample_error_clicks",
    "RECIPES", "make_config", "TrainConfig", "Trainer", "TrainResult",
    "ReferringTrainConfig", "ReferringTrainStep", "TextCache", "forward_referring_clip", "set_sam_frozen",
]
