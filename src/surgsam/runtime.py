"""Process-wide runtime settings of the command line: how many CPU threads torch uses, and
which device a (torchrun) process computes on.

torch's default (one thread per core) collapses when other processes already keep the cores
busy: OpenMP threads then wait for each other on every operator (measured on a loaded 2-core
machine: 205 s with 2 threads against 8.7 s with 1 thread for the same clip, same masks). The
``auto`` choice therefore leaves out the cores that the 1-minute load average says are taken.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch


def available_cpus() -> int:
    """CPUs this process may run on (its affinity mask where the OS has one)."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def auto_threads(cpus: int | None = None, load: float | None = None) -> int:
    """``cpus`` minus the cores the load average says are busy, at least 1: all cores on an
    idle machine, one thread on a saturated one."""
    cpus = available_cpus() if cpus is None else cpus
    if load is None:
        try:
            load = os.getloadavg()[0]
        except (OSError, AttributeError):  # not available (e.g. Windows)
            load = 0.0
    return max(1, min(cpus, cpus - int(load + 0.5)))


def parse_threads(spec: str | int) -> int:
    """``"auto"`` -> :func:`auto_threads`; a positive integer as given; anything else a clear error."""
    if isinstance(spec, str) and spec.strip().lower() == "auto":
        return auto_threads()
    try:
        n = int(spec)
    except (TypeError, ValueError):
        raise ValueError(f"--threads must be a positive integer or 'auto', got {spec!r}") from None
    if n < 1:
        raise ValueError(f"--threads must be a positive integer or 'auto', got {spec!r}")
    return n


@contextmanager
def torch_threads(spec: str | int) -> Iterator[int]:
    """Run a block with torch using :func:`parse_threads` ``(spec)`` CPU threads; the previous
    setting is restored afterwards (a command run inside a longer-lived process leaves it as it was)."""
    import torch

    n = parse_threads(spec)
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield n
    finally:
        torch.set_num_threads(before)


def process_device(name: str | None, local_rank: int = 0) -> torch.device:
    """The device this process computes on: ``name`` (``"cpu"``, ``"cuda"``, ``"cuda:1"``) or,
    when None, this process's GPU if there is one. A bare ``"cuda"`` becomes
    ``cuda:<local_rank>``: under torchrun each process owns the GPU of its local rank, and
    ``torch.cuda.set_device`` rejects a CUDA device without an index."""
    import torch

    if name is None:
        name = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(name)
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", local_rank)
    return device
