"""The exported graphs in onnxruntime, without PyTorch: the manifest, its checks and the runner
of the three graphs (:class:`OnnxModel`). Nothing here imports torch, so an export folder
runs where only numpy, Pillow and onnxruntime are installed.

An export folder holds ``image_encoder.onnx``, ``prompt_step.onnx``, ``track_step.onnx``,
``host_constants.npz`` (what the host needs to lay out the memory: position encodings and
the object pointers' temporal projection) and ``surgsam_onnx.json`` (the manifest).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import MISSING, dataclass
from pathlib import Path

import numpy as np

from .._optional import require

MANIFEST = "surgsam_onnx.json"

ENCODER_INPUTS = ("image",)
ENCODER_OUTPUTS = ("features", "pos", "high_res_0", "high_res_1")
PROMPT_INPUTS = ("features", "high_res_0", "high_res_1", "points", "labels", "mask", "use_mask")
PROMPT_OUTPUTS = ("low_res_masks", "iou", "obj_ptr", "object_score_logits", "memory_features")
STEP_INPUTS = ("features", "pos", "high_res_0", "high_res_1", "memory", "memory_pos", "memory_mask")
STEP_OUTPUTS = ("low_res_masks", "high_res_masks", "ious", "obj_ptr", "object_score_logits", "memory_features")


@dataclass
class OnnxManifest:
    """What a runner needs to feed the graphs (written beside them as JSON).

    ``prompt_step`` and ``constants`` are None in folders exported before the prompted-frame
    graph existed: such a folder runs the tracking step only (no end-to-end segmentation).
    """

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
    prompt_step: str | None = None
    constants: str | None = None


class OnnxManifestError(ValueError):
    """An export folder's manifest that cannot be used (not JSON, wrong fields, unsafe paths)."""


_INT_FIELDS = ("image_size", "feat_size", "hidden_dim", "mem_dim", "memory_tokens", "opset")
_FILE_FIELDS = ("encoder", "track_step")
_OPTIONAL_FILE_FIELDS = ("prompt_step", "constants")


def read_manifest(folder: str | Path) -> OnnxManifest:
    """Read and check ``folder/surgsam_onnx.json``: valid JSON with exactly the manifest's fields
    and types, files that are plain relative names inside ``folder`` and exist.

    Raises :class:`FileNotFoundError` (no manifest, a missing file) or
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
        raise OnnxManifestError(
            f"{path} is not valid JSON ({e.msg}, line {e.lineno} column {e.colno}): re-export with `surgsam export`"
        ) from None
    if not isinstance(d, dict):
        raise OnnxManifestError(f"{path} must hold a JSON object, found {type(d).__name__}")
    fields = OnnxManifest.__dataclass_fields__
    required = {f for f, v in fields.items() if v.default is MISSING}
    missing, unknown = sorted(required - set(d)), sorted(set(d) - set(fields))
    if missing or unknown:
        parts = ([f"missing fields {missing}"] if missing else []) + ([f"unknown fields {unknown}"] if unknown else [])
        raise OnnxManifestError(f"{path}: " + "; ".join(parts))
    bad = [f for f in _INT_FIELDS if not (isinstance(d[f], int) and not isinstance(d[f], bool) and d[f] > 0)]
    bad += [f for f in ("model", "memory", *_FILE_FIELDS) if f in d and not (isinstance(d[f], str) and d[f])]
    bad += [f for f in _OPTIONAL_FILE_FIELDS if d.get(f) is not None and not (isinstance(d[f], str) and d[f])]
    slots = d["slots"]
    if not (
        isinstance(slots, list)
        and len(slots) == 2
        and all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in slots)
    ):
        bad.append("slots")
    if bad:
        raise OnnxManifestError(
            f"{path}: fields with a wrong type or value: {sorted(set(bad))} "
            "(sizes are positive integers, slots two integers, names non-empty strings)"
        )
    root = folder.resolve()
    for f in (*_FILE_FIELDS, *_OPTIONAL_FILE_FIELDS):
        name = d.get(f, fields[f].default)
        if name is None:
            continue
        target = (folder / name).resolve()
        if Path(name).is_absolute() or ".." in Path(name).parts or not target.is_relative_to(root):
            raise OnnxManifestError(
                f"{path}: {f} {name!r} points outside the export folder; graph files must be names inside it"
            )
        if not target.is_file():
            what = "file" if f == "constants" else "graph"
            raise FileNotFoundError(f"{path}: the {f} {what} {name!r} is not in {folder}")
    d["slots"] = tuple(slots)
    return OnnxManifest(**d)


@dataclass
class HostConstants:
    """What the host adds to memories before the tracking step (saved from the model's weights).

    memory_pos: ``Cm x h x w`` position encoding of every spatial memory.
    maskmem_tpos_enc: ``num_maskmem x Cm`` temporal encoding, row ``num_maskmem - slot - 1``
        for a memory in temporal slot ``slot``.
    ptr_pos_weight / ptr_pos_bias: ``Cm x D`` / ``Cm``: an object pointer at signed frame
        distance d gets ``W @ sine(d / ptr_tpos_max, D) + b``; ``D == 0`` means zeros.
    max_obj_ptrs: the model's ``max_obj_ptrs_in_encoder`` (sets ``ptr_tpos_max``).
    """

    memory_pos: np.ndarray
    maskmem_tpos_enc: np.ndarray
    ptr_pos_weight: np.ndarray
    ptr_pos_bias: np.ndarray
    max_obj_ptrs: int

    @property
    def num_maskmem(self) -> int:
        return int(self.maskmem_tpos_enc.shape[0])

    def save(self, f) -> None:
        """Write as ``.npz`` to the binary file object ``f``."""
        np.savez(
            f,
            memory_pos=self.memory_pos,
            maskmem_tpos_enc=self.maskmem_tpos_enc,
            ptr_pos_weight=self.ptr_pos_weight,
            ptr_pos_bias=self.ptr_pos_bias,
            max_obj_ptrs=np.int64(self.max_obj_ptrs),
        )

    @classmethod
    def load(cls, path: str | Path, manifest: OnnxManifest) -> HostConstants:
        """Read ``path`` (no pickles) and check its shapes against ``manifest``."""
        try:
            with np.load(path, allow_pickle=False) as z:
                arrays = {k: z[k] for k in z.files}
        except (OSError, ValueError) as e:
            raise OnnxManifestError(f"{path} is not a readable .npz of host constants ({e}): re-export") from None
        names = ("memory_pos", "maskmem_tpos_enc", "ptr_pos_weight", "ptr_pos_bias", "max_obj_ptrs")
        missing = [k for k in names if k not in arrays]
        if missing:
            raise OnnxManifestError(f"{path} lacks {missing}: re-export with `surgsam export`")
        cm, s = manifest.mem_dim, manifest.feat_size
        c = cls(
            arrays["memory_pos"].astype(np.float32),
            arrays["maskmem_tpos_enc"].astype(np.float32),
            arrays["ptr_pos_weight"].astype(np.float32),
            arrays["ptr_pos_bias"].astype(np.float32),
            int(arrays["max_obj_ptrs"]),
        )
        ok = (
            c.memory_pos.shape == (cm, s, s)
            and c.maskmem_tpos_enc.ndim == 2
            and c.maskmem_tpos_enc.shape[1] == cm
            and c.ptr_pos_weight.ndim == 2
            and c.ptr_pos_weight.shape[0] == cm
            and c.ptr_pos_bias.shape == (cm,)
            and c.max_obj_ptrs >= 1
        )
        if not ok:
            raise OnnxManifestError(
                f"{path}: host constants of the wrong shapes for a {manifest.model} model "
                f"(memory_pos {c.memory_pos.shape}, expected {(cm, s, s)}): re-export"
            )
        return c


class OnnxModel:
    """The exported graphs in onnxruntime (CPU by default).

    ``encode_image(image)``: ``1 x 3 x S x S`` float 0..255 -> dict of encoder outputs.
    ``prompt_step(**inputs)`` / ``track_step(**inputs)``: the graph's inputs (numpy) -> dict
    of its outputs. ``constants``: the folder's :class:`HostConstants` (None in old exports).
    """

    def __init__(
        self, folder: str | Path, providers: tuple[str, ...] = ("CPUExecutionProvider",), threads: int | None = None
    ) -> None:
        ort = require("onnxruntime", "export", "running exported models")
        folder = Path(folder)
        self.folder = folder
        self.manifest = read_manifest(folder)
        opts = ort.SessionOptions()
        if threads:
            opts.intra_op_num_threads = threads
        man = self.manifest

        def session(name: str):
            return ort.InferenceSession(str(folder / name), opts, providers=list(providers))

        self._enc = session(man.encoder)
        self._step = session(man.track_step)
        self._prompt = session(man.prompt_step) if man.prompt_step is not None else None
        self.constants = HostConstants.load(folder / man.constants, man) if man.constants is not None else None

    def encode_image(self, image: np.ndarray) -> dict[str, np.ndarray]:
        return dict(zip(ENCODER_OUTPUTS, self._enc.run(None, {"image": np.asarray(image, np.float32)})))

    def prompt_step(self, **inputs: np.ndarray) -> dict[str, np.ndarray]:
        if self._prompt is None:
            raise OnnxManifestError(
                f"{self.folder} has no prompted-frame graph (exported by an older surgsam): "
                "re-export it with `surgsam export` to segment videos without PyTorch"
            )
        return dict(zip(PROMPT_OUTPUTS, self._prompt.run(None, _feed("prompt_step", PROMPT_INPUTS, inputs))))

    def track_step(self, **inputs: np.ndarray) -> dict[str, np.ndarray]:
        return dict(zip(STEP_OUTPUTS, self._step.run(None, _feed("track_step", STEP_INPUTS, inputs))))


def _feed(graph: str, names: tuple[str, ...], inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    missing, unknown = set(names) - set(inputs), set(inputs) - set(names)
    if missing or unknown:
        raise ValueError(f"{graph} takes {list(names)}; missing {sorted(missing)}, unknown {sorted(unknown)}")
    return {k: np.asarray(inputs[k]) for k in names}


def time_call(fn: Callable[[], object], repeats: int = 5) -> float:
    """Median wall time of ``fn()`` in ms after one warm-up call."""
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1000)
    return float(np.median(times))
