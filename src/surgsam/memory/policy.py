"""The memory-policy protocol and vanilla SAM 2 selection ("fifo")."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from .bank import MemoryBank, MemoryEntry, Selection


@runtime_checkable
class MemoryPolicy(Protocol):
    """Decides what an object's bank keeps and what each frame attends to.

    ``select`` is called before a tracked frame is decoded; ``commit`` after its memory is
    encoded (also for prompted frames). A policy must keep the bank bounded: after
    ``commit`` nothing may remain that no later ``select`` could return.
    """

    name: str
    num_maskmem: int
    max_obj_ptrs: int

    def select(self, bank: MemoryBank, frame_idx: int) -> Selection: ...

    def commit(self, bank: MemoryBank, entry: MemoryEntry) -> None: ...

    def capacity(self) -> tuple[int, int]:
        """(spatial memories, object pointers) a frame attends to at most in the usual case
        of one conditioning frame: the size of a static-shape memory."""
        ...


@dataclass
class FifoPolicy:
    """SAM 2's memory: every conditioning frame plus the last ``num_maskmem - 1`` frames;
    object pointers of conditioning frames and of the last ``max_obj_ptrs - 1`` frames."""

    num_maskmem: int = 7
    max_obj_ptrs: int = 16
    name: str = "fifo"

    def select(self, bank: MemoryBank, frame_idx: int) -> Selection:
        sel = Selection()
        sel.spatial = [(0, e) for e in bank.cond.values()]
        for d in range(self.num_maskmem - 1, 0, -1):  # oldest first, like Meta's slot order
            e = bank.recent.get(frame_idx - d)
            if e is not None and e.features is not None:
                sel.spatial.append((self.num_maskmem - d, e))
        # pointers: conditioning frames in the past, then the last frames newest first
        sel.pointers = [(frame_idx - f, e) for f, e in bank.cond.items() if f <= frame_idx]
        for d in range(1, self.max_obj_ptrs):
            e = bank.recent.get(frame_idx - d)
            if e is not None:
                sel.pointers.append((d, e))
        return sel

    def capacity(self) -> tuple[int, int]:
        return self.num_maskmem, self.max_obj_ptrs

    def commit(self, bank: MemoryBank, entry: MemoryEntry) -> None:
        bank.put(entry)
        # Frame f itself (a correction) and later frames select spatial memories up to
        # num_maskmem - 1 frames back and pointers up to max_obj_ptrs - 1 back.
        bank.trim(entry.frame_idx, self.num_maskmem - 1, self.max_obj_ptrs - 1)
