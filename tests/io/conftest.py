"""Fixtures for the io tests: cached synthetic clips and the scripted capture."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from io_helpers import FakeCapture, make_frames


@pytest.fixture(scope="session")
def frames() -> list[np.ndarray]:
    return make_frames()


@pytest.fixture(scope="session")
def clip_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("clips")


@pytest.fixture(scope="session")
def make_clip(clip_dir: Path, frames: list[np.ndarray]) -> Callable[..., Path]:
    """``make_clip("name.mkv", **VideoWriter kwargs)``: the moving-square clip, cached."""
    pytest.importorskip("av")
    from surgsam.io import write_video

    def make(name: str, clip_frames: list[np.ndarray] | None = None, **kwargs: object) -> Path:
        path = clip_dir / name
        if not path.exists():
            write_video(path, frames if clip_frames is None else clip_frames, fps=30, **kwargs)
        return path

    return make


@pytest.fixture(scope="session")
def mp4_clip(make_clip: Callable[..., Path]) -> Path:
    return make_clip("square.mp4")


@pytest.fixture
def fake_capture() -> type[FakeCapture]:
    return FakeCapture
