"""ONNX export of the image encoder, the prompted-frame step and the per-frame tracking step.

``export_onnx(model, out_dir)`` writes ``image_encoder.onnx``, ``prompt_step.onnx``,
``track_step.onnx``, ``host_constants.npz`` and ``surgsam_onnx.json`` (sizes, memory slots,
file names). The tracking step's memory is padded to a fixed number of slots (the policy's
capacity), so every graph has static shapes except the number of objects (and of clicks).
Running them needs no PyTorch: :class:`~surgsam.export.runtime.OnnxModel` (the graphs) and
:class:`~surgsam.export.runner.OnnxVideoSegmenter` (a whole video).
"""

from __future__ import annotations

import contextlib
import io
import logging
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from .._optional import require
from ..io.atomic import atomic_path, atomic_write_json
from ..memory import make_policy
from ..modeling.sam2 import SAM2Model
from .graphs import ImageEncoderGraph, PromptStepGraph, TrackStepGraph
from .runtime import (
    ENCODER_INPUTS,
    ENCODER_OUTPUTS,
    MANIFEST,
    PROMPT_INPUTS,
    PROMPT_OUTPUTS,
    STEP_INPUTS,
    STEP_OUTPUTS,
    HostConstants,
    OnnxManifest,
    OnnxManifestError,
    OnnxModel,
    read_manifest,
    time_call,
)

__all__ = [
    "MANIFEST",
    "CONSTANTS_FILE",
    "PROMPT_FILE",
    "HostConstants",
    "OnnxManifest",
    "OnnxManifestError",
    "OnnxModel",
    "export_onnx",
    "host_constants",
    "read_manifest",
    "time_call",
]

PROMPT_FILE = "prompt_step.onnx"
CONSTANTS_FILE = "host_constants.npz"


def _require_onnx() -> None:
    for module in ("onnx", "onnxscript"):
        require(module, "export", "ONNX export")


def host_constants(model: SAM2Model) -> HostConstants:
    """The constants the host adds to memories (see :class:`HostConstants`), from ``model``."""
    cfg = model.cfg
    c, cm, s = model.hidden_dim, model.mem_dim, cfg.feat_size
    with torch.no_grad():
        dummy = model.encode_memory(
            torch.zeros(1, c, s, s), torch.zeros(1, 1, model.image_size, model.image_size), torch.ones(1, 1)
        )
        memory_pos = dummy.pos[0].float().numpy()
        tpos = model.maskmem_tpos_enc.detach().float().reshape(model.num_maskmem, cm).numpy()
        if not cfg.add_tpos_enc_to_obj_ptrs:  # pointers carry no temporal encoding
            weight, bias = np.zeros((cm, 0), np.float32), np.zeros(cm, np.float32)
        elif isinstance(model.obj_ptr_tpos_proj, torch.nn.Linear):
            weight = model.obj_ptr_tpos_proj.weight.detach().float().numpy()
            bias = model.obj_ptr_tpos_proj.bias.detach().float().numpy()
        else:  # identity: the sine encoding at the memory width
            weight, bias = np.eye(cm, dtype=np.float32), np.zeros(cm, np.float32)
    return HostConstants(memory_pos, tpos, weight, bias, int(cfg.max_obj_ptrs_in_encoder))


def export_onnx(
    model: SAM2Model,
    out_dir: str | Path,
    memory: str = "efp",
    max_objects: int = 64,
    opset: int = 18,
    verbose: bool = False,
    progress: Callable[[str], None] | None = None,
    clock: Callable[[], float] = time.perf_counter,
) -> OnnxManifest:
    """Export the three graphs of ``model`` (fp32, CPU) and its host constants to ``out_dir``;
    returns the manifest.

    ``memory`` fixes the padded memory size (``efp`` attends to 5 spatial memories, ``fifo``
    to 7, ``dlm`` to 10); ``max_objects`` bounds the dynamic object axis. ``progress`` gets
    one line as each graph starts and one when it is written (size, seconds by ``clock``).
    """
    _require_onnx()
    say = progress or (lambda line: None)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model = model.eval().float().cpu()
    cfg = model.cfg
    s, c, cm, size = cfg.feat_size, model.hidden_dim, model.mem_dim, model.image_size
    slots = make_policy(memory, model.num_maskmem, cfg.max_obj_ptrs_in_encoder).capacity()
    m_tokens = slots[0] * s * s + slots[1] * (c // cm)
    man = OnnxManifest(
        cfg.name, size, s, c, cm, memory, slots, m_tokens, opset, prompt_step=PROMPT_FILE, constants=CONSTANTS_FILE
    )

    b, p = 2, 3
    feats = (
        torch.randn(b, c, s, s),
        torch.randn(b, c, s, s),
        torch.randn(b, c // 8, 4 * s, 4 * s),
        torch.randn(b, c // 4, 2 * s, 2 * s),
    )
    step_args = (
        *feats,
        torch.randn(b, m_tokens, cm),
        torch.randn(b, m_tokens, cm),
        torch.ones(b, m_tokens, dtype=torch.bool),
    )
    mask = torch.zeros(b, 1, size, size)
    mask[:, :, size // 4 : size // 2, size // 4 : size // 2] = 1
    prompt_args = (
        feats[0],
        feats[2],
        feats[3],
        torch.rand(b, p, 2) * size,
        torch.ones(b, p, dtype=torch.int32),
        mask,
        torch.tensor([True, False]),
    )
    objects = torch.export.Dim("objects", min=1, max=max_objects)
    clicks = torch.export.Dim("clicks", min=1, max=64)
    prompt_dims = {k: {0: objects} for k in PROMPT_INPUTS}
    prompt_dims["points"] = prompt_dims["labels"] = {0: objects, 1: clicks}
    jobs = [
        (
            man.encoder,
            "image encoder",
            ImageEncoderGraph(model),
            (torch.rand(1, 3, size, size) * 255,),
            ENCODER_INPUTS,
            ENCODER_OUTPUTS,
            None,
        ),
        (
            PROMPT_FILE,
            "prompted-frame step",
            PromptStepGraph(model),
            prompt_args,
            PROMPT_INPUTS,
            PROMPT_OUTPUTS,
            prompt_dims,
        ),
        (
            man.track_step,
            "tracking step",
            TrackStepGraph(model, slots),
            step_args,
            STEP_INPUTS,
            STEP_OUTPUTS,
            {k: {0: objects} for k in STEP_INPUTS},
        ),
    ]
    for i, (name, what, graph, args, inputs, outputs, dims) in enumerate(jobs, 1):
        say(f"exporting {name} ({i}/{len(jobs)}: {what}) ...")
        t0 = clock()
        # each file is written under a temporary name and renamed into place when complete
        with torch.no_grad(), _quiet_exporter(verbose), atomic_path(out / name, what=f"ONNX {what}") as tmp:
            torch.onnx.export(
                graph.eval(),
                args,
                str(tmp),
                input_names=list(inputs),
                output_names=list(outputs),
                dynamo=True,
                opset_version=opset,
                external_data=False,
                verbose=verbose,
                dynamic_shapes=dims,
            )
        say(f"exported {name}: {(out / name).stat().st_size / 1e6:.1f} MB in {clock() - t0:.1f} s")
    with atomic_path(out / CONSTANTS_FILE, what="host constants") as tmp, open(tmp, "wb") as f:
        host_constants(model).save(f)
    atomic_write_json(out / MANIFEST, asdict(man), what="ONNX manifest")
    return man


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
