"""Every ```python block of README.md runs as written, in order, in one namespace (in a
scratch folder: the examples write files). They use the bundled clip and embedded models.
README's other blocks and those of docs/ are test_docs_examples.py's."""

from __future__ import annotations

import pytest
from markdown_blocks import ROOT, fenced_blocks

README = ROOT / "README.md"


def python_blocks() -> list[str]:
    """README's ```python blocks to run (one with a parsed-only or not-run note is left out)."""
    return [b.code for b in fenced_blocks(README) if b.lang == "python" and b.mode == "run"]


def test_readme_python_examples_run(tmp_path, monkeypatch, capsys):
    pytest.importorskip("av")
    pytest.importorskip("transformers")
    from surgsam.modeling.embedded import is_embedded_available

    if not (is_embedded_available("surgsam-nano-synth") and is_embedded_available("surgsam-ref-nano-synth")):
        pytest.skip("the embedded models are not in this installation")
    blocks = python_blocks()
    assert len(blocks) >= 4
    monkeypatch.chdir(tmp_path)
    ns: dict = {"__name__": "readme"}
    for i, code in enumerate(blocks):
        try:
            exec(compile(code, f"README.md python block {i + 1}", "exec"), ns)
        except Exception as e:  # name the block that broke
            raise AssertionError(f"README python block {i + 1} failed: {e!r}\n{code}") from e
    out = capsys.readouterr().out
    assert "29 [1, 2]" in out  # segment_video printed the last frame with both objects
    assert (tmp_path / "clip.mp4").is_file()
