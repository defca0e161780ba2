"""Checkpoints of the referring model: ReSurgSAM2's layout <-> our module tree, strict loading.

ReSurgSAM2's files (``sam2.1_hiera_s_ref17.pth`` / ``_ref18.pth``) hold ``{"model": sd}`` with
Meta's 519 SAM 2.1 keys at the top level plus ``sam_prompt_encoder.language_fusion_mlp.*``,
``token_projection.*`` and ``cross_modal_fusion.*`` (763 keys); ``language_model.*`` (the
frozen CLIP text tower) is normally left out but may be present. Our :class:`ReferringSAM2`
nests SAM under ``sam.`` and keeps the sentence MLP beside it, so:

=========================================  =====================================
ReSurgSAM2 key                             ReferringSAM2 key
=========================================  =====================================
``<sam key>``                              ``sam.<sam key>``
``sam_prompt_encoder.language_fusion_mlp.*``  ``language_fusion_mlp.*``
``token_projection.*``                     ``token_projection.*``
``cross_modal_fusion.*``                   ``cross_modal_fusion.*``
``language_model.*``                       the CLIP text encoder's ``text_model.*``
=========================================  =====================================

Files we write use ReSurgSAM2's layout too (with our config beside the weights), so one
loader reads both. Loading is strict: a missing, unexpected or mis-shaped key raises
:class:`~surgsam.modeling.checkpoint.CheckpointError` naming the keys in the file's layout.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..modeling.checkpoint import FORMAT_TAG, CheckpointError, check_state_dict, load_state_dict_strict, read_checkpoint
from ..modeling.presets import SAM2Config, get_preset, with_image_size
from ..modeling.sam2 import SAM2Model
from .config import ReferringConfig, get_referring_preset
from .model import ReferringSAM2

LANGUAGE_PREFIX = "language_model."
_SENTENCE_THEIRS = "sam_prompt_encoder.language_fusion_mlp."
_SENTENCE_OURS = "language_fusion_mlp."
_SHARED = ("token_projection.", "cross_modal_fusion.")
CONFIG_KIND = "referring"


def to_resurgsam2_state_dict(sd: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Our keys -> ReSurgSAM2's, in the released files' order (the sentence MLP right after
    the prompt encoder's own entries; the text projection and fusion at the end)."""
    sam = [(k[len("sam.") :], v) for k, v in sd.items() if k.startswith("sam.")]
    sentence = [(_SENTENCE_THEIRS + k[len(_SENTENCE_OURS) :], v) for k, v in sd.items() if k.startswith(_SENTENCE_OURS)]
    rest = [(k, v) for p in _SHARED for k, v in sd.items() if k.startswith(p)]
    unknown = [k for k in sd if not k.startswith(("sam.", _SENTENCE_OURS, *_SHARED))]
    if unknown:
        raise CheckpointError(f"keys outside the referring model's layout: {unknown[:8]}")
    last_pe = max((i for i, (k, _) in enumerate(sam) if k.startswith("sam_prompt_encoder.")), default=len(sam) - 1)
    return dict(sam[: last_pe + 1] + sentence + sam[last_pe + 1 :] + rest)


def from_resurgsam2_state_dict(
    sd: Mapping[str, torch.Tensor],
) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """ReSurgSAM2's keys -> (our model's state dict, the ``language_model.*`` entries with the
    prefix removed; empty when the file has none)."""
    ours: dict[str, torch.Tensor] = {}
    language: dict[str, torch.Tensor] = {}
    for k, v in sd.items():
        if k.startswith(LANGUAGE_PREFIX):
            language[k[len(LANGUAGE_PREFIX) :]] = v
        elif k.startswith(_SENTENCE_THEIRS):
            ours[_SENTENCE_OURS + k[len(_SENTENCE_THEIRS) :]] = v
        elif k.startswith(_SHARED):
            ours[k] = v
        else:
            ours["sam." + k] = v
    return ours, language


class _Layout:
    """The model seen through ReSurgSAM2's key names, for the shared strict checker."""

    def __init__(self, model: ReferringSAM2) -> None:
        self.cfg = model.sam.cfg
        self._sd = to_resurgsam2_state_dict(model.state_dict())

    def state_dict(self) -> dict[str, torch.Tensor]:
        return self._sd


def load_referring_state_dict(
    model: ReferringSAM2,
    sd: Mapping[str, torch.Tensor],
    source: str = "checkpoint",
    text_encoder: nn.Module | None = None,
) -> dict[str, torch.Tensor]:
    """Strictly load a ReSurgSAM2-layout state dict into ``model``.

    ``language_model.*`` entries, if any, go strictly into ``text_encoder`` (a
    :class:`~surgsam.referring.text.CLIPTextEncoder`) when one is given; otherwise they are
    returned unused (ReSurgSAM2 itself rebuilds CLIP from its pretrained weights).
    """
    ours, language = from_resurgsam2_state_dict(sd)
    theirs = {k: v for k, v in sd.items() if not k.startswith(LANGUAGE_PREFIX)}
    try:
        check_state_dict(_Layout(model), theirs, source)  # raises CheckpointError in the file's key names
    except CheckpointError as e:
        if not any(k.startswith((_SENTENCE_THEIRS, *_SHARED)) for k in theirs):
            raise CheckpointError(
                f"{e}\n  {source} has no referring weights: it looks like a plain SAM 2 checkpoint "
                "(load it with sam_checkpoint= to initialise only the SAM part)"
            ) from None
        raise
    model.load_state_dict(ours, strict=True)
    if language and text_encoder is not None:
        tower = getattr(text_encoder, "language_model", None)
        if tower is None:
            raise CheckpointError(f"{source} holds language_model.* (CLIP) weights but the text encoder is not CLIP")
        load_state_dict_strict(tower(), language, source=f"{source} (language_model.*)")
        return {}
    return language


@dataclass
class ReferringCheckpoint:
    """A checkpoint file read for the referring model (state dict in ReSurgSAM2's layout)."""

    state_dict: dict[str, torch.Tensor]
    sam_config: SAM2Config | None
    referring_config: ReferringConfig | None
    path: Path
    meta: dict[str, Any]


def read_referring_checkpoint(path: str | Path, *, allow_half: bool = False) -> ReferringCheckpoint:
    """Read ReSurgSAM2's ``{"model": sd}`` files, bare state dicts, or our own format
    (fp16/bf16 weights only with ``allow_half``)."""
    ck = read_checkpoint(path, allow_half=allow_half)
    sam_cfg = ref_cfg = None
    if ck.config is not None:
        if ck.config.get("kind") != CONFIG_KIND:
            raise CheckpointError(f"{ck.path} is a surgsam checkpoint of a plain SAM 2 model, not a referring model")
        try:
            sam_cfg = SAM2Config.from_dict(ck.config["sam2"])
            ref_cfg = ReferringConfig.from_dict(ck.config["referring"])
        except (KeyError, TypeError, ValueError) as e:
            raise CheckpointError(f"{ck.path}: its stored referring config is invalid ({e})") from None
    return ReferringCheckpoint(ck.state_dict, sam_cfg, ref_cfg, ck.path, ck.meta)


def save_referring_checkpoint(model: ReferringSAM2, path: str | Path, **meta: Any) -> Path:
    """Save in ReSurgSAM2's key layout with both configs beside the weights (our format)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sd = {k: v.detach().cpu().contiguous() for k, v in to_resurgsam2_state_dict(model.state_dict()).items()}
    config = {"kind": CONFIG_KIND, "sam2": model.sam.cfg.to_dict(), "referring": model.cfg.to_dict()}
    torch.save({"format": FORMAT_TAG, "config": config, "model": sd, **meta}, path)
    return path


def build_referring_model(
    name: str | None = None,
    image_size: int | None = None,
    referring: str | ReferringConfig = "resurgsam2",
    checkpoint: str | Path | None = None,
    sam_checkpoint: str | Path | None = None,
    text_encoder: nn.Module | None = None,
    device: str | torch.device = "cpu",
    *,
    allow_half: bool = False,
) -> ReferringSAM2:
    """Build a :class:`ReferringSAM2`, optionally loading weights strictly.

    Args:
        name: SAM preset (e.g. ``"sam2.1_hiera_s"``); optional for our own checkpoints, which
            carry their configs. ReSurgSAM2's released files are ``sam2.1_hiera_s`` at 512 px.
        image_size: input side (multiple of 32); parameter shapes do not depend on it.
        referring: referring preset name or config (ignored for our own checkpoints).
        checkpoint: a full referring checkpoint (ReSurgSAM2's or ours).
        sam_checkpoint: alternatively, a SAM 2 checkpoint for the ``sam`` part only (the
            referring modules keep their initialisation), e.g. to start training.
        text_encoder: receives ``language_model.*`` weights when the file holds them.
        device: where to put the model; it is returned in eval mode.
        allow_half: accept fp16/bf16 weights (refused by default; converted to float32).
    """
    if checkpoint is not None and sam_checkpoint is not None:
        raise ValueError("give either checkpoint or sam_checkpoint, not both")
    ck = read_referring_checkpoint(checkpoint, allow_half=allow_half) if checkpoint is not None else None
    if ck is not None and ck.sam_config is not None:
        if name is not None and get_preset(name).name != ck.sam_config.name:
            raise CheckpointError(
                f"{ck.path} was saved from preset {ck.sam_config.name!r}, not {get_preset(name).name!r}"
            )
        sam_cfg, ref_cfg = with_image_size(ck.sam_config, image_size), ck.referring_config
    else:
        if name is None:
            raise ValueError("build_referring_model needs a SAM preset name unless the checkpoint carries its config")
        sam_cfg = get_preset(name, image_size)
        ref_cfg = referring if isinstance(referring, ReferringConfig) else get_referring_preset(referring)
    assert ref_cfg is not None
    model = ReferringSAM2(SAM2Model(sam_cfg), ref_cfg)
    if ck is not None:
        load_referring_state_dict(model, ck.state_dict, str(ck.path), text_encoder)
    elif sam_checkpoint is not None:
        sam_ck = read_checkpoint(sam_checkpoint, allow_half=allow_half)
        load_state_dict_strict(model.sam, sam_ck.state_dict, source=str(sam_ck.path))
    return model.to(device).eval()


__all__ = [
    "to_resurgsam2_state_dict",
    "from_resurgsam2_state_dict",
    "load_referring_state_dict",
    "read_referring_checkpoint",
    "save_referring_checkpoint",
    "build_referring_model",
    "ReferringCheckpoint",
    "LANGUAGE_PREFIX",
]
