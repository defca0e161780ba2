"""Efficient Frame Pruning (Surgical SAM 2, "efp"): drop the most redundant memories."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

from .bank import MemoryBank, Selection, position_cosine
from .policy import FifoPolicy

EFPRule = Literal["release", "paper"]


@dataclass
class EFPPolicy(FifoPolicy):
    """SAM 2 selection, then prune ``frames_to_prune`` (m) frames when the bank is full.

    With n spatial memories, ``k = n + m - num_maskmem`` are dropped when positive, so at
    most ``num_maskmem - m`` (5) are attended. Of the candidates, the k most similar to the
    newest memory (position-wise cosine over the memory channels, summed over positions)
    go. Kept entries keep their temporal slots; pointers are not pruned.

    ``rule`` says which entries are candidates and how the scores are computed:

    - ``"release"`` (default): exactly the released Surgical-SAM-2 code (SAM 2.1 based, at
      9df6f57): the first entry of the list (the first conditioning frame) and the last (the
      newest memory) are kept, every entry in between is a candidate (other conditioning
      frames too); scores are computed in the stored dtype of the memories (bf16 by
      default) and ranked as rounded there, ties dropping the older frame.
    - ``"paper"``: every conditioning frame and the newest tracked memory are kept, nothing
      is pruned with fewer than 2 tracked memories, and scores are computed in float32.
    """

    frames_to_prune: int = 2
    rule: EFPRule = "release"
    name: str = "efp"

    def __post_init__(self) -> None:
        if not 0 <= self.frames_to_prune < self.num_maskmem - 1:
            raise ValueError(f"frames_to_prune must be in [0, {self.num_maskmem - 2}], got {self.frames_to_prune}")
        if self.rule not in ("release", "paper"):
            raise ValueError(f"rule must be 'release' or 'paper', got {self.rule!r}")

    def capacity(self) -> tuple[int, int]:
        return self.num_maskmem - self.frames_to_prune, self.max_obj_ptrs

    def select(self, bank: MemoryBank, frame_idx: int) -> Selection:
        sel = super().select(bank, frame_idx)
        k = len(sel.spatial) + self.frames_to_prune - self.num_maskmem
        if k <= 0:
            return sel
        drop = self._release_drop(sel, k) if self.rule == "release" else self._paper_drop(sel, k)
        sel.spatial = [s for i, s in enumerate(sel.spatial) if i not in drop]
        return sel

    @staticmethod
    def _release_drop(sel: Selection, k: int) -> set[int]:
        # Tokens as the release lays them out: each memory HW x B x Cm; candidates are the
        # entries between the first and the last, compared with the last along the channels.
        tokens = [e.spatial_features.flatten(2).permute(2, 0, 1) for _, e in sel.spatial]
        candidates = torch.stack(tokens[1:-1])  # n-2 x HW x B x Cm
        newest = tokens[-1].unsqueeze(0).repeat(len(tokens) - 2, 1, 1, 1)
        scores = torch.cosine_similarity(candidates, newest, dim=-1).sum(dim=1).mean(dim=1)  # n-2
        order = torch.sort(scores, descending=True, stable=True).indices[:k]
        return {int(i) + 1 for i in order}

    @staticmethod
    def _paper_drop(sel: Selection, k: int) -> set[int]:
        tracked = [i for i, (_, e) in enumerate(sel.spatial) if not e.is_cond]
        if len(tracked) < 2:
            return set()
        newest_i = max(tracked, key=lambda i: sel.spatial[i][1].frame_idx)
        newest = sel.spatial[newest_i][1].spatial_features
        candidates = [i for i in tracked if i != newest_i]
        scores = {i: float(position_cosine(sel.spatial[i][1].spatial_features, newest)) for i in candidates}
        # highest similarity = most redundant; ties broken towards the older frame
        ranked = sorted(candidates, key=lambda i: (-scores[i], sel.spatial[i][1].frame_idx))
        return set(ranked[: min(k, len(candidates))])
