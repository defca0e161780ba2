"""Procedural synthetic surgical videos (endoscopic tissue, robotic instruments, smoke, blur,
camera motion) with palette annotations, Ref-EndoVis Meta and referring expressions.

Modules: :mod:`.config` (``SynthConfig``), :mod:`.scene` (tissue world), :mod:`.instruments`
(instrument models and drawing), :mod:`.motion` (the script: entries, exits, paths, actions,
camera), :mod:`.render` (frame compositing and effects), :mod:`.writer` (dataset output),
:mod:`.stats` (statistics and contact sheets).
"""

from __future__ import annotations

from .config import SynthConfig
from .stats import DatasetStats, contact_sheet, dataset_stats, format_stats
from .writer import DEMO_CLIP_SEED, SyntheticVideo, generate, render_demo_clip, render_video

__all__ = [
    "DEMO_CLIP_SEED",
    "DatasetStats",
    "SynthConfig",
    "SyntheticVideo",
    "contact_sheet",
    "dataset_stats",
    "format_stats",
    "generate",
    "render_demo_clip",
    "render_video",
]
