"""``surgsam export``: write the ONNX graphs of a model and check them against PyTorch."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from ..options import add_memory_argument


def register(sub) -> None:
    p = sub.add_parser(
        "export",
        help="export the image encoder, the prompted-frame step and the tracking step to ONNX",
        description="Export a model's image encoder, prompted-frame step (a mask / clicks / box on a new object, "
        "its memory) and per-frame tracking step (memory attention over a fixed-size padded memory, mask decoder, "
        "memory encoder) to ONNX, then check them with onnxruntime against PyTorch on random inputs and time both. "
        "Progress goes to stderr. Run the folder without PyTorch: python -m surgsam.export.run OUT VIDEO --mask M.png "
        "--out MASKS.",
    )
    p.add_argument("--model", default=None, help="preset name (optional with our own checkpoints)")
    p.add_argument(
        "--checkpoint",
        default=None,
        help="weights: Meta's .pt, a bare state dict, ours, or an embedded model's name (surgsam-nano-synth)",
    )
    p.add_argument("--image-size", type=int, default=None, help="model input size (default: the model's)")
    add_memory_argument(p, help="its capacity sizes the exported memory")
    p.add_argument("--out", type=Path, required=True, help="output folder")
    p.add_argument("--opset", type=int, default=18)
    p.add_argument("--no-check", action="store_true", help="skip the onnxruntime check and timing")
    p.set_defaults(func=run)


def _say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def run(args) -> int:
    import torch

    from ..modeling import build_model
    from .onnx import export_onnx
    from .runtime import OnnxModel

    if args.model is None and args.checkpoint is None:
        raise ValueError("give --model and/or --checkpoint")
    model = build_model(args.model, image_size=args.image_size, checkpoint=args.checkpoint)
    _say(
        f"export: {model.cfg.name} at {model.image_size}px, memory {args.memory}, 3 graphs to {args.out} "
        "(each takes from seconds to minutes)"
    )
    t0 = time.perf_counter()
    man = export_onnx(model, args.out, memory=args.memory, opset=args.opset, progress=_say)
    print(
        f"wrote {args.out}/{man.encoder}, {man.prompt_step} and {man.track_step} ({man.model} at "
        f"{man.image_size}px, memory {man.memory}: {man.slots[0]} spatial + {man.slots[1]} pointer slots) "
        f"in {time.perf_counter() - t0:.0f} s"
    )
    if not args.no_check:
        onnx_model = OnnxModel(args.out, threads=torch.get_num_threads())
        for name, diff, t_torch, t_ort in check_graphs(model, onnx_model, progress=_say):
            print(
                f"{name}: max |onnxruntime - torch| {diff:.2e}; torch {t_torch:.1f} ms, onnxruntime {t_ort:.1f} ms "
                f"({t_torch / t_ort:.2f}x)",
                flush=True,
            )
    _say(
        f"run it without PyTorch: python -m surgsam.export.run {args.out} VIDEO --mask FIRST_FRAME_MASK.png --out MASKS"
    )
    return 0


def check_graphs(
    model, onnx_model, objects: int = 2, seed: int = 0, progress: Callable[[str], None] | None = None
) -> Iterator[tuple[str, float, float, float]]:
    """Run each graph on random inputs (for the prompted frame: a mask row and a clicks row;
    for the tracking step: half the memory padded away) in PyTorch and in onnxruntime; yields
    ``(graph, max abs difference, torch ms, onnxruntime ms)`` as each is done. ``progress``
    gets a line before each graph."""
    import numpy as np
    import torch

    from .graphs import ImageEncoderGraph, PromptStepGraph, TrackStepGraph
    from .runtime import PROMPT_INPUTS, STEP_INPUTS, time_call

    say = progress or (lambda line: None)
    man = onnx_model.manifest
    g = torch.Generator().manual_seed(seed)
    b, s, cm, size = objects, man.feat_size, man.mem_dim, man.image_size

    def diff(a, ref) -> float:
        return max(float(np.abs(x - y.numpy()).max()) for x, y in zip(a, ref))

    def compare(name, graph, args, run_ort):
        say(f"verifying {name} (onnxruntime against torch, then timing both) ...")
        with torch.inference_mode():
            ref = graph(*args)
            t_torch = time_call(lambda: graph(*args))
        return name, diff(list(run_ort().values()), ref), t_torch, time_call(run_ort)

    enc = ImageEncoderGraph(model).eval()
    image = torch.rand(1, 3, size, size, generator=g) * 255
    yield compare(man.encoder, enc, (image,), lambda: onnx_model.encode_image(image.numpy()))
    with torch.no_grad():
        feats = [t.expand(b, *t.shape[1:]).contiguous() for t in enc(image)]
    if man.prompt_step is not None:
        mask = torch.zeros(b, 1, size, size)
        mask[:, :, size // 4 : size // 2, size // 3 : (2 * size) // 3] = 1
        points = torch.rand(b, 2, 2, generator=g) * size
        labels = torch.tensor([[1, 0]] * b, dtype=torch.int32)
        use_mask = torch.arange(b) % 2 == 0  # rows alternate: mask, clicks
        p_args = (feats[0], feats[2], feats[3], points, labels, mask, use_mask)
        p_np = {k: v.numpy() for k, v in zip(PROMPT_INPUTS, p_args)}
        yield compare(man.prompt_step, PromptStepGraph(model).eval(), p_args, lambda: onnx_model.prompt_step(**p_np))
    mask = torch.ones(b, man.memory_tokens, dtype=torch.bool)
    mask[:, (man.slots[0] // 2) * s * s : man.slots[0] * s * s] = False
    s_args = (
        *feats,
        torch.randn(b, man.memory_tokens, cm, generator=g),
        torch.randn(b, man.memory_tokens, cm, generator=g),
        mask,
    )
    s_np = {k: v.numpy() for k, v in zip(STEP_INPUTS, s_args)}
    yield compare(
        man.track_step, TrackStepGraph(model, man.slots).eval(), s_args, lambda: onnx_model.track_step(**s_np)
    )
