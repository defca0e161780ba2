"""Diversity-driven Long-term Memory (ReSurgSAM2, "dlm")."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Literal

import torch

from .bank import MemoryBank, MemoryEntry, Selection, position_cosine
from .policy import FifoPolicy

DLMSimilarity = Literal["release", "channel"]


def width_cosine(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """ReSurgSAM2's released similarity of two memories ``B x Cm x h x w``: cosine along the
    LAST (width) axis, summed over everything else, in the tensors' own dtype -> scalar."""
    return torch.sum(torch.cosine_similarity(a, b, dim=-1))


@dataclass
class DLMState:
    """What ``dlm`` keeps per object besides the short window (``bank.private["dlm"]``):
    the candidate pool and the long-term bank, oldest first."""

    pool: list[MemoryEntry] = field(default_factory=list)
    long_term: list[MemoryEntry] = field(default_factory=list)

    def entries(self) -> list[MemoryEntry]:
        return [*self.pool, *self.long_term]


@dataclass
class DLMPolicy(FifoPolicy):
    """SAM 2 selection plus a small long-term bank of credible, diverse frames.

    A tracked frame whose predicted IoU exceeds ``iou_threshold`` joins a candidate pool.
    When the pool holds ``pool_size`` frames, the one LEAST similar to the newest long-term
    memory (or to the latest conditioning frame when there is none) enters the long-term
    bank (FIFO, ``bank_size`` slots) and the pool is cleared; of equal scores the older
    frame wins. Long-term memories are attended after the short window, with the
    conditioning frame's temporal slot (0), unless they lie in the short window.

    ``similarity``: ``"release"`` (default) is ReSurgSAM2's released predictor,
    :func:`width_cosine` on the stored (bf16) features; ``"channel"`` is the paper's wording,
    the cosine over the memory channels at each position, summed (float32).
    """

    iou_threshold: float = 0.95
    pool_size: int = 5
    bank_size: int = 3
    similarity: DLMSimilarity = "release"
    name: str = "dlm"

    def __post_init__(self) -> None:
        if self.pool_size < 1 or self.bank_size < 1:
            raise ValueError("pool_size and bank_size must be >= 1")
        if self.similarity not in ("release", "channel"):
            raise ValueError(f"similarity must be 'release' or 'channel', got {self.similarity!r}")

    def capacity(self) -> tuple[int, int]:
        return self.num_maskmem + self.bank_size, self.max_obj_ptrs

    @staticmethod
    def state(bank: MemoryBank) -> DLMState:
        """This policy's storage in ``bank`` (created on first use)."""
        st = bank.private.get("dlm")
        if st is None:
            st = bank.private["dlm"] = DLMState()
        return st

    def select(self, bank: MemoryBank, frame_idx: int) -> Selection:
        sel = super().select(bank, frame_idx)
        window = range(frame_idx - (self.num_maskmem - 1), frame_idx)
        sel.spatial += [(0, e) for e in self.state(bank).long_term if e.frame_idx not in window]
        return sel

    def commit(self, bank: MemoryBank, entry: MemoryEntry) -> None:
        super().commit(bank, entry)
        if entry.is_cond or entry.features is None or entry.iou <= self.iou_threshold:
            return
        st = self.state(bank)
        st.pool.append(replace(entry))  # own copy: trimming the short window must not touch it
        if len(st.pool) < self.pool_size:
            return
        ref = st.long_term[-1] if st.long_term else self._latest_cond(bank)
        if ref is None or ref.features is None:
            chosen = st.pool[-1]
        else:
            sim = width_cosine if self.similarity == "release" else position_cosine
            scores = [sim(ref.features, e.spatial_features) for e in st.pool]
            chosen = st.pool[min(range(len(scores)), key=lambda i: float(scores[i]))]
        st.long_term.append(chosen)
        del st.long_term[: -self.bank_size]
        st.pool.clear()

    @staticmethod
    def _latest_cond(bank: MemoryBank) -> MemoryEntry | None:
        return bank.cond[max(bank.cond)] if bank.cond else None
