"""The fast path, chosen once per session by feature detection and measurement.

On CUDA GPUs with bf16 (sm80+: A100, H100, RTX 30xx/40xx, ...) the session runs under bf16
autocast with TF32 matmuls, a static-shape memory (every frame attends to a memory of the
same size, padded and masked) and ``torch.compile``-d image encoder, memory attention and
tracking decoder: one graph serves every frame. Older GPUs get fp16 autocast only.

On the CPU (:mod:`.cpufast`), where a bf16 matmul measured at least :data:`CPU_BF16_MIN_SPEEDUP`
times faster than float32 (AVX512-BF16 or AMX), the image encoder's trunk and the memory
attention compute in bf16 with their own attention kernel while the decoder and the memory
encoder stay float32; elsewhere, and for models narrower than :data:`CPU_BF16_MIN_WIDTH` (the
nano), the CPU runs eager float32. ``torch.compile`` and the cached memory projections are not
switched on by ``"auto"`` on the CPU: they did not pay enough on the machine this was measured
on (docs/fast_path_and_export.md). The choice and the reason are
one line in :attr:`FastPath.notice`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Literal

import torch

from ..modeling.sam2 import SAM2Model
from .precision import Precision, ResolvedPrecision, cpu_bf16_speedup, resolve_precision

#: ``fast=``: off, forced on, or ``"auto"`` (on where it helps).
FastMode = bool | Literal["auto"]
FAST_CHOICES = (False, True, "auto")
#: bf16 matmuls must be this many times faster than float32 for the CPU fast path to use them.
CPU_BF16_MIN_SPEEDUP = 1.5
#: Under ``"auto"`` the CPU fast path keeps models narrower than this (the embedded nano) in
#: float32, so that the shipped model's default masks stay the float32 reference (its bf16
#: recipe measured 1.13x at 4 objects on 2 threads, with the same held-out J&F; ask for it with
#: ``precision="bf16"``).
CPU_BF16_MIN_WIDTH = 256


@dataclass(frozen=True)
class FastPath:
    """What a session switches on.

    precision: ``"fp32"``, ``"bf16"`` or ``"fp16"`` autocast.
    compile: ``torch.compile`` the per-frame networks (static shapes).
    static_memory: pad the memory to the policy's capacity and mask the padding.
    tf32: TF32 matmuls for what stays in fp32 (CUDA only).
    cuda_graphs: compile with ``mode="reduce-overhead"`` (CUDA graphs replay the step).
    matmul: ``"bf16"``: the CPU recipe of :func:`surgsam.engine.cpufast.fast_model` (bf16
        trunk and memory attention, float32 heads; no autocast); ``"fp32"``: none.
    cached_memory: keep each memory's projections in the memory attention
        (:class:`surgsam.engine.cpufast.ProjectedMemory`; exact, dynamic memory layout only).
    notice: one line saying what was chosen and why.
    """

    precision: ResolvedPrecision = "fp32"
    compile: bool = False
    static_memory: bool = False
    tf32: bool = False
    cuda_graphs: bool = False
    matmul: str = "fp32"
    cached_memory: bool = False
    notice: str = ""


def resolve_fast_path(
    fast: FastMode,
    precision: Precision,
    device: torch.device,
    cuda_graphs: bool = False,
    *,
    width: int | None = None,
    bf16_speedup: Callable[[], float] = cpu_bf16_speedup,
) -> FastPath:
    """Decide the fast path for ``device``.

    Args:
        fast: False (eager, the given precision), ``"auto"`` (everything that helps on this
            device, see the module docstring), True (on any device: compile and static memory
            on CUDA; on the CPU the bf16 recipe whenever ``precision`` allows it, plus compile
            and the static memory, e.g. to test the compiled path on a CPU).
        precision: the requested precision (``"auto"`` picks bf16 / fp16 / fp32 by device,
            :func:`surgsam.engine.precision.resolve_precision`). On the CPU, ``"auto"`` or
            ``"bf16"`` let the fast path use bf16 matmuls; ``"fp32"`` keeps every float32.
        cuda_graphs: also replay the compiled step with CUDA graphs (CUDA only).
        width: the model's width (``d_model``); on the CPU, narrower models than
            :data:`CPU_BF16_MIN_WIDTH` stay float32 under ``"auto"``. None: not checked.
        bf16_speedup: measures how much faster bf16 matmuls are here (injectable for tests).
    """
    if not any(fast is c for c in (False, True)) and fast != "auto":
        raise ValueError(f"fast must be one of {FAST_CHOICES}, got {fast!r}")
    prec = resolve_precision(precision, device)
    if fast is False:
        return FastPath(precision=prec)
    cuda = device.type == "cuda"
    if device.type == "cpu":
        return _cpu_fast_path(fast, precision, prec, width, bf16_speedup)
    if fast is True:
        return FastPath(
            prec,
            compile=True,
            static_memory=True,
            tf32=cuda,
            cuda_graphs=cuda and cuda_graphs,
            notice=f"fast path forced on {device.type}: {prec}, torch.compile, static memory",
        )
    if cuda and torch.cuda.get_device_capability(device)[0] >= 8:
        graphs = " + CUDA graphs" if cuda_graphs else ""
        return FastPath(
            prec,
            compile=True,
            static_memory=True,
            tf32=True,
            cuda_graphs=cuda_graphs,
            notice=f"fast path: {prec} autocast, TF32, torch.compile{graphs}, static memory",
        )
    if cuda:
        sm = "".join(map(str, torch.cuda.get_device_capability(device)))
        return FastPath(
            prec, notice=f"fast path partly off: {prec} autocast; torch.compile needs sm80+ (this GPU is sm{sm})"
        )
    return FastPath(prec, notice=f"fast path off on {device.type}: eager {prec}")


def _cpu_fast_path(
    fast: FastMode, requested: Precision, prec: ResolvedPrecision, width: int | None, bf16_speedup: Callable[[], float]
) -> FastPath:
    """The CPU's fast path: the bf16 recipe where ``requested`` allows bf16 and it pays."""
    if fast is True:  # forced: compiled, static memory, and the bf16 recipe if allowed
        matmul = "bf16" if requested in ("auto", "bf16") else "fp32"
        return FastPath(
            "fp32" if matmul == "bf16" else prec,
            compile=True,
            static_memory=True,
            matmul=matmul,
            notice=f"fast path forced on cpu: {matmul} matmuls, torch.compile, static memory",
        )
    if requested not in ("auto", "bf16"):
        return FastPath(prec, notice=f"fast path off on cpu: eager {prec} (precision={requested} keeps every matmul)")
    if requested == "auto" and width is not None and width < CPU_BF16_MIN_WIDTH:
        return FastPath(
            prec,
            notice=f"fast path off on cpu: eager {prec} (a {width}-wide model keeps float32 under "
            "auto; precision=bf16 runs its bf16 recipe)",
        )
    speedup = bf16_speedup()
    if requested == "auto" and speedup < CPU_BF16_MIN_SPEEDUP:
        return FastPath(
            prec,
            notice=f"fast path off on cpu: eager {prec} (bf16 matmuls measured {speedup:.1f}x "
            f"fp32 here, below {CPU_BF16_MIN_SPEEDUP}x)",
        )
    return FastPath(
        "fp32",
        matmul="bf16",
        notice="fast path on cpu: bf16 image encoder and memory attention, "
        f"float32 heads (bf16 matmuls measured {speedup:.1f}x fp32 here)",
    )


@dataclass
class CompiledOps:
    """The per-frame calls a session makes, eager or compiled."""

    encode_image: Callable[..., Any]
    attend_memory: Callable[..., Any]
    predict_masks: Callable[..., Any]
    encode_memory: Callable[..., Any]

    @classmethod
    def build(cls, model: SAM2Model, fast: FastPath) -> "CompiledOps":
        ops: list[Callable[..., Any]] = [
            model.encode_image,
            model.attend_memory,
            model.predict_masks,
            model.encode_memory,
        ]
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
