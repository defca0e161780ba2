"""Shared fixtures for the training tests: a tiny synthetic dataset and tiny configs."""

from __future__ import annotations

import numpy as np
import pytest
import torch

SIZE = 64  # model input side for every training test (nano preset)
FRAMES = 3  # frames per clip


@pytest.fixture(scope="session")
def synth_root(tmp_path_factory):
    """Three 6-frame synthetic videos (96x64, Ref-EndoVis layout: 2 train, 1 valid)."""
    from surgsam.data.synth import SynthConfig, generate

    root = tmp_path_factory.mktemp("synth")
    cfg = SynthConfig(width=96, height=64, frames=6, smoke=0.0, motion_blur=False)
    generate(root, cfg, videos=3, seed=0, progress=False)
    return root


@pytest.fixture(scope="session")
def sampler(synth_root):
    from surgsam.train import ClipConfig, ClipSampler, open_datasets

    return ClipSampler(open_datasets([str(synth_root)]), ClipConfig(num_frames=FRAMES, max_objects=2, image_size=SIZE))


@pytest.fixture()
def batch(sampler):
    from surgsam.train import collate

    return collate([sampler.clip(0, np.random.default_rng(0))])


@pytest.fixture()
def nano():
    from surgsam.modeling import build_model

    torch.manual_seed(0)
    return build_model("nano", image_size=SIZE).train()
