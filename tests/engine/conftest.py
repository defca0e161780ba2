"""Shared fixtures of the engine tests."""

from __future__ import annotations

import pytest
import torch

from surgsam.modeling import build_model


@pytest.fixture(scope="module")
def model():
    """``nano`` with seeded random weights whose object-score bias makes objects "present",
    so tracked masks are not empty."""
    torch.manual_seed(0)
    m = build_model("nano")
    with torch.no_grad():
        m.sam_mask_decoder.pred_obj_score_head.layers[-1].bias.fill_(4.0)
    return m
