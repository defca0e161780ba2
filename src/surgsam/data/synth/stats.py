"""Statistics of a synthetic (or any Ref-EndoVis / VOS) dataset and a contact sheet of frames
with mask overlays.

Occlusion needs the generator's record (``synth_info.json``: each object's visible and
unoccluded areas per frame); for other datasets it is reported as unknown.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from ..vos import DatasetError, VOSDataset, find_subdir, FRAME_DIRS

__all__ = ["DatasetStats", "contact_sheet", "dataset_stats", "format_stats"]

OCCLUDED = 0.10  # an object-frame counts as occluded when more than this fraction is hidden


@dataclass
class DatasetStats:
    """Summary numbers; sizes are visible areas in % of the frame."""

    videos: int = 0
    frames: int = 0
    objects: int = 0
    objects_per_frame: float = 0.0
    objects_per_frame_max: int = 0
    empty_frames_pct: float = 0.0
    occlusion_rate_pct: float = float("nan")
    occluded_fraction_mean_pct: float = float("nan")
    size_mean_pct: float = 0.0
    size_median_pct: float = 0.0
    size_p10_pct: float = 0.0
    size_p90_pct: float = 0.0
    late_entries: int = 0
    reentries: int = 0
    exits: int = 0
    smoke_frames_pct: float = float("nan")
    categories: dict[str, int] = field(default_factory=dict)
    frame_size: tuple[int, int] = (0, 0)

    def to_dict(self) -> dict:
        d = asdict(self)
        return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in d.items()}


def _tracks_from_info(info: dict) -> tuple[list[dict], list[float], tuple[int, int]]:
    cfg = info.get("config", {})
    vids = []
    smoke: list[float] = []
    for name, v in info["videos"].items():
        vids.append(
            {
                "name": name,
                "T": v["frames"],
                "categories": v["categories"],
                "visible": {k: np.asarray(a) for k, a in v["visible"].items()},
                "amodal": {k: np.asarray(a) for k, a in v["amodal"].items()},
            }
        )
        smoke += v.get("smoke", [])
    return vids, smoke, (int(cfg.get("height", 0)), int(cfg.get("width", 0)))


def _tracks_from_annotations(root: Path) -> tuple[list[dict], list[float], tuple[int, int]]:
    roots = [root / s for s in ("train", "valid") if (root / s).is_dir()] or [root]
    vids = []
    hw = (0, 0)
    for r in roots:
        ds = VOSDataset(r, require_frames=find_subdir(r, FRAME_DIRS) is not None)
        for v in ds:
            T = len(v)
            vis: dict[str, np.ndarray] = {}
            for t in range(T):
                lab = v.labels(t)
                if lab is None:
                    continue
                hw = lab.shape
                ids, counts = np.unique(lab, return_counts=True)
                for k, c in zip(ids.tolist(), counts.tolist()):
                    if k:
                        vis.setdefault(str(k), np.zeros(T, np.int64))[t] = c
            cats = {k: v.categories.get(int(k), f"object {k}") for k in vis}
            vids.append({"name": v.name, "T": T, "categories": cats, "visible": vis, "amodal": None})
    return vids, [], hw


def dataset_stats(root: str | Path) -> DatasetStats:
    """Statistics of a dataset folder (from ``synth_info.json`` when present)."""
    root = Path(root)
    info_path = root / "synth_info.json"
    if info_path.is_file():
        vids, smoke, hw = _tracks_from_info(json.loads(info_path.read_text()))
    elif root.is_dir():
        vids, smoke, hw = _tracks_from_annotations(root)
    else:
        raise DatasetError(f"{root}: dataset folder does not exist")
    st = DatasetStats(videos=len(vids), frame_size=hw)
    area = max(1, hw[0] * hw[1])
    per_frame: list[int] = []
    sizes: list[float] = []
    hidden: list[float] = []
    cats: Counter = Counter()
    for v in vids:
        T = v["T"]
        st.frames += T
        counts = np.zeros(T, np.int64)
        for k, vis in v["visible"].items():
            present = vis > 0
            if not present.any():
                continue
            st.objects += 1
            cats[v["categories"].get(k, k)] += 1
            counts += present
            sizes += (100.0 * vis[present] / area).tolist()
            idx = np.nonzero(present)[0]
            st.late_entries += int(idx[0] > 0)
            gaps = np.diff(idx) > 1
            st.reentries += int(gaps.sum())
            st.exits += int(gaps.sum()) + int(idx[-1] < T - 1)
            if v["amodal"] is not None and k in v["amodal"]:
                am = v["amodal"][k][present].astype(np.float64)
                frac = 1.0 - vis[present] / np.maximum(am, 1)
                hidden += np.clip(frac, 0, 1).tolist()
        per_frame += counts.tolist()
    if per_frame:
        st.objects_per_frame = float(np.mean(per_frame))
        st.objects_per_frame_max = int(np.max(per_frame))
        st.empty_frames_pct = 100.0 * float(np.mean(np.asarray(per_frame) == 0))
    if sizes:
        s = np.asarray(sizes)
        st.size_mean_pct, st.size_median_pct = float(s.mean()), float(np.median(s))
        st.size_p10_pct, st.size_p90_pct = float(np.percentile(s, 10)), float(np.percentile(s, 90))
    if hidden:
        h = np.asarray(hidden)
        st.occlusion_rate_pct = 100.0 * float(np.mean(h > OCCLUDED))
        st.occluded_fraction_mean_pct = 100.0 * float(h[h > OCCLUDED].mean()) if (h > OCCLUDED).any() else 0.0
    if smoke:
        st.smoke_frames_pct = 100.0 * float(np.mean(np.asarray(smoke) > 0.02))
    st.categories = dict(sorted(cats.items(), key=lambda kv: (-kv[1], kv[0])))
    return st


def format_stats(st: DatasetStats) -> str:
    """Human-readable report of :func:`dataset_stats`."""

    def pct(x: float) -> str:
        return "unknown" if math.isnan(x) else f"{x:.1f}%"

    lines = [
        f"videos              {st.videos}  ({st.frames} frames, {st.frame_size[1]}x{st.frame_size[0]})",
        f"objects             {st.objects}  (video-object tracks)",
        f"objects per frame   {st.objects_per_frame:.2f} mean, {st.objects_per_frame_max} max, "
        f"{st.empty_frames_pct:.1f}% frames empty",
        f"occlusion rate      {pct(st.occlusion_rate_pct)} of visible object-frames are >{OCCLUDED:.0%} hidden "
        f"(mean hidden part {pct(st.occluded_fraction_mean_pct)})",
        f"object size         {st.size_mean_pct:.2f}% of the frame mean, {st.size_median_pct:.2f}% median, "
        f"p10 {st.size_p10_pct:.2f}%, p90 {st.size_p90_pct:.2f}%",
        f"late entries        {st.late_entries} objects first appear after frame 0",
        f"exits / re-entries  {st.exits} exits, {st.reentries} re-entries",
        f"smoke               {pct(st.smoke_frames_pct)} of frames",
        "categories          " + ", ".join(f"{k} {v}" for k, v in st.categories.items()),
    ]
    return "\n".join(lines)


_OVERLAY = np.array(
    [
        (0, 0, 0),
        (255, 70, 70),
        (70, 200, 255),
        (255, 220, 50),
        (120, 255, 120),
        (255, 120, 255),
        (255, 160, 40),
        (60, 120, 255),
        (190, 255, 60),
        (255, 255, 255),
        (150, 90, 255),
    ],
    dtype=np.float32,
)


def _overlay_color(k: int) -> np.ndarray:
    if k >= 11:  # tissue: muted tones
        return np.array(
            {11: (40, 255, 200), 12: (255, 240, 120), 17: (220, 120, 255)}.get(k, (200, 200, 200)), np.float32
        )
    return _OVERLAY[k % len(_OVERLAY)]


def overlay(rgb: np.ndarray, labels: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """Frame with coloured masks (instruments solid, tissue lighter) and white outlines."""
    out = rgb.astype(np.float32).copy()
    for k in np.unique(labels):
        if k == 0:
            continue
        m = labels == k
        a = alpha * (0.6 if k >= 11 else 1.0)
        out[m] = out[m] * (1 - a) + _overlay_color(int(k)) * a
    edge = np.zeros(labels.shape, bool)
    edge[:, 1:] |= labels[:, 1:] != labels[:, :-1]
    edge[1:, :] |= labels[1:, :] != labels[:-1, :]
    out[edge] = 255
    return out.clip(0, 255).astype(np.uint8)


def contact_sheet(
    root: str | Path,
    out_png: str | Path,
    *,
    videos: int = 3,
    frames: int = 4,
    thumb_width: int = 200,
    split: str | None = None,
    colors: int = 256,
) -> Path:
    """Write a grid: for each of ``videos`` videos, a row of ``frames`` frames and a row of the
    same frames with mask overlays. Saved as a palette PNG with ``colors`` colours (small file).
    """
    root = Path(root)
    roots = [root / split] if split else ([root / s for s in ("train", "valid") if (root / s).is_dir()] or [root])
    vids = [v for r in roots for v in VOSDataset(r)][:videos]
    if not vids:
        raise DatasetError(f"{root}: no videos")
    h0, w0 = vids[0].image_size
    tw, th = thumb_width, int(round(thumb_width * h0 / w0))
    pad, head = 4, 14
    W = frames * (tw + pad) + pad
    Hs = len(vids) * (2 * th + 3 * pad + head) + pad
    sheet = Image.new("RGB", (W, Hs), (24, 24, 24))
    draw = ImageDraw.Draw(sheet)
    y = pad
    for v in vids:
        idx = np.linspace(0, len(v) - 1, frames).round().astype(int)
        draw.text(
            (pad, y),
            f"{v.name}: frames {', '.join(str(i) for i in idx)}  (top: input, bottom: masks)",
            fill=(230, 230, 230),
        )
        y += head
        for c, t in enumerate(idx):
            rgb = v.frame(int(t))
            lab = v.labels(int(t))
            lab = np.zeros(rgb.shape[:2], np.int32) if lab is None else lab
            x = pad + c * (tw + pad)
            sheet.paste(Image.fromarray(rgb).resize((tw, th), Image.Resampling.BILINEAR), (x, y))
            ov = overlay(rgb, lab)
            sheet.paste(Image.fromarray(ov).resize((tw, th), Image.Resampling.BILINEAR), (x, y + th + pad))
        y += 2 * th + 2 * pad
    out_png = Path(out_png)
    out_png.parent.mkdir(parents=True, exist_ok=True)
    sheet.quantize(colors=colors, method=Image.Quantize.MEDIANCUT).save(out_png, optimize=True)
    return out_png
