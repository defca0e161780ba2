"""Shared fixtures of the referring tests: ReSurgSAM2's checkpoint key list."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

KEY_LISTS = [
    Path(__file__).parent / "keys" / "resurgsam2_sam2.1_hiera_s.txt",  # copy kept with the tests
    Path(os.environ.get("SURGSAM_SHARED", "/work/shared")) / "checkpoint_keys" / "resurgsam2_sam2.1_hiera_s.txt",
]


@pytest.fixture(scope="session")
def resurgsam2_keys() -> list[tuple[str, tuple[int, ...], bool]]:
    """(name, shape, is_text_encoder) per state-dict entry of ReSurgSAM2 (hiera_s), in order."""
    path = next((p for p in KEY_LISTS if p.is_file()), None)
    if path is None:
        pytest.skip("ReSurgSAM2 key list not found")
    rows = []
    for line in path.read_text().splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        parts = line.split("\t")
        shape = tuple(int(x) for x in parts[1].strip("[]").split(",") if x.strip())
        rows.append((parts[0], shape, len(parts) > 2 and parts[2] == "#text-encoder"))
    assert len(rows) == 959
    return rows
