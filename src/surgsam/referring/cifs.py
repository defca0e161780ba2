"""Credible Initial Frame Selection (ReSurgSAM2's CIFS): when detection may hand over to tracking.

Per object, during the detection stage, each frame's (object-score logit, best predicted IoU)
is fed to :meth:`CIFS.update`:

* a frame whose ``sigmoid(object score) > object_score_threshold`` joins the newest-first
  candidate list when its IoU also exceeds ``iou_threshold`` (the oldest candidate falls out
  when the list already holds ``window`` frames); its IoU failing changes nothing;
* a frame whose object score fails drops the OLDEST candidate;
* when the list holds ``window`` frames with consecutive indices, the candidate with the
  highest IoU (the newest on ties) is the conditioning frame: its detection mask is
  memory-encoded and tracking starts at the next frame.

With CIFS disabled the first frame passing both thresholds is taken at once. Both
comparisons are strict, as in ReSurgSAM2. Pure logic: no tensors, bounded state.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Generic, Literal, TypeVar

P = TypeVar("P")

#: What an expression emits before CIFS hands it over: its detections, only the credible ones,
#: or nothing (``ReferringSegmenter(search_output=...)``, ``--search-output``).
#: What a referring segmenter shows for an expression still searched for (see ReferringSegmenter).
SearchOutput = Literal["detection", "credible", "none"]
SEARCH_OUTPUTS: tuple[SearchOutput, ...] = ("detection", "credible", "none")


@dataclass(frozen=True)
class CIFSConfig:
    """Thresholds and window of CIFS (ReSurgSAM2's inference defaults)."""

    enabled: bool = True
    object_score_threshold: float = 0.9  # on sigmoid(object-score logit)
    iou_threshold: float = 0.7  # on the best predicted IoU
    window: int = 5  # consecutive credible frames required

    def __post_init__(self) -> None:
        if self.window < 1:
            raise ValueError(f"window must be >= 1, got {self.window}")
        if not 0.0 <= self.object_score_threshold < 1.0:
            raise ValueError(f"object_score_threshold must be in [0, 1), got {self.object_score_threshold}")


@dataclass(frozen=True)
class Candidate(Generic[P]):
    """A credible detection frame; ``payload`` is whatever the caller needs to build the
    conditioning memory from it (e.g. the frame's detection output)."""

    frame_idx: int
    iou: float
    object_score: float
    payload: P | None = None


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x)) if x >= 0 else math.exp(x) / (1.0 + math.exp(x))


class CIFS(Generic[P]):
    """CIFS state of one object (see the module docstring). Holds at most ``window`` candidates."""

    def __init__(self, config: CIFSConfig | None = None) -> None:
        self.config = config or CIFSConfig()
        self.candidates: list[Candidate[P]] = []  # newest first
        self.selected: Candidate[P] | None = None

    @property
    def done(self) -> bool:
        """True once a conditioning frame has been chosen."""
        return self.selected is not None

    def reset(self) -> None:
        self.candidates.clear()
        self.selected = None

    def update(
        self, frame_idx: int, object_score_logit: float, iou: float, payload: P | None = None
    ) -> Candidate[P] | None:
        """Feed one detection frame; returns the chosen conditioning frame once there is one.

        Args:
            frame_idx: the frame's index (frames are fed in increasing order).
            object_score_logit: the decoder's object-score LOGIT (thresholded after sigmoid).
            iou: the best predicted IoU of the frame's mask candidates.
            payload: kept with the frame while it is a candidate and returned on selection.
        """
        if self.selected is not None:
            raise RuntimeError(f"CIFS already chose frame {self.selected.frame_idx}; reset() to start over")
        cfg = self.config
        score, iou = _sigmoid(float(object_score_logit)), float(iou)
        if self.candidates and frame_idx <= self.candidates[0].frame_idx:
            raise ValueError(
                f"frames must arrive in increasing order: {frame_idx} after {self.candidates[0].frame_idx}"
            )
        object_ok = score > cfg.object_score_threshold
        iou_ok = iou > cfg.iou_threshold
        if not cfg.enabled:
            if object_ok and iou_ok:
                self.selected = Candidate(frame_idx, iou, score, payload)
            return self.selected
        if object_ok:
            if iou_ok:
                self.candidates.insert(0, Candidate(frame_idx, iou, score, payload))
                del self.candidates[cfg.window :]
        elif self.candidates:
            self.candidates.pop()  # the oldest
        if len(self.candidates) == cfg.window and self._consecutive():
            # max() keeps the first maximum: the newest frame wins ties, as in ReSurgSAM2.
            self.selected = max(self.candidates, key=lambda c: c.iou)
            self.candidates.clear()
        return self.selected

    def _consecutive(self) -> bool:
        idx = [c.frame_idx for c in self.candidates]
        return all(a - b == 1 for a, b in zip(idx[:-1], idx[1:]))

    def state(self) -> dict[str, Any]:
        """Plain-data view (candidate frames newest first, selected frame) for logs and tests."""
        return {
            "candidates": [c.frame_idx for c in self.candidates],
            "selected": None if self.selected is None else self.selected.frame_idx,
        }


__all__ = ["CIFS", "CIFSConfig", "Candidate"]
