"""``surgsam export``: write the ONNX graphs of a model and check them against PyTorch."""

from __future__ import annotations

from pathlib import Path

from ..options import add_memory_argument


def register(sub) -> None:
    p = sub.add_parser(
        "export",
        help="export the image encoder and the tracking step to ONNX",
        description="Export a model's image encoder and per-frame tracking step (memory attention over "
        "a fixed-size padded memory, mask decoder, memory encoder) to ONNX, then check them with "
        "onnxruntime against PyTorch on random inputs and time both.",
    )
    p.add_argument("--model", default=None, help="preset name (optional with our own checkpoints)")
    p.add_argument("--checkpoint", default=None, help="weights: Meta's .pt, a bare state dict, or ours")
    p.add_argument("--image-size", type=int, default=None, help="model input size (default: the model's)")
    add_memory_argument(p, help="its capacity sizes the exported memory")
    p.add_argument("--out", type=Path, required=True, help="output folder")
    p.add_argument("--opset", type=int, default=18)
    p.add_argument("--no-check", action="store_true", help="skip the onnxruntime check and timing")
    p.set_defaults(func=run)


def run(args) -> int:
    import torch

    from ..modeling import build_model
    from .onnx import OnnxModel, export_onnx

    if args.model is None and args.checkpoint is None:
        raise ValueError("give --model and/or --checkpoint")
    model = build_model(args.model, image_size=args.image_size, checkpoint=args.checkpoint)
    man = export_onnx(model, args.out, memory=args.memory, opset=args.opset)
    print(f"wrote {args.out}/{man.encoder} and {man.track_step} ({man.model} at {man.image_size}px, "
          f"memory {man.memory}: {man.slots[0]} spatial + {man.slots[1]} pointer slots)")
    if args.no_check:
        return 0
    report = check_export(model, OnnxModel(args.out, threads=torch.get_num_threads()))
    for name, (diff, t_torch, t_ort) in report.items():
        print(f"{name}: max |onnxruntime - torch| {diff:.2e}; torch {t_torch:.1f} ms, onnxruntime {t_ort:.1f} ms "
              f"({t_torch / t_ort:.2f}x)")
    return 0


def check_export(model, onnx_model, objects: int = 1, seed: int = 0) -> dict[str, tuple[float, float, float]]:
    """Run both graphs on random inputs (half the memory padded away) in PyTorch and in
    onnxruntime: {graph: (max abs difference, torch ms, onnxruntime ms)}."""
    import numpy as np
    import torch

    from .graphs import ImageEncoderGraph, TrackStepGraph
    from .onnx import time_call

    man = onnx_model.manifest
    g = torch.Generator().manual_seed(seed)
    enc, step = ImageEncoderGraph(model).eval(), TrackStepGraph(model, man.slots).eval()
    image = torch.rand(1, 3, man.image_size, man.image_size, generator=g) * 255
    with torch.no_grad():
        feats = enc(image)
    b, s, cm = objects, man.feat_size, man.mem_dim
    mask = torch.ones(b, man.memory_tokens, dtype=torch.bool)
    mask[:, (man.slots[0] // 2) * s * s : man.slots[0] * s * s] = False
    inputs = [t.expand(b, *t.shape[1:]).contiguous() for t in feats]
    inputs += [torch.randn(b, man.memory_tokens, cm, generator=g), torch.randn(b, man.memory_tokens, cm, generator=g), mask]
    np_in = {k: v.numpy() for k, v in zip(("features", "pos", "high_res_0", "high_res_1", "memory", "memory_pos", "memory_mask"), inputs)}

    def diff(a, b) -> float:
        return max(float(np.abs(x - y.numpy()).max()) for x, y in zip(a, b))

    with torch.inference_mode():
        enc_ref, step_ref = enc(image), step(*inputs)
        t_enc = time_call(lambda: enc(image))
        t_step = time_call(lambda: step(*inputs))
    enc_out = onnx_model.encode_image(image.numpy())
    step_out = onnx_model.track_step(**np_in)
    return {
        "image_encoder": (diff(list(enc_out.values()), enc_ref), t_enc, time_call(lambda: onnx_model.encode_image(image.numpy()))),
        "track_step": (diff(list(step_out.values()), step_ref), t_step, time_call(lambda: onnx_model.track_step(**np_in))),
    }
