"""Efficient Frame Pruning (Surgical SAM 2, "efp"): drop the most redundant memories."""

from __future__ import annotations

from dataclasses import dataclass

from .bank import MemoryBank, Selection, position_cosine
from .policy import FifoPolicy


@dataclass
class EFPPolicy(FifoPolicy):
    """SAM 2 selection, then prune ``frames_to_prune`` (m) frames when the bank is full.

    With n spatial memories, ``k = n + m - num_maskmem`` are dropped when positive, so at
    most ``num_maskmem - m`` (5) are attended. Conditioning frames and the newest memory are
    always kept; of the others, the k most similar to the newest memory (position-wise cosine,
    SPEC §2) go. Kept entries keep their temporal slots; pointers are not pruned.
    """

    frames_to_prune: int = 2
    name: str = "efp"

    def __post_init__(self) -> None:
        if not 0 <= self.frames_to_prune < self.num_maskmem - 1:
            raise ValueError(f"frames_to_prune must be in [0, {self.num_maskmem - 2}], got {self.frames_to_prune}")

    def capacity(self) -> tuple[int, int]:
        return self.num_maskmem - self.frames_to_prune, self.max_obj_ptrs

    def select(self, bank: MemoryBank, frame_idx: int) -> Selection:
        sel = super().select(bank, frame_idx)
        k = len(sel.spatial) + self.frames_to_prune - self.num_maskmem
        tracked = [i for i, (slot, e) in enumerate(sel.spatial) if not e.is_cond]
        if k <= 0 or len(tracked) < 2:
            return sel
        newest_i = max(tracked, key=lambda i: sel.spatial[i][1].frame_idx)
        newest = sel.spatial[newest_i][1].features
        candidates = [i for i in tracked if i != newest_i]
        scores = {i: float(position_cosine(sel.spatial[i][1].features, newest)) for i in candidates}
        # highest similarity = most redundant; ties broken towards the older frame
        ranked = sorted(candidates, key=lambda i: (-scores[i], sel.spatial[i][1].frame_idx))
        drop = set(ranked[: min(k, len(candidates))])
        sel.spatial = [s for i, s in enumerate(sel.spatial) if i not in drop]
        return sel
