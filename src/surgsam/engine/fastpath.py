"""The GPU fast path, chosen once per session by feature detection.

On CUDA GPUs with bf16 (sm80+: A100, H100, RTX 30xx/40xx, ...) the session runs under bf16
autocast with TF32 matmuls, a static-shape memory (every frame attends to a memory of the
same size, padded and masked) and ``torch.compile``-d image encoder, memory attention and
tracking decoder: one graph serves every frame. Older GPUs get fp16 autocast only; the CPU
runs eager (``torch.compile`` costs minutes of compilation there for little gain). The
choice and the reason are one line in :attr:`FastPath.notice`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch

from .precision import resolve_precision

FAST_CHOICES = (False, True, "auto")


@dataclass(frozen=True)
class FastPath:
    """What a session switches on.

    precision: ``"fp32"``, ``"bf16"`` or ``"fp16"`` autocast.
    compile: ``torch.compile`` the per-frame networks (static shapes).
    static_memory: pad the memory to the policy's capacity and mask the padding.
    tf32: TF32 matmuls for what stays in fp32 (CUDA only).
    cuda_graphs: compile with ``mode="reduce-overhead"`` (CUDA graphs replay the step).
    notice: one line saying what was chosen and why.
    """

    precision: str = "fp32"
    compile: bool = False
    static_memory: bool = False
    tf32: bool = False
    cuda_graphs: bool = False
    notice: str = ""


def resolve_fast_path(fast: bool | str, precision: str, device: torch.device, cuda_graphs: bool = False) -> FastPath:
    """Decide the fast path for ``device``.

    Args:
        fast: False (eager, the given precision), ``"auto"`` (everything that helps on this
            device, see the module docstring), True (compile and static memory on any device,
            e.g. to test the compiled path on a CPU).
        precision: the requested precision (``"auto"`` picks bf16 / fp16 / fp32 by device).
        cuda_graphs: also replay the compiled step with CUDA graphs (CUDA only).
    """
    if not any(fast is c for c in (False, True)) and fast != "auto":
        raise ValueError(f"fast must be one of {FAST_CHOICES}, got {fast!r}")
    prec = resolve_precision(precision, device)
    if fast is False:
        return FastPath(precision=prec)
    cuda = device.type == "cuda"
    if fast is True:
        return FastPath(prec, compile=True, static_memory=True, tf32=cuda, cuda_graphs=cuda and cuda_graphs,
                        notice=f"fast path forced on {device.type}: {prec}, torch.compile, static memory")
    if cuda and torch.cuda.get_device_capability(device)[0] >= 8:
        graphs = " + CUDA graphs" if cuda_graphs else ""
        return FastPath(prec, compile=True, static_memory=True, tf32=True, cuda_graphs=cuda_graphs,
                        notice=f"fast path: {prec} autocast, TF32, torch.compile{graphs}, static memory")
    if cuda:
        sm = "".join(map(str, torch.cuda.get_device_capability(device)))
        return FastPath(prec, notice=f"fast path partly off: {prec} autocast; torch.compile needs sm80+ (this GPU is sm{sm})")
    return FastPath(prec, notice=f"fast path off on {device.type}: eager {prec} (torch.compile is GPU-only here)")


@dataclass
class CompiledOps:
    """The per-frame calls a session makes, eager or compiled."""

    encode_image: Callable[..., Any]
    attend_memory: Callable[..., Any]
    predict_masks: Callable[..., Any]
    encode_memory: Callable[..., Any]

    @classmethod
    def build(cls, model: torch.nn.Module, fast: FastPath) -> "CompiledOps":
        ops = [model.encode_image, model.attend_memory, model.predict_masks, model.encode_memory]
        if fast.compile:
            mode = "reduce-overhead" if fast.cuda_graphs else None
            ops = [torch.compile(op, dynamic=False, mode=mode) for op in ops]
        return cls(*ops)


@contextmanager
def tf32_matmuls(enabled: bool) -> Iterator[None]:
    """Allow TF32 for fp32 matmuls inside the block only (restored after)."""
    if not enabled:
        yield
        return
    before = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision("high")
    try:
        yield
    finally:
        torch.set_float32_matmul_precision(before)
