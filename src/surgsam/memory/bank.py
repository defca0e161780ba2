"""Per-object memory bank: typed entries, what a frame attends to, bounded storage."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch


@dataclass
class MemoryEntry:
    """What one frame leaves in an object's memory.

    features: ``1 x Cm x h x w`` memory-encoder output (stored in ``memory_dtype``, bf16 by
        default like Meta's predictor); None once no policy can select it spatially.
    obj_ptr: ``1 x C`` object pointer.
    """

    frame_idx: int
    features: torch.Tensor | None
    obj_ptr: torch.Tensor
    is_cond: bool
    object_score: float  # logit that the object is present
    iou: float  # best predicted IoU of the frame's mask

    @property
    def spatial_features(self) -> torch.Tensor:
        """``features`` of an entry selected spatially; an error if they were released."""
        if self.features is None:
            raise RuntimeError(f"the memory features of frame {self.frame_idx} were released but are still selected")
        return self.features


@dataclass
class Selection:
    """What the current frame attends to.

    spatial: (temporal slot, entry) pairs; slot 0 = conditioning / long-term frames, slot
        ``num_maskmem - d`` = the frame ``d`` steps back.
    pointers: (signed frame distance, entry) pairs for the object pointers.
    """

    spatial: list[tuple[int, MemoryEntry]] = field(default_factory=list)
    pointers: list[tuple[int, MemoryEntry]] = field(default_factory=list)

    def signature(self) -> tuple[int, int]:
        """Objects with equal signatures can be batched through memory attention."""
        return len(self.spatial), len(self.pointers)


@dataclass
class MemoryBank:
    """One object's memories. ``cond`` holds prompted frames (bounded by the number of prompts);
    ``recent`` the newest tracked frames, trimmed to what a policy can still select.

    ``private`` belongs to the policy: whatever it keeps beyond these (e.g. ``dlm``'s candidate
    pool and long-term bank), under a key of its choosing. A value that holds memories exposes
    them through an ``entries()`` method, so :meth:`entries` (and every footprint count) sees them.
    """

    cond: dict[int, MemoryEntry] = field(default_factory=dict)
    recent: dict[int, MemoryEntry] = field(default_factory=dict)
    private: dict[str, Any] = field(default_factory=dict)

    def put(self, entry: MemoryEntry) -> None:
        """Store ``entry``, replacing any earlier memory of the same frame."""
        self.cond.pop(entry.frame_idx, None)
        self.recent.pop(entry.frame_idx, None)
        (self.cond if entry.is_cond else self.recent)[entry.frame_idx] = entry

    def trim(self, newest: int, spatial_window: int, pointer_window: int) -> None:
        """Forget what neither frame ``newest`` (a correction click) nor a later frame can
        select: spatial features more than ``spatial_window`` frames before ``newest``,
        whole entries more than ``pointer_window`` frames before it."""
        for f in list(self.recent):
            age = newest - f
            if age > pointer_window:
                del self.recent[f]
            elif age > spatial_window:
                self.recent[f].features = None

    def entries(self) -> list[MemoryEntry]:
        """Every entry the bank holds, the policy's private ones included, each once."""
        found = [*self.cond.values(), *self.recent.values()]
        for state in self.private.values():
            held = getattr(state, "entries", None)
            if callable(held):
                found.extend(held())
        return list({id(e): e for e in found}.values())

    def num_tensors(self) -> int:
        """Count of stored feature maps (for bounded-memory tests)."""
        return sum(e.features is not None for e in self.entries())


def position_cosine(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Cosine similarity of two memories at each spatial position, summed over positions and
    averaged over the batch: ``B x Cm x h x w`` twice -> scalar (SPEC §2)."""
    sim = torch.nn.functional.cosine_similarity(a.float(), b.float(), dim=1)  # B x h x w
    return sim.flatten(1).sum(1).mean()
