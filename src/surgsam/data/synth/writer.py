"""Generate synthetic videos and write them in the Ref-EndoVis layout (or a plain VOS layout).

Ref-EndoVis layout (``layout="ref"``)::

    OUT/synth_info.json                         config, splits, per-frame object areas, smoke
    OUT/{train,valid}/JPEGImages/seq_k/00000.jpg
    OUT/{train,valid}/Annotations/seq_k/00000.png   palette id maps
    OUT/{train,valid}/Meta/seq_k.json               categories; per frame action/location/unique
    OUT/{train,valid}/meta_expressions.json         one expression per object

Plain VOS layout (``layout="vos"``): ``OUT/JPEGImages/seq_k``, ``OUT/Annotations/seq_k``.
Each video is drawn from ``SeedSequence([seed, k])``, so a video depends only on the seed, its
number and the config, and videos can be rendered in parallel.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from ..palette import write_mask
from ..paraphrase import paraphrase_texts
from ..refendovis import build_expression, location_id
from .config import SynthConfig
from .motion import make_script
from .render import FrameOut, Renderer
from .scene import make_world
from .style import style_rng, style_spec

__all__ = ["SyntheticVideo", "generate", "render_video"]


@dataclass
class SyntheticVideo:
    """A rendered video in memory: frames (T x H x W x 3 uint8), labels (T x H x W uint8),
    categories, Meta (Ref-EndoVis json), per-object visible/amodal areas and smoke per frame;
    the instrument finish of a non-default style (None: the types' own colours).
    """

    name: str
    frames: list[np.ndarray]
    labels: list[np.ndarray]
    categories: dict[int, str]
    meta: dict
    visible: dict[int, list[int]]
    amodal: dict[int, list[int]]
    smoke: list[float]
    finish: str | None = None


def render_video(cfg: SynthConfig, seed: int, index: int, name: str | None = None) -> SyntheticVideo:
    """Render video number ``index`` of the dataset drawn with ``seed``."""
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), int(index)]))
    style = style_spec(cfg.style)
    srng = None if style.is_default else style_rng(seed, index)
    script = make_script(rng, cfg)
    world = make_world(rng, *script.world_hw, script.tissue_ids, style=style, style_rng=srng)
    finish = None
    if srng is not None and style.finishes:
        finish = style.finishes[int(srng.integers(len(style.finishes)))]
    renderer = Renderer(cfg, world, script, rng, style=style, finish=finish)
    categories = {tr.obj_id: tr.itype.name for tr in script.tracks}
    categories.update(world.categories)
    actions = {tr.obj_id: tr.action for tr in script.tracks}
    T, H, W = cfg.frames, cfg.height, cfg.width
    min_px = max(16, int(0.0003 * H * W))  # slivers smaller than this are not annotated
    frames, labels, smoke = [], [], []
    visible = {k: [0] * T for k in categories}
    amodal = {k: [0] * T for k in categories}
    meta_frames: dict[str, dict] = {}
    for t in range(T):
        out: FrameOut = renderer.render(t)
        lab = out.labels
        for k, n in list(out.visible.items()):
            if n < min_px:
                lab[lab == k] = 0
                del out.visible[k]
        frames.append(out.rgb)
        labels.append(lab)
        smoke.append(round(out.smoke, 4))
        for k, n in out.visible.items():
            visible[k][t] = n
        for k, n in out.amodal.items():
            amodal[k][t] = n
        counts: dict[str, int] = {}
        for k in out.visible:
            counts[categories[k]] = counts.get(categories[k], 0) + 1
        entry = {}
        for k in sorted(out.visible):
            ys, xs = np.nonzero(lab == k)
            entry[str(k)] = {
                "action": int(actions[k][t]) if k in actions else 0,
                "location": location_id(float(xs.mean()), float(ys.mean()), W, H),
                "unique": counts[categories[k]] == 1,
            }
        meta_frames[f"{t:05d}"] = entry
    meta = {"info": {"category": {str(k): v for k, v in sorted(categories.items())}}, "frames": meta_frames}
    return SyntheticVideo(
        name or f"seq_{index + 1}",
        frames,
        labels,
        categories,
        meta,
        visible,
        amodal,
        smoke,
        None if finish is None else finish.name,
    )


def phrasing_rng(seed: int, index: int) -> np.random.Generator:
    """The random stream of video ``index``'s paraphrases (separate from its own stream)."""
    return np.random.default_rng(np.random.SeedSequence([int(seed), int(index), 0x9A, 0x5E]))


def _expressions(video: SyntheticVideo, version: int, rng: np.random.Generator | None = None) -> dict:
    """The video's ``meta_expressions.json`` entry; with ``rng``, every distinct sentence is
    reworded once with held-out wording (:func:`~surgsam.data.paraphrase.paraphrase_texts`), so
    objects that share a sentence keep sharing one."""
    exps, first_frame = {}, {}
    n = 0
    for k in sorted(video.categories):
        ts = [t for t, v in enumerate(video.visible[k]) if v > 0]
        if not ts:
            continue
        t0 = ts[0]
        info = video.meta["frames"][f"{t0:05d}"][str(k)]
        text = build_expression(video.categories[k], info["action"], info["location"], info["unique"], version)
        exps[str(n)] = {"exp": text, "obj_id": str(k)}
        first_frame[str(n)] = t0
        n += 1
    if rng is not None:
        new = paraphrase_texts([e["exp"] for e in exps.values()], rng=rng, part="heldout")
        for e in exps.values():
            e["exp"] = new[e["exp"]]
    return {"expressions": exps, "frames": [f"{t:05d}" for t in range(len(video.frames))], "first_frame": first_frame}


def _write_video(video: SyntheticVideo, root: Path, cfg: SynthConfig, with_meta: bool) -> None:
    ext = cfg.frame_format
    img_dir, ann_dir = root / "JPEGImages" / video.name, root / "Annotations" / video.name
    img_dir.mkdir(parents=True, exist_ok=True)
    ann_dir.mkdir(parents=True, exist_ok=True)
    for t, (rgb, lab) in enumerate(zip(video.frames, video.labels)):
        im = Image.fromarray(rgb)
        if ext == "jpg":
            im.save(img_dir / f"{t:05d}.jpg", quality=cfg.jpeg_quality)
        else:
            im.save(img_dir / f"{t:05d}.png")
        write_mask(ann_dir / f"{t:05d}.png", lab)
    if with_meta:
        (root / "Meta").mkdir(parents=True, exist_ok=True)
        (root / "Meta" / f"{video.name}.json").write_text(json.dumps(video.meta))


def _job(args) -> tuple[str, str, dict, dict]:
    cfg_d, seed, index, split, root, layout = args
    cfg = SynthConfig.from_dict(cfg_d)
    video = render_video(cfg, seed, index)
    split_root = Path(root) / split if layout == "ref" else Path(root)
    _write_video(video, split_root, cfg, with_meta=layout == "ref")
    info = {
        "frames": len(video.frames),
        "categories": {str(k): v for k, v in sorted(video.categories.items())},
        "visible": {str(k): v for k, v in video.visible.items()},
        "amodal": {str(k): v for k, v in video.amodal.items()},
        "smoke": video.smoke,
    }
    if video.finish is not None:
        info["finish"] = video.finish
    rng = phrasing_rng(seed, index) if cfg.phrasing == "paraphrase" else None
    return video.name, split, info, _expressions(video, cfg.version, rng)


def generate(
    out_dir: str | Path,
    cfg: SynthConfig | None = None,
    *,
    videos: int = 4,
    seed: int = 0,
    valid: int | None = None,
    layout: str = "ref",
    workers: int = 1,
    overwrite: bool = False,
    progress: bool = True,
) -> dict:
    """Render ``videos`` videos into ``out_dir``; returns the ``synth_info.json`` content.

    ``valid`` videos (default: a quarter, at least one when there are two or more) go to the
    ``valid`` split: the last ones, ``seq_{N-valid+1}`` .. ``seq_N``.
    """
    cfg = cfg or SynthConfig()
    if layout not in ("ref", "vos"):
        raise ValueError(f"layout must be 'ref' or 'vos', got {layout!r}")
    if videos < 1:
        raise ValueError("videos must be >= 1")
    out = Path(out_dir)
    ours = ["train", "valid", "JPEGImages", "Annotations", "Meta", "synth_info.json"]
    if out.exists() and any(out.iterdir()):
        if not overwrite:
            raise FileExistsError(f"{out} is not empty (use overwrite=True / --overwrite)")
        for n in ours:
            p = out / n
            if p.is_dir():
                shutil.rmtree(p)
            elif p.exists():
                p.unlink()
    out.mkdir(parents=True, exist_ok=True)
    if valid is None:
        valid = max(1, videos // 4) if videos >= 2 else 0
    valid = min(valid, videos)
    splits = ["train"] * (videos - valid) + ["valid"] * valid
    jobs = [(cfg.to_dict(), seed, i, splits[i], str(out), layout) for i in range(videos)]
    from tqdm import tqdm

    results = []
    bar = tqdm(total=videos, desc="synth", unit="video", disable=not progress)
    if workers > 1 and videos > 1:
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(max_workers=workers) as ex:
            for r in ex.map(_job, jobs):
                results.append(r)
                bar.update(1)
    else:
        for j in jobs:
            results.append(_job(j))
            bar.update(1)
    bar.close()
    info: dict[str, Any] = {
        "generator": "surgsam.data.synth",
        "version": cfg.version,
        "seed": seed,
        "layout": layout,
        "config": cfg.to_dict(),
        "splits": {s: [n for n, sp, _, _ in results if sp == s] for s in ("train", "valid") if s in splits},
        "videos": {n: i for n, _, i, _ in results},
    }
    if layout == "ref":
        for s in info["splits"]:
            exps = {n: e for n, sp, _, e in results if sp == s}
            (out / s / "meta_expressions.json").write_text(json.dumps({"videos": exps}, indent=1))
    (out / "synth_info.json").write_text(json.dumps(info))
    return info


#: Seed of the demo clip: the embedded model was trained on seed 0 and evaluated on seed 1.
DEMO_CLIP_SEED = 2


def render_demo_clip(frames: int = 30, seed: int = DEMO_CLIP_SEED) -> SyntheticVideo:
    """The demo's synthetic endoscopic clip (320 x 256, 4 objects, deterministic in ``seed``):
    ``.frames`` (``H x W x 3`` uint8 each), ``.labels`` (``H x W`` object ids each)."""
    return render_video(SynthConfig(width=320, height=256, frames=frames), seed=seed, index=0, name="demo")
