"""``build_model``: a preset (or a checkpoint's own config) -> a ready :class:`SAM2Model`."""

from __future__ import annotations

from pathlib import Path

import torch

from .checkpoint import CheckpointError, load_state_dict_strict, read_checkpoint
from .presets import SAM2Config, get_preset, with_image_size
from .sam2 import SAM2Model


def build_model(
    name: str | None = None,
    image_size: int | None = None,
    checkpoint: str | Path | None = None,
    device: str | torch.device = "cpu",
    *,
    allow_half: bool = False,
) -> SAM2Model:
    """Build a SAM 2 model, optionally loading a checkpoint strictly.

    Args:
        name: preset name (``list_presets()``; aliases like ``sam2.1_hiera_s`` work). May be
            omitted when ``checkpoint`` is one of ours, which carries its config.
        image_size: input side in pixels (multiple of 32); defaults to the preset's or the
            checkpoint's. Parameter shapes do not depend on it.
        checkpoint: Meta's ``{"model": sd}``, a bare state dict, or our own format.
        device: where to put the model; it is returned in eval mode.
        allow_half: accept fp16/bf16 weights (refused by default; converted to float32).
    """
    ckpt = read_checkpoint(checkpoint, allow_half=allow_half) if checkpoint is not None else None
    cfg: SAM2Config
    if ckpt is not None and ckpt.config is not None:
        try:
            cfg = SAM2Config.from_dict(ckpt.config)
        except (TypeError, ValueError) as e:
            raise CheckpointError(f"{ckpt.path}: its stored config does not describe a SAM2Config ({e})") from None
        if name is not None and get_preset(name).name != cfg.name:
            # The file states its network; a different preset name is a user mistake.
            raise CheckpointError(
                f"{ckpt.path} was saved from preset {cfg.name!r}, not {get_preset(name).name!r}; "
                f"omit the model name or pass {cfg.name!r}"
            )
        cfg = with_image_size(cfg, image_size)
    else:
        if name is None:
            raise ValueError("build_model needs a preset name unless the checkpoint carries its config")
        cfg = get_preset(name, image_size)
    model = SAM2Model(cfg)
    if ckpt is not None:
        load_state_dict_strict(model, ckpt.state_dict, source=str(ckpt.path))
    return model.to(device).eval()
