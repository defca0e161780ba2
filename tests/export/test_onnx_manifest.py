"""The ONNX export folder's manifest is checked before any graph is loaded: bad JSON, wrong
fields or types, and graph paths that leave the folder each get a clear error (issue 17)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from surgsam.export.onnx import MANIFEST, OnnxManifest, OnnxManifestError, read_manifest

GOOD = {
    "model": "nano",
    "image_size": 64,
    "feat_size": 4,
    "hidden_dim": 32,
    "mem_dim": 16,
    "memory": "efp",
    "slots": [5, 16],
    "memory_tokens": 112,
    "opset": 18,
    "encoder": "image_encoder.onnx",
    "track_step": "track_step.onnx",
}


def _folder(tmp_path: Path, manifest) -> Path:
    d = tmp_path / "export"
    d.mkdir(exist_ok=True)
    (d / "image_encoder.onnx").write_bytes(b"graph")
    (d / "track_step.onnx").write_bytes(b"graph")
    text = manifest if isinstance(manifest, str) else json.dumps(manifest)
    (d / MANIFEST).write_text(text)
    return d


def test_good_manifest_reads(tmp_path):
    man = read_manifest(_folder(tmp_path, GOOD))
    assert isinstance(man, OnnxManifest) and man.slots == (5, 16) and man.encoder == "image_encoder.onnx"
    defaults = {k: v for k, v in GOOD.items() if k not in ("encoder", "track_step")}
    assert read_manifest(_folder(tmp_path, defaults)).track_step == "track_step.onnx"


@pytest.mark.parametrize(
    "text,match",
    [
        ('{"model": "nano",', "not valid JSON"),
        ("", "not valid JSON"),
        ("[1, 2]", "must hold a JSON object, found list"),
        (json.dumps({k: v for k, v in GOOD.items() if k != "slots"}), r"missing fields \['slots'\]"),
        (json.dumps({**GOOD, "evil": 1}), r"unknown fields \['evil'\]"),
        (json.dumps({**GOOD, "image_size": "64"}), r"wrong type or value: \['image_size'\]"),
        (json.dumps({**GOOD, "opset": -1}), r"\['opset'\]"),
        (json.dumps({**GOOD, "slots": [5]}), r"\['slots'\]"),
        (json.dumps({**GOOD, "slots": "5,16"}), r"\['slots'\]"),
        (json.dumps({**GOOD, "encoder": 3}), r"\['encoder'\]"),
        (json.dumps({**GOOD, "encoder": "../outside.onnx"}), "outside the export folder"),
        (json.dumps({**GOOD, "track_step": "/etc/passwd"}), "outside the export folder"),
    ],
)
def test_bad_manifests_named(tmp_path, text, match):
    with pytest.raises(OnnxManifestError, match=match):
        read_manifest(_folder(tmp_path, text))


def test_binary_manifest(tmp_path):
    d = _folder(tmp_path, GOOD)
    (d / MANIFEST).write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(OnnxManifestError, match="not a text file|not valid JSON"):
        read_manifest(d)


def test_symlink_out_of_the_folder_refused(tmp_path):
    d = _folder(tmp_path, {**GOOD, "encoder": "link.onnx"})
    (tmp_path / "elsewhere.onnx").write_bytes(b"graph")
    os.symlink(tmp_path / "elsewhere.onnx", d / "link.onnx")
    with pytest.raises(OnnxManifestError, match="outside the export folder"):
        read_manifest(d)


def test_missing_graph_and_manifest(tmp_path):
    d = _folder(tmp_path, GOOD)
    (d / "track_step.onnx").unlink()
    with pytest.raises(FileNotFoundError, match="track_step graph 'track_step.onnx'"):
        read_manifest(d)
    with pytest.raises(FileNotFoundError, match="surgsam export"):
        read_manifest(tmp_path / "nothing")


def test_runner_checks_the_manifest_first(tmp_path):
    pytest.importorskip("onnxruntime")
    from surgsam.export import OnnxModel

    with pytest.raises(OnnxManifestError, match="outside the export folder"):
        OnnxModel(_folder(tmp_path, {**GOOD, "encoder": "../../x.onnx"}))
