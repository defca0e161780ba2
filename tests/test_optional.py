"""The one helper for optional dependencies (surgsam._optional)."""

import sys

import pytest

from surgsam._optional import install_hint, require, require_av, require_gradio


def test_missing_package_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "av", None)  # as if not installed
    with pytest.raises(
        ImportError, match=r'^PyAV \(`av`\) is needed for writing video: pip install "surgsam\[video\]"$'
    ):
        require_av("writing video")


def test_installed_but_broken_package_says_so(tmp_path, monkeypatch):
    (tmp_path / "surgsam_broken_dep.py").write_text("raise ImportError('built for another numpy')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ImportError, match="installed but failed to import: built for another numpy"):
        require("surgsam_broken_dep", "video", "a test")
    sys.modules.pop("surgsam_broken_dep", None)


def test_error_type_and_present_module(monkeypatch):
    class Missing(ImportError):
        pass

    monkeypatch.setitem(sys.modules, "gradio", None)
    with pytest.raises(ImportError, match=r"surgsam\[demo\]"):
        require_gradio()
    with pytest.raises(Missing, match=r"surgsam\[text\]"):
        require("surgsam_no_such_module", "text", "a test", error=Missing)
    assert require("json", "none", "a test") is sys.modules["json"]
    assert install_hint("coco") == 'pip install "surgsam[coco]"'
