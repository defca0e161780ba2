"""Choosing the compute precision once per session, by feature detection."""

from __future__ import annotations

import functools

import torch

PRECISIONS = ("fp32", "bf16", "fp16", "auto")


@functools.lru_cache(maxsize=None)
def cpu_has_fast_bf16() -> bool:
    """True when the CPU has AMX bf16 tiles. With AVX512-BF16 alone, torch's bf16 matmuls are
    slower than fp32 (measured on this project's Xeon machines: 110 ms vs 74 ms for a
    4096x768x3072 linear), so only AMX counts as fast."""
    try:
        with open("/proc/cpuinfo") as f:
            return "amx_bf16" in f.read()
    except OSError:
        return False


def resolve_precision(precision: str, device: torch.device) -> str:
    """``"auto"`` -> ``"bf16"`` where bf16 is fast (CUDA sm80+, CPUs with AMX), ``"fp16"`` on
    older CUDA GPUs, else ``"fp32"``."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if precision != "auto":
        return precision
    if device.type == "cuda":
        return "bf16" if torch.cuda.get_device_capability(device)[0] >= 8 else "fp16"
    if device.type == "cpu":
        return "bf16" if cpu_has_fast_bf16() else "fp32"
    return "fp32"
