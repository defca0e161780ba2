"""Fixtures of the app tests: a short synthetic surgical clip (mp4) and the demo model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

CLIP_FRAMES = 10


@pytest.fixture(scope="session")
def clip_frames() -> list[np.ndarray]:
    from surgsam.data.synth import render_demo_clip

    return render_demo_clip(frames=CLIP_FRAMES, seed=0).frames


@pytest.fixture(scope="session")
def clip_mp4(tmp_path_factory: pytest.TempPathFactory, clip_frames: list[np.ndarray]) -> Path:
    pytest.importorskip("av")
    from surgsam.io import write_video

    return write_video(tmp_path_factory.mktemp("clip") / "clip.mp4", clip_frames, fps=10)


@pytest.fixture(scope="session")
def decoded(clip_mp4: Path) -> list[np.ndarray]:
    """The clip's frames as the decoder gives them (H.264 is lossy)."""
    from surgsam.io import VideoFileSource

    return list(VideoFileSource(clip_mp4))


@pytest.fixture(scope="session")
def model():
    from surgsam.modeling.embedded import build_demo_model

    return build_demo_model(seed=0)
