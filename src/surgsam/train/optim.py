"""Optimiser, parameter groups, learning-rate schedule and frozen modules.

* AdamW; weight decay 0.1 except for biases, normalisation parameters, embeddings and other
  free-standing learned tokens (0);
* per-group learning rates: the image encoder may have its own, any parameter-name prefix
  may be overridden (e.g. the SurgSAM2 paper's 2e-5 for the memory modules);
* layer-wise decay in the Hiera trunk: block ``i`` of ``L`` gets ``decay ** (L - i)``, patch and
  position embeddings ``decay ** (L + 1)`` (BEiT / SAM 2 rule);
* linear warm-up then cosine from ``lr`` to ``lr * min_lr_ratio`` (1/10);
* gradient clipping by global norm (0.1);
* frozen modules (name prefixes): ``requires_grad=False``, kept in eval mode, not in the optimiser.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import torch
from torch import nn

__all__ = [
    "OptimConfig",
    "CosineSchedule",
    "warmup_warning",
    "freeze_modules",
    "param_groups",
    "build_optimizer",
    "set_train_mode",
    "trunk_layer_scale",
]

_NORMS = (nn.LayerNorm, nn.GroupNorm, nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.InstanceNorm2d)
_WEIGHTED = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose2d)


@dataclass(frozen=True)
class OptimConfig:
    """lr: base learning rate; lr_image_encoder: the image encoder's (None = lr);
    lr_overrides: ``(name_prefix, lr)`` pairs, first match wins (before the encoder rule);
    layer_decay: Hiera trunk layer-wise decay (1.0 = off); warmup_steps: linear warm-up from
    0 (or ``warmup_frac`` of the run when warmup_steps is 0); min_lr_ratio: final lr / lr of the cosine; freeze: name prefixes of frozen modules."""

    lr: float = 5e-5
    lr_image_encoder: float | None = None
    lr_overrides: tuple[tuple[str, float], ...] = ()
    weight_decay: float = 0.1
    layer_decay: float = 0.9
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    warmup_steps: int = 0
    warmup_frac: float = 0.0
    min_lr_ratio: float = 0.1
    grad_clip: float = 0.1
    freeze: tuple[str, ...] = ()


def _matches(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def freeze_modules(model: nn.Module, prefixes: Sequence[str]) -> list[str]:
    """Set ``requires_grad=False`` on every parameter under the given name prefixes; returns
    the frozen parameter names. Raises on a prefix that matches nothing (a typo)."""
    frozen = []
    for prefix in prefixes:
        hit = False
        for name, p in model.named_parameters():
            if _matches(name, prefix):
                p.requires_grad_(False)
                frozen.append(name)
                hit = True
        if not hit:
            raise ValueError(f"freeze: no parameter under {prefix!r}")
    return frozen


def set_train_mode(model: nn.Module, frozen: Sequence[str] = ()) -> nn.Module:
    """``model.train()`` but frozen modules stay in eval mode (no dropout / drop-path)."""
    model.train()
    for name, mod in model.named_modules():
        if any(_matches(name, p) for p in frozen):
            mod.eval()
    return model


def _no_decay(model: nn.Module) -> set[str]:
    """Names of parameters without weight decay: biases, norms, embeddings, learned tokens."""
    out = set()
    for mname, mod in model.named_modules():
        for pname, p in mod.named_parameters(recurse=False):
            full = f"{mname}.{pname}" if mname else pname
            norm = isinstance(mod, _NORMS) or "norm" in type(mod).__name__.lower()
            if (
                pname == "bias"
                or p.ndim <= 1
                or norm
                or isinstance(mod, nn.Embedding)
                or not isinstance(mod, _WEIGHTED)
            ):
                out.add(full)
    return out


def trunk_layer_scale(name: str, num_layers: int, decay: float, trunk: str = "image_encoder.trunk") -> float:
    """Layer-wise lr scale of a parameter (1.0 outside the trunk)."""
    if decay == 1.0 or not name.startswith(trunk + "."):
        return 1.0
    rest = name[len(trunk) + 1 :]
    if rest.startswith("pos_embed") or rest.startswith("patch_embed"):
        layer = 0
    elif rest.startswith("blocks."):
        layer = int(rest.split(".")[1]) + 1
    else:
        layer = num_layers + 1
    return decay ** (num_layers + 1 - layer)


def param_groups(model: nn.Module, cfg: OptimConfig) -> list[dict]:
    """AdamW parameter groups of the trainable parameters, merged by (lr, weight decay).
    Each group carries ``base_lr`` (what the schedule scales) and a readable ``name``."""
    no_decay = _no_decay(model)
    sam = getattr(model, "sam", None)  # a referring model nests SAM 2 under ``sam.``
    pre = "sam." if isinstance(sam, nn.Module) else ""
    trunk = getattr(getattr(sam if pre else model, "image_encoder", None), "trunk", None)
    num_layers = len(trunk.blocks) if trunk is not None and hasattr(trunk, "blocks") else 0
    groups: dict[tuple[float, float, str], dict] = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        lr, tag = cfg.lr, "rest"
        override = next(((pre, v) for pre, v in cfg.lr_overrides if _matches(name, pre)), None)
        if override is not None:
            lr, tag = override[1], override[0]
        elif _matches(name, pre + "image_encoder"):
            lr, tag = (cfg.lr_image_encoder if cfg.lr_image_encoder is not None else cfg.lr), "image_encoder"
        lr *= trunk_layer_scale(name, num_layers, cfg.layer_decay, pre + "image_encoder.trunk")
        wd = 0.0 if name in no_decay else cfg.weight_decay
        key = (lr, wd, tag)
        g = groups.setdefault(
            key, {"params": [], "param_names": [], "lr": lr, "base_lr": lr, "weight_decay": wd, "name": tag}
        )
        g["params"].append(p)
        g["param_names"].append(name)
    if not groups:
        raise ValueError("no trainable parameters (everything is frozen)")
    return list(groups.values())


def build_optimizer(model: nn.Module, cfg: OptimConfig) -> torch.optim.AdamW:
    """AdamW over :func:`param_groups` (fused on CUDA when available)."""
    groups = param_groups(model, cfg)
    dev = next(p for g in groups for p in g["params"]).device
    kw = {"fused": True} if dev.type == "cuda" else {}
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=cfg.betas, eps=cfg.eps, weight_decay=cfg.weight_decay, **kw)


def warmup_warning(total_steps: int, warmup_steps: int, lr: float) -> str | None:
    """One line for a run of ``total_steps`` that never leaves its ``warmup_steps`` linear
    warm-up (``total_steps <= warmup_steps``: the learning rate never reaches ``lr`` or never
    decays); None when the run goes past it or has no warm-up."""
    if warmup_steps <= 0 or total_steps > warmup_steps:
        return None
    return (
        f"warning: the whole {total_steps}-step run falls inside the {warmup_steps}-step linear learning-rate "
        f"warm-up: the rate climbs to {total_steps / warmup_steps:.0%} of lr {lr:g} and the cosine decay never starts; "
        f"give a shorter warm-up, e.g. --warmup {max(1, total_steps // 10)} (steps) or --warmup 0.1 (a fraction "
        "of the run), or --warmup 0 for none"
    )


class CosineSchedule:
    """Linear warm-up over ``warmup_steps`` then cosine to ``min_lr_ratio`` at ``total_steps``;
    sets every group's ``lr = base_lr * factor(step)``."""

    def __init__(
        self, optimizer: torch.optim.Optimizer, total_steps: int, warmup_steps: int = 0, min_lr_ratio: float = 0.1
    ) -> None:
        self.optimizer = optimizer
        self.total_steps = max(1, int(total_steps))
        self.warmup_steps = max(0, int(warmup_steps))
        self.min_lr_ratio = float(min_lr_ratio)
        self.step_idx = 0
        self.set(0)

    def factor(self, step: int) -> float:
        if step < self.warmup_steps:
            return (step + 1) / self.warmup_steps
        span = max(1, self.total_steps - self.warmup_steps)
        progress = min(1.0, (step - self.warmup_steps) / span)
        return self.min_lr_ratio + (1 - self.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))

    def set(self, step: int) -> None:
        """Set the learning rates for optimisation step ``step`` (0-based)."""
        self.step_idx = int(step)
        f = self.factor(self.step_idx)
        for g in self.optimizer.param_groups:
            g["lr"] = g["base_lr"] * f

    def step(self) -> None:
        self.set(self.step_idx + 1)

    def get_last_lr(self) -> list[float]:
        return [g["lr"] for g in self.optimizer.param_groups]

    def state_dict(self) -> dict:
        return {
            "total_steps": self.total_steps,
            "warmup_steps": self.warmup_steps,
            "min_lr_ratio": self.min_lr_ratio,
            "step_idx": self.step_idx,
        }

    def load_state_dict(self, state: dict) -> None:
        self.total_steps = int(state["total_steps"])
        self.warmup_steps = int(state["warmup_steps"])
        self.min_lr_ratio = float(state["min_lr_ratio"])
        self.set(int(state["step_idx"]))


def clip_gradients(params: Iterable[torch.nn.Parameter], max_norm: float) -> float:
    """Clip the global gradient norm (``max_norm <= 0``: only measure); returns the norm."""
    params = [p for p in params if p.grad is not None]
    if not params:
        return 0.0
    if max_norm and max_norm > 0:
        return float(torch.nn.utils.clip_grad_norm_(params, max_norm))
    return float(torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(p.grad) for p in params])))
