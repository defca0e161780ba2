"""The ONNX runner's host arithmetic (numpy, no torch) against PyTorch's: bfloat16 rounding,
bilinear resizes (with and without antialiasing), the mask prompt's resize, the pointers' sine
encoding and SurgSAM2's pruning rule ranked in bf16 as the engine ranks its bf16 memories."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from surgsam.engine.prompts import prepare_mask
from surgsam.export.runner import _prepare_mask, efp_drop, resize_bilinear, round_bf16, sine_encoding
from surgsam.memory import EFPPolicy, MemoryEntry, Selection
from surgsam.modeling.common import get_1d_sine_pe


def test_bf16_rounding_is_torchs():
    g = np.random.default_rng(0)
    x = np.concatenate([g.normal(0, 3, 5000), g.normal(0, 1e-3, 1000)]).astype(np.float32)
    # exact halfway cases between two bf16 numbers: ties go to even
    halves = ((np.arange(0x3F80, 0x3F80 + 200, dtype=np.uint32) << np.uint32(16)) | np.uint32(0x8000)).view(np.float32)
    x = np.concatenate([x, halves, -halves])
    np.testing.assert_array_equal(round_bf16(x), torch.from_numpy(x).to(torch.bfloat16).float().numpy())
    assert round_bf16(np.float32(1.0)).shape == ()


@pytest.mark.parametrize(
    "size,out", [((32, 32), (120, 160)), ((256, 320), (128, 128)), ((37, 53), (16, 24)), ((64, 64), (64, 64))]
)
def test_bilinear_resizes_are_torchs(size, out):
    x = torch.randn(3, *size)
    for aa in (False, True):
        ref = F.interpolate(x[None], out, mode="bilinear", align_corners=False, antialias=aa)[0].numpy()
        np.testing.assert_allclose(resize_bilinear(x.numpy(), out, antialias=aa), ref, atol=2e-5)


def test_mask_prompt_resize_is_the_engines():
    from surgsam.data.synth import render_demo_clip

    labels = render_demo_clip(frames=1).labels[0]  # 256 x 320, several objects of all sizes
    for k in [int(i) for i in np.unique(labels) if i]:
        ref = prepare_mask(labels == k, labels.shape, 128, torch.device("cpu"))[0, 0].numpy()
        ours = _prepare_mask(labels == k, labels.shape, 128)
        np.testing.assert_array_equal(ours, ref, err_msg=f"object {k}")


def test_pointer_encoding_is_torchs():
    d = np.array([1, 2, 5, 15, 40, 400], np.float32) / np.float32(15)
    np.testing.assert_allclose(sine_encoding(d, 64), get_1d_sine_pe(torch.from_numpy(d), 64).numpy(), atol=1e-6)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32])
def test_efp_pruning_ranks_as_the_engine(dtype):
    """The frames SurgSAM2's released rule drops, from the same stored memories: the runner's
    numpy ranking (in bf16 arithmetic for bf16 memories) against the engine's policy."""
    g = torch.Generator().manual_seed(0)
    agree = 0
    for trial in range(60):
        base = torch.randn(1, 16, 8, 8, generator=g)
        feats = [(base + 0.5 * torch.randn(1, 16, 8, 8, generator=g)).to(dtype) for _ in range(7)]
        sel = Selection(
            spatial=[
                (0 if i == 0 else i, MemoryEntry(i, f, torch.zeros(1, 32), i == 0, 1.0, 1.0))
                for i, f in enumerate(feats)
            ]
        )
        for k in (1, 2):
            ref = EFPPolicy._release_drop(sel, k)
            ours = efp_drop([f[0].float().numpy() for f in feats], k, bf16=dtype == torch.bfloat16)
            agree += ref == ours
    assert agree == 120
