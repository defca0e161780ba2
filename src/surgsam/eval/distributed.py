"""Sharded end-to-end evaluation under ``torchrun``: videos are split across ranks, each rank
segments and scores its share, and rank 0 gathers and merges the results.

Launch::

    torchrun --nproc_per_node 2 -m surgsam eval --e2e --data DIR --segmenter copy

The process group uses NCCL when the run is on CUDA and gloo otherwise. Without ``torchrun``
(``WORLD_SIZE`` unset or 1) everything runs in one process and no group is created.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

from .evaluator import EvalResult

__all__ = [
    "DistEnv",
    "dist_env",
    "gather_payloads",
    "gather_results",
    "init_distributed",
    "shard",
    "shutdown_distributed",
]


@dataclass(frozen=True)
class DistEnv:
    """This process's place in the job (from torchrun's environment variables)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: str | None = None

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def dist_env() -> DistEnv:
    """Read ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK`` (defaults: a single process)."""
    return DistEnv(
        rank=int(os.environ.get("RANK", 0)),
        world_size=int(os.environ.get("WORLD_SIZE", 1)),
        local_rank=int(os.environ.get("LOCAL_RANK", 0)),
    )


def init_distributed(device: str = "cpu") -> DistEnv:
    """Join the torchrun process group if there is one; returns the environment.

    NCCL is chosen for a CUDA ``device`` when CUDA is available (each rank then uses
    ``cuda:LOCAL_RANK``), gloo otherwise.
    """
    env = dist_env()
    if not env.distributed:
        return env
    import torch
    import torch.distributed as dist

    use_nccl = str(device).startswith("cuda") and torch.cuda.is_available()
    backend = "nccl" if use_nccl else "gloo"
    if not dist.is_initialized():
        if use_nccl:
            torch.cuda.set_device(env.local_rank)
        dist.init_process_group(backend=backend)
    return DistEnv(env.rank, env.world_size, env.local_rank, backend)


def shutdown_distributed() -> None:
    """Leave the process group (no-op without one)."""
    try:
        import torch.distributed as dist
    except ImportError:  # pragma: no cover
        return
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def shard(lengths: Sequence[int], rank: int, world_size: int) -> list[int]:
    """Indices of the items rank ``rank`` handles, balancing total length across ranks.

    Greedy longest-first assignment to the least-loaded rank (ties to the lower rank); the
    result is deterministic, disjoint across ranks and covers every item. Returned in order.
    """
    if not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} outside world of {world_size}")
    load = [0] * world_size
    owner = [0] * len(lengths)
    for i in sorted(range(len(lengths)), key=lambda i: (-lengths[i], i)):
        r = min(range(world_size), key=lambda r: (load[r], r))
        owner[i] = r
        load[r] += max(1, int(lengths[i]))
    return [i for i in range(len(lengths)) if owner[i] == rank]


def gather_results(result: EvalResult, env: DistEnv) -> EvalResult | None:
    """All ranks send their result to rank 0, which returns the merge; other ranks get ``None``."""
    if not env.distributed:
        return result
    import torch.distributed as dist

    payload = result.to_dict()
    if env.is_main:
        parts: list = [None] * env.world_size
        dist.gather_object(payload, parts, dst=0)
    else:
        dist.gather_object(payload, None, dst=0)
        return None
    return EvalResult.merge(EvalResult.from_dict(p) for p in parts if p is not None)


def gather_payloads(payload, env: DistEnv) -> list | None:
    """All ranks send a picklable ``payload`` to rank 0, which gets the list (rank order); other
    ranks get ``None``. Without a process group: ``[payload]``."""
    if not env.distributed:
        return [payload]
    import torch.distributed as dist

    if env.is_main:
        parts: list = [None] * env.world_size
        dist.gather_object(payload, parts, dst=0)
        return parts
    dist.gather_object(payload, None, dst=0)
    return None
