"""Builds Meta's reference SAM 2 (the ``sam2==1.1.0`` package) for parity tests.

The reference is a test-only dependency: importing it initialises a global Hydra config, so it
is imported lazily here and never from ``surgsam`` itself. Tests that need it use the
``reference`` helpers and are skipped (with the reason) where it is not installed.
"""

from __future__ import annotations

import importlib.util

import pytest
import torch

HAVE_ORACLE = importlib.util.find_spec("sam2") is not None and importlib.util.find_spec("hydra") is not None
needs_oracle = pytest.mark.skipif(not HAVE_ORACLE, reason="reference oracle sam2==1.1.0 not installed")

# our preset name -> Meta's config file
CONFIGS = {
    "sam2_hiera_tiny": "configs/sam2/sam2_hiera_t.yaml",
    "sam2_hiera_small": "configs/sam2/sam2_hiera_s.yaml",
    "sam2_hiera_base_plus": "configs/sam2/sam2_hiera_b+.yaml",
    "sam2_hiera_large": "configs/sam2/sam2_hiera_l.yaml",
    "sam2.1_hiera_tiny": "configs/sam2.1/sam2.1_hiera_t.yaml",
    "sam2.1_hiera_small": "configs/sam2.1/sam2.1_hiera_s.yaml",
    "sam2.1_hiera_base_plus": "configs/sam2.1/sam2.1_hiera_b+.yaml",
    "sam2.1_hiera_large": "configs/sam2.1/sam2.1_hiera_l.yaml",
}


def randomize_(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Give every parameter and float buffer non-trivial random values (in place).

    Meta's init leaves many tensors at 0 or 1 (norms, biases, layer scales, tpos encodings),
    which would hide wiring mistakes; a parity test must exercise every weight.
    """
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in list(model.named_parameters()) + list(model.named_buffers()):
            if not p.is_floating_point():
                continue
            if p.ndim == 1 and name.endswith("bias"):
                p.copy_(0.02 * torch.randn(p.shape, generator=g))
            elif p.ndim == 1:  # norm weights, layer scales
                p.copy_(1.0 + 0.1 * torch.randn(p.shape, generator=g))
            else:
                fan_in = p[0].numel() if p.ndim > 1 else 1
                p.copy_(torch.randn(p.shape, generator=g) / max(fan_in, 1) ** 0.5)
    return model


def build_reference(preset: str, image_size: int = 1024, video: bool = False, seed: int = 0):
    """Meta's SAM2Base (or SAM2VideoPredictor) for ``preset`` with random weights, eval mode, CPU."""
    import sam2  # noqa: F401  (initialises hydra)
    from sam2.build_sam import build_sam2, build_sam2_video_predictor

    overrides = [f"++model.image_size={image_size}"]
    build = build_sam2_video_predictor if video else build_sam2
    torch.manual_seed(seed)
    model = build(CONFIGS[preset], None, device="cpu", mode="eval", hydra_overrides_extra=overrides)
    return randomize_(model, seed)
