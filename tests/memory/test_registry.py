"""A memory policy of one's own: one file plus one registration, usable by name everywhere,
including the command line; or ``--memory module:Class`` without registering."""

from __future__ import annotations

import json
import sys
import textwrap

import numpy as np
import pytest

from surgsam.cli import main
from surgsam.memory import FifoPolicy, MemoryBank, make_policy, policy_names, register_policy, unregister_policy

PLUGIN = '''
from dataclasses import dataclass

from surgsam.memory import FifoPolicy, Selection


@dataclass
class CondOnly(FifoPolicy):
    """Attends only the conditioning frames (and every pointer)."""

    name: str = "cond-only"
    calls: int = 0

    def select(self, bank, frame_idx) -> Selection:
        sel = super().select(bank, frame_idx)
        sel.spatial = [(slot, e) for slot, e in sel.spatial if e.is_cond]
        CondOnly.calls += 1
        return sel
'''


@pytest.fixture
def plugin(tmp_path, monkeypatch):
    (tmp_path / "my_policies.py").write_text(textwrap.dedent(PLUGIN))
    monkeypatch.syspath_prepend(str(tmp_path))
    import my_policies

    yield my_policies
    sys.modules.pop("my_policies", None)
    unregister_policy("cond-only")


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    pytest.importorskip("av")
    from surgsam.io import write_palette_png, write_video
    from synthetic import moving_objects_video

    d = tmp_path_factory.mktemp("clip")
    frames, gt = moving_objects_video(n=6, h=96, w=128)
    write_video(d / "clip.mp4", frames, fps=10)
    write_palette_png(d / "first.png", gt[1][0].astype(np.uint8))
    return d


def test_registered_policy_runs_through_the_cli(plugin, clip, tmp_path, capsys):
    register_policy("cond-only", plugin.CondOnly)
    assert policy_names()[:3] == ("fifo", "efp", "dlm") and "cond-only" in policy_names()
    assert isinstance(make_policy("cond-only"), plugin.CondOnly)
    rc = main(
        [
            "segment",
            str(clip / "clip.mp4"),
            "--mask",
            str(clip / "first.png"),
            "--memory",
            "cond-only",
            "--untrained",
            "--out",
            str(tmp_path / "out"),
            "--no-progress",
        ]
    )
    assert rc == 0 and plugin.CondOnly.calls == 5  # frames 1..5 selected through the plug-in
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["memory"] == "cond-only"


def test_module_colon_class_needs_no_registration(plugin, clip, tmp_path, capsys):
    plugin.CondOnly.calls = 0
    rc = main(
        [
            "segment",
            str(clip / "clip.mp4"),
            "--mask",
            str(clip / "first.png"),
            "--memory",
            "my_policies:CondOnly",
            "--untrained",
            "--out",
            str(tmp_path / "out"),
            "--no-progress",
        ]
    )
    assert rc == 0 and plugin.CondOnly.calls == 5
    capsys.readouterr()


def test_unknown_policy_is_a_parse_error_naming_the_choices(clip, tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(
            [
                "segment",
                str(clip / "clip.mp4"),
                "--mask",
                str(clip / "first.png"),
                "--memory",
                "lru",
                "--out",
                str(tmp_path / "out"),
            ]
        )
    assert "unknown memory policy 'lru'; choose one of fifo, efp, dlm" in capsys.readouterr().err


def test_registry_rules():
    with pytest.raises(ValueError, match="already registered"):
        register_policy("efp", FifoPolicy)
    with pytest.raises(ValueError, match="lower case"):
        register_policy("Bad Name", FifoPolicy)
    with pytest.raises(ValueError, match="cannot load memory policy"):
        make_policy("no_such_module_here:X")


def test_policy_storage_is_counted_by_the_bank():
    """dlm's pool and long-term bank live in the bank's private storage and are counted."""
    import torch

    from surgsam.memory import DLMPolicy, MemoryEntry

    p, bank = DLMPolicy(pool_size=2), MemoryBank()
    f = lambda: torch.ones(1, 2, 1, 3)  # noqa: E731
    p.commit(bank, MemoryEntry(0, f(), torch.zeros(1, 4), True, 1.0, 1.0))
    for t in (1, 2):
        p.commit(bank, MemoryEntry(t, f(), torch.zeros(1, 4), False, 1.0, 0.99))
    assert list(bank.private) == ["dlm"] and len(DLMPolicy.state(bank).long_term) == 1
    for t in range(3, 40):  # the short window moves on; the long-term copy stays counted
        p.commit(bank, MemoryEntry(t, f(), torch.zeros(1, 4), False, 1.0, 0.1))
    assert bank.num_tensors() == 1 + 7 + 1
