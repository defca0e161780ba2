"""ONNX export of the image encoder and the per-frame tracking step, and an onnxruntime
runner for them.

``export_onnx(model, out_dir)`` writes ``image_encoder.onnx``, ``track_step.onnx`` and
``surgsam_onnx.json`` (sizes, memory slots, tensor names). The tracking step's memory is
padded to a fixed number of slots (the policy's capacity), so both graphs have static shapes
except the number of objects. :class:`OnnxModel` runs them with onnxruntime.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import MISSING, asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from .._optional import require
from ..io.atomic import atomic_path, atomic_write_json
from ..memory import make_policy
from ..modeling.sam2 import SAM2Model
from .graphs import ENCODER_INPUTS, ENCODER_OUTPUTS, STEP_INPUTS, STEP_OUTPUTS, ImageEncoderGraph, TrackStepGraph

MANIFEST = "surgsam_onnx.json"


@dataclass
class OnnxManifest:
    """What a runner needs to feed the graphs (written beside them as JSON)."""

    model: str
    image_size: int
    feat_size: int
    hidden_dim: int
    mem_dim: int
    memory: str
    slots: tuple[int, int]  # (spatial memories, object pointers) the memory is padded to
    memory_tokens: int  # M = slots[0] * feat_size**2 + slots[1] * hidden_dim / mem_dim
    opset: int
    encoder: str = "image_encoder.onnx"
    track_step: str = "track_step.onnx"


def _require_onnx() -> None:
    for module in ("onnx", "onnxscript"):
        require(module, "export", "ONNX export")


def export_onnx(
    model: SAM2Model, out_dir: str | Path, memory: str = "efp", max_objects: int = 64, opset: int = 18,
    verbose: bool = False,
) -> OnnxManifest:
    """Export both graphs of ``model`` (fp32, CPU) to ``out_dir``; returns the manifest.

    ``memory`` fixes the padded memory size (``efp`` attends to 5 spatial memories, ``fifo``
    to 7, ``dlm`` to 10); ``max_objects`` bounds the dynamic object axis of the step.
    """
    _require_onnx()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model = model.eval().float().cpu()
    cfg = model.cfg
    s, c, cm = cfg.feat_size, model.hidden_dim, model.mem_dim
    slots = make_policy(memory, model.num_maskmem, cfg.max_obj_ptrs_in_encoder).capacity()
    m_tokens = slots[0] * s * s + slots[1] * (c // cm)
    man = OnnxManifest(cfg.name, model.image_size, s, c, cm, memory, slots, m_tokens, opset)

    image = torch.rand(1, 3, model.image_size, model.image_size) * 255
    b = 2
    step_args = (
        torch.randn(b, c, s, s), torch.randn(b, c, s, s), torch.randn(b, c // 8, 4 * s, 4 * s),
        torch.randn(b, c // 4, 2 * s, 2 * s), torch.randn(b, m_tokens, cm), torch.randn(b, m_tokens, cm),
        torch.ones(b, m_tokens, dtype=torch.bool),
    )
    objects = torch.export.Dim("objects", min=1, max=max_objects)
    common = dict(dynamo=True, opset_version=opset, external_data=False, verbose=verbose)
    # each file is written under a temporary name and renamed into place when complete
    with torch.no_grad(), _quiet_exporter(verbose):
        with atomic_path(out / man.encoder, what="ONNX image encoder") as tmp:
            torch.onnx.export(ImageEncoderGraph(model).eval(), (image,), str(tmp),
                              input_names=list(ENCODER_INPUTS), output_names=list(ENCODER_OUTPUTS), **common)
        with atomic_path(out / man.track_step, what="ONNX tracking step") as tmp:
            torch.onnx.export(TrackStepGraph(model, slots).eval(), step_args, str(tmp),
                              input_names=list(STEP_INPUTS), output_names=list(STEP_OUTPUTS),
                              dynamic_shapes={k: {0: objects} for k in STEP_INPUTS}, **common)
    atomic_write_json(out / MANIFEST, asdict(man), what="ONNX manifest")
    return man


class OnnxManifestError(ValueError):
    """An export folder's manifest that cannot be used (not JSON, wrong fields, unsafe paths)."""


_INT_FIELDS = ("image_size", "feat_size", "hidden_dim", "mem_dim", "memory_tokens", "opset")
_GRAPH_FIELDS = ("encoder", "track_step")


def read_manifest(folder: str | Path) -> OnnxManifest:
    """Read and check ``folder/surgsam_onnx.json``: valid JSON with exactly the manifest's fields
    and types, graph files that are plain relative names inside ``folder`` and exist.

    Raises :class:`FileNotFoundError` (no manifest, a missing graph) or
    :class:`OnnxManifestError` naming what is wrong.
    """
    folder = Path(folder)
    path = folder / MANIFEST
    if not path.is_file():
        raise FileNotFoundError(f"{folder} has no {MANIFEST}: export it with `surgsam export`")
    try:
        d = json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise OnnxManifestError(f"{path} is not a text file (not UTF-8): re-export with `surgsam export`") from None
    except json.JSONDecodeError as e:
        raise OnnxManifestError(f"{path} is not valid JSON ({e.msg}, line {e.lineno} column {e.colno}): "
                                "re-export with `surgsam export`") from None
    if not isinstance(d, dict):
        raise OnnxManifestError(f"{path} must hold a JSON object, found {type(d).__name__}")
    fields = OnnxManifest.__dataclass_fields__
    required = {f for f, v in fields.items() if v.default is MISSING}
    missing, unknown = sorted(required - set(d)), sorted(set(d) - set(fields))
    if missing or unknown:
        parts = ([f"missing fields {missing}"] if missing else []) + ([f"unknown fields {unknown}"] if unknown else [])
        raise OnnxManifestError(f"{path}: " + "; ".join(parts))
    bad = [f for f in _INT_FIELDS if not (isinstance(d[f], int) and not isinstance(d[f], bool) and d[f] > 0)]
    bad += [f for f in ("model", "memory", *_GRAPH_FIELDS) if f in d and not (isinstance(d[f], str) and d[f])]
    slots = d["slots"]
    if not (isinstance(slots, list) and len(slots) == 2
            and all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in slots)):
        bad.append("slots")
    if bad:
        raise OnnxManifestError(f"{path}: fields with a wrong type or value: {sorted(set(bad))} "
                                "(sizes are positive integers, slots two integers, names non-empty strings)")
    root = folder.resolve()
    for f in _GRAPH_FIELDS:
        name = d.get(f, fields[f].default)
        target = (folder / name).resolve()
        if Path(name).is_absolute() or ".." in Path(name).parts or not target.is_relative_to(root):
            raise OnnxManifestError(f"{path}: {f} {name!r} points outside the export folder; graph files must "
                                    "be names inside it")
        if not target.is_file():
            raise FileNotFoundError(f"{path}: the {f} graph {name!r} is not in {folder}")
    d["slots"] = tuple(slots)
    return OnnxManifest(**d)


@contextmanager
def _quiet_exporter(verbose: bool) -> Iterator[None]:
    """Silence the exporter's progress lines and its warnings about optional torchvision ops
    and deprecations that do not concern the user (unless ``verbose``)."""
    if verbose:
        yield
        return
    log = logging.getLogger("torch.onnx")
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        sink = io.StringIO()
        with warnings.catch_warnings(), contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
            warnings.simplefilter("ignore")
            yield
    finally:
        log.setLevel(level)


class OnnxModel:
    """The exported graphs in onnxruntime (CPU by default).

    ``encode_image(image)``: ``1 x 3 x S x S`` float 0..255 -> dict of encoder outputs.
    ``track_step(**inputs)``: the step's inputs (numpy) -> dict of its outputs.
    """

    def __init__(self, folder: str | Path, providers: tuple[str, ...] = ("CPUExecutionProvider",), threads: int | None = None) -> None:
        try:
            import onnxruntime as ort
        except ModuleNotFoundError:
            raise ModuleNotFoundError("running exported models needs onnxruntime: pip install 'surgsam[export]'") from None
        folder = Path(folder)
        self.manifest = read_manifest(folder)
        opts = ort.SessionOptions()
        if threads:
            opts.intra_op_num_threads = threads
        self._enc = ort.InferenceSession(str(folder / self.manifest.encoder), opts, providers=list(providers))
        self._step = ort.InferenceSession(str(folder / self.manifest.track_step), opts, providers=list(providers))

    def encode_image(self, image: np.ndarray) -> dict[str, np.ndarray]:
        return dict(zip(ENCODER_OUTPUTS, self._enc.run(None, {"image": np.asarray(image, np.float32)})))

    def track_step(self, **inputs: np.ndarray) -> dict[str, np.ndarray]:
        missing = set(STEP_INPUTS) - set(inputs)
        if missing:
            raise ValueError(f"track_step is missing inputs {sorted(missing)}")
        feed = {k: np.asarray(inputs[k]) for k in STEP_INPUTS}
        return dict(zip(STEP_OUTPUTS, self._step.run(None, feed)))


def time_call(fn, repeats: int = 5) -> float:
    """Median wall time of ``fn()`` in ms after one warm-up call."""
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1000)
    return float(np.median(times))
