"""Diversity-driven Long-term Memory (ReSurgSAM2, "dlm")."""

from __future__ import annotations

from dataclasses import dataclass, replace

from .bank import MemoryBank, MemoryEntry, Selection, position_cosine
from .policy import FifoPolicy


@dataclass
class DLMPolicy(FifoPolicy):
    """SAM 2 selection plus a small long-term bank of credible, diverse frames.

    A tracked frame whose predicted IoU exceeds ``iou_threshold`` joins a candidate pool.
    When the pool holds ``pool_size`` frames, the one LEAST similar to the newest long-term
    memory (or to the conditioning frame when there is none) enters the long-term bank
    (FIFO, ``bank_size`` slots) and the pool is cleared. Long-term memories are attended with
    the conditioning frame's temporal slot (0) unless already in the short window.
    """

    iou_threshold: float = 0.95
    pool_size: int = 5
    bank_size: int = 3
    name: str = "dlm"

    def __post_init__(self) -> None:
        if self.pool_size < 1 or self.bank_size < 1:
            raise ValueError("pool_size and bank_size must be >= 1")

    def capacity(self) -> tuple[int, int]:
        return self.num_maskmem + self.bank_size, self.max_obj_ptrs

    def select(self, bank: MemoryBank, frame_idx: int) -> Selection:
        sel = super().select(bank, frame_idx)
        in_window = {e.frame_idx for _, e in sel.spatial}
        lt = [(0, e) for e in bank.long_term if e.frame_idx not in in_window]
        n_cond = len(bank.cond)
        sel.spatial = sel.spatial[:n_cond] + lt + sel.spatial[n_cond:]
        return sel

    def commit(self, bank: MemoryBank, entry: MemoryEntry) -> None:
        super().commit(bank, entry)
        if entry.is_cond or entry.features is None or entry.iou <= self.iou_threshold:
            return
        bank.pool.append(replace(entry))  # own copy: trimming the short window must not touch it
        if len(bank.pool) < self.pool_size:
            return
        ref = bank.long_term[-1] if bank.long_term else self._latest_cond(bank)
        if ref is None or ref.features is None:
            chosen = bank.pool[-1]
        else:
            chosen = min(bank.pool, key=lambda e: float(position_cosine(e.features, ref.features)))
        bank.long_term.append(chosen)
        del bank.long_term[: -self.bank_size]
        bank.pool.clear()

    @staticmethod
    def _latest_cond(bank: MemoryBank) -> MemoryEntry | None:
        return bank.cond[max(bank.cond)] if bank.cond else None
