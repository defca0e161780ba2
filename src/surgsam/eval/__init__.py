"""Evaluation: DAVIS-exact J / F / J&F, Dice, the EndoVis IoU family, protocols of Surgical SAM 2
and ReSurgSAM2, tables and CSV/JSON output, end-to-end runs and torchrun sharding.
"""

from __future__ import annotations

from .endtoend import (
    CopyFirstMaskSegmenter,
    EngineSegmenter,
    OracleSegmenter,
    Segmenter,
    make_segmenter,
    run_end_to_end,
)
from .evaluator import (
    PROTOCOLS,
    ArrayVideo,
    EvalResult,
    FrameScore,
    IoULevel,
    ObjectScore,
    PredictionFolder,
    Protocol,
    ProtocolName,
    compose_labels,
    evaluate_folders,
    evaluate_video,
    get_protocol,
)
from .metrics import ClassIoU, boundary_f, dice, endovis_ious, frame_scores, region_iou, seg2bmap
from .referring import ExpressionRecord, ReferringEvalSegmenter, ReferringRun, run_referring

__all__ = [
    "PROTOCOLS",
    "ArrayVideo",
    "ClassIoU",
    "CopyFirstMaskSegmenter",
    "EngineSegmenter",
    "EvalResult",
    "ExpressionRecord",
    "FrameScore",
    "IoULevel",
    "ObjectScore",
    "OracleSegmenter",
    "PredictionFolder",
    "ReferringEvalSegmenter",
    "ReferringRun",
    "Protocol",
    "ProtocolName",
    "Segmenter",
    "boundary_f",
    "compose_labels",
    "dice",
    "endovis_ious",
    "evaluate_folders",
    "evaluate_video",
    "frame_scores",
    "get_protocol",
    "make_segmenter",
    "region_iou",
    "run_end_to_end",
    "run_referring",
    "seg2bmap",
]
