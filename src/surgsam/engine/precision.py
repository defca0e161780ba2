"""The one place that decides compute precision and autocast, for inference and training.

``resolve_precision(p, device)`` turns a requested precision into what runs;
``autocast(p, device)`` is the matching context. The engine (:mod:`.session`,
:mod:`.fastpath`), the referring segmenter and the trainer all go through these two.

``"auto"`` picks:

============  ==========================  =====================================
device        inference                   training
============  ==========================  =====================================
CUDA sm80+    bf16 autocast               bf16 autocast
older CUDA    fp16 autocast               fp32 (fp16 training needs loss scaling)
CPU           fp32                        fp32
============  ==========================  =====================================

On the CPU, whole-network bf16 autocast is not what makes SAM 2 fast: where the CPU has bf16
dot-product instructions the engine's fast path (:mod:`.fastpath`) runs the image encoder and
the memory attention in bf16 with its own kernels and keeps the rest in float32, after
:func:`cpu_bf16_speedup` has measured that bf16 matmuls are faster on this machine.
"""

from __future__ import annotations

import functools
import statistics
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from typing import Literal

import torch

#: A requested compute precision; ``"auto"`` picks by device (the module's table).
Precision = Literal["fp32", "bf16", "fp16", "auto"]
#: What training accepts (fp16 training would need loss scaling).
TrainPrecision = Literal["fp32", "bf16", "auto"]
#: What runs once ``"auto"`` is resolved.
ResolvedPrecision = Literal["fp32", "bf16", "fp16"]
PRECISIONS: tuple[Precision, ...] = ("fp32", "bf16", "fp16", "auto")
TRAIN_PRECISIONS: tuple[TrainPrecision, ...] = ("fp32", "bf16", "auto")
DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def resolve_precision(precision: str, device: torch.device | str, *, training: bool = False) -> ResolvedPrecision:
    """The precision that runs for ``precision`` (one of :data:`PRECISIONS`; training accepts
    :data:`TRAIN_PRECISIONS`) on ``device``; ``"auto"`` as in the module's table."""
    device = torch.device(device)
    allowed = TRAIN_PRECISIONS if training else PRECISIONS
    if precision not in allowed:
        raise ValueError(f"precision must be one of {allowed}, got {precision!r}")
    if precision != "auto":
        return precision
    if device.type == "cuda":
        if torch.cuda.get_device_capability(device)[0] >= 8:
            return "bf16"
        return "fp32" if training else "fp16"
    return "fp32"


def autocast(precision: str, device: torch.device | str) -> AbstractContextManager:
    """Autocast to a resolved ``precision`` (``"bf16"`` / ``"fp16"``) on ``device``; a no-op
    context for ``"fp32"``."""
    dtype = DTYPES.get(precision)
    if precision not in ("fp32", *DTYPES):
        raise ValueError(f"autocast needs a resolved precision (fp32, bf16, fp16), got {precision!r}")
    return torch.autocast(torch.device(device).type, dtype=dtype) if dtype is not None else nullcontext()


Clock = Callable[[], float]


def measure_bf16_speedup(
    tokens: int = 1024, dim: int = 384, repeats: int = 3, clock: Clock = time.perf_counter
) -> float:
    """How many times faster a ``tokens x dim -> 4*dim`` linear layer runs in bf16 than in
    float32 on this CPU (weights already in bf16, the input cast included), best of
    ``repeats`` interleaved runs each. About 4 here on an AMD EPYC with AVX512-BF16; below 1
    on CPUs without bf16 dot products."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(tokens, dim, generator=g)
    w, b = torch.randn(4 * dim, dim, generator=g), torch.zeros(4 * dim)
    wb, bb = w.bfloat16(), b.bfloat16()
    runs: dict[str, list[float]] = {"fp32": [], "bf16": []}
    calls = {
        "fp32": lambda: torch.nn.functional.linear(x, w, b),
        "bf16": lambda: torch.nn.functional.linear(x.bfloat16(), wb, bb),
    }
    with torch.inference_mode():
        for fn in calls.values():
            fn()
        for _ in range(repeats):
            for name, fn in calls.items():
                t0 = clock()
                fn()
                runs[name].append(clock() - t0)
    return min(runs["fp32"]) / max(min(runs["bf16"]), 1e-9)


@functools.lru_cache(maxsize=None)
def cpu_bf16_speedup() -> float:
    """:func:`measure_bf16_speedup` once per process (about 50 ms)."""
    return statistics.median(measure_bf16_speedup() for _ in range(3))
