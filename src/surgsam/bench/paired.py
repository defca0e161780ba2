"""Paired, interleaved speed comparison of our engine and other SAM 2 video predictors.

Every variant tracks the same objects through the same clip with the same weights, in one
process. Frame ``t`` goes through every variant (in an order that rotates with ``t``) before
any variant sees frame ``t + 1``, so machine noise (other jobs, turbo, thermals) hits all
variants alike and the ratio of their median per-frame times is a fair speed-up. With
``block=N`` the variants take turns by blocks of N frames instead (the order rotating with
the block): frame by frame, each session finds its data evicted from the CPU caches by the
others' (the nano with 4 objects measured 35 ms a frame that way and 27-28 ms alone), so
blocks time each session closer to how it runs alone, still interleaved against drift.

Variants:

* ``fifo``, ``efp``, ``dlm``: our :class:`~surgsam.engine.VideoSegmenter`, float32, no fast
  path; ``<memory>-fast``: the same with ``fast="auto", precision="auto"`` (what the fast
  path picks on this machine; its notice is reported); ``<memory>-bf16``: eager bf16
  autocast (``fast=False, precision="bf16"``); ``<memory>-static``: the static-shape memory
  alone (eager float32, every frame's memory padded to the policy's capacity);
  ``<memory>-compiled``: ``torch.compile`` and the static memory forced (``fast=True,
  precision="auto"``); ``<memory>-compiled-fp32``: the same in float32 (TF32 matmuls on a
  GPU). The last four take the fast path apart, so that a GPU run shows which part pays.
  ``<memory>-trace``: float32 with the per-frame calls replayed from TorchScript traces
  (``trace=True``: bit-identical masks); ``<memory>-fast-bf16``: the fast path with bf16 asked
  for (``fast="auto", precision="bf16"``: on a CPU the bf16 recipe of
  :mod:`surgsam.engine.cpufast`, which ``auto`` keeps off for the nano);
  ``<memory>-fast-bf16-trace``: the same with traces.
* ``meta``: Meta's ``SAM2VideoPredictor`` (the ``sam2`` package; it preloads the clip from a
  JPEG folder, as it is designed to), SAM 2 / 2.1 presets only.
* ``hf``: transformers' ``Sam2VideoModel`` in a streaming inference session, SAM 2.1 presets
  only, fed the same preprocessed frames as our engine.

Variants whose package is missing (or that cannot run this preset) are skipped with a reason.
Reported per variant: median and p90 ms per frame over the timed frames, FPS, speed relative
to the baseline (``meta`` when it runs, else ``fifo``; ratio of medians and median of the
per-frame ratios), mask agreement (IoU per object and frame, mean and minimum, against our
float32 engine with the same memory policy, ``fifo`` for ``meta`` and ``hf``) and the bytes
of tensors the session holds at the end (model weights excluded; Meta's state includes the
preloaded clip).
"""

from __future__ import annotations

import contextlib
import io
import os
import platform
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from ..modeling import SAM2Model, build_model
from . import DEFAULT_VARIANTS, OURS

#: Meta's config file for each preset it ships.
META_CONFIGS = {
    f"sam2{v}_hiera_{size}": f"configs/sam2{v}/sam2{v}_hiera_{short}.yaml"
    for v in ("", ".1")
    for size, short in (("tiny", "t"), ("small", "s"), ("base_plus", "b+"), ("large", "l"))
}
Clock = Callable[[], float]


@dataclass(frozen=True)
class BenchConfig:
    """What :func:`run_bench` measures.

    model: preset name; checkpoint: weights (a file or an embedded model's name; None:
    random weights seeded with ``seed``); image_size: the model's input side (None: the
    preset's); frames: timed frames per object count, after ``warmup`` untimed ones (frame 0,
    the prompt, is always untimed); objects: object counts to run (one pass each); frame_size:
    side of the synthetic frames (None: the image size); device: ``"cpu"`` or ``"cuda"``;
    block: frames each variant runs in a row before the next variant's turn (1: frame by frame).
    """

    model: str = "sam2.1_hiera_small"
    image_size: int | None = 512
    checkpoint: str | None = None
    frames: int = 25
    warmup: int = 3
    objects: tuple[int, ...] = (1,)
    variants: tuple[str, ...] = DEFAULT_VARIANTS
    frame_size: int | None = None
    device: str = "cpu"
    seed: int = 0
    block: int = 1

    def __post_init__(self) -> None:
        if self.frames < 1 or self.warmup < 0:
            raise ValueError(f"frames must be >= 1 and warmup >= 0, got {self.frames} and {self.warmup}")
        if self.block < 1:
            raise ValueError(f"block must be >= 1 frame, got {self.block}")
        if not self.objects or any(k < 1 or k > 8 for k in self.objects):
            raise ValueError(f"objects must be counts between 1 and 8, got {list(self.objects)}")
        if not self.variants:
            raise ValueError("give at least one variant")
        for v in self.variants:
            parse_variant(v)
        if len(set(self.variants)) != len(self.variants):
            raise ValueError(f"variants repeat: {list(self.variants)}")


#: Our engine's settings per variant suffix (``"efp"`` -> ``""``, ``"efp-fast"`` -> ``"fast"``).
OUR_MODES: dict[str, dict[str, Any]] = {
    "": dict(fast=False, precision="fp32"),
    "fast": dict(fast="auto", precision="auto"),
    "bf16": dict(fast=False, precision="bf16"),
    "static": dict(fast=False, precision="fp32", static_memory=True),
    "compiled": dict(fast=True, precision="auto"),
    "compiled-fp32": dict(fast=True, precision="fp32"),
    "trace": dict(fast=False, precision="fp32", trace=True),
    "fast-bf16": dict(fast="auto", precision="bf16"),
    "fast-bf16-trace": dict(fast="auto", precision="bf16", trace=True),
}


def parse_variant(name: str) -> tuple[str, str]:
    """``"efp-fast"`` -> ("efp", "fast"); ``"fifo"`` -> ("fifo", ""); ``"meta"`` -> ("meta", "");
    unknown names are an error."""
    base, _, suffix = name.partition("-")
    if name in ("meta", "hf") or (base in OURS and suffix in OUR_MODES):
        return base, suffix
    modes = "/".join(m for m in OUR_MODES if m)
    raise ValueError(f"unknown variant {name!r}; known: {', '.join(OURS)} (each also as <name>-{{{modes}}}), meta, hf")


def reference_of(name: str) -> str:
    """The variant whose masks ``name``'s are compared with: our float32 engine with the same
    memory policy (``fifo`` for ``meta`` and ``hf``)."""
    base, _ = parse_variant(name)
    return "fifo" if base in ("meta", "hf") else base


# ---------------------------------------------------------------------- the clip
def synthetic_clip(n: int, size: int, objects: int, seed: int = 0) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """``n`` frames ``size x size x 3`` uint8 of discs moving over a blocky texture, and the
    frame-0 masks of the ``objects`` discs (``size x size`` bool each)."""
    rng = np.random.default_rng(seed)
    block = max(1, size // 64)
    tex = rng.integers(40, 160, (size // block + 1, size // block + 1, 3)).astype(np.uint8)
    tex = np.kron(tex, np.ones((block, block, 1), np.uint8))[:size, :size]
    yy, xx = np.mgrid[:size, :size]
    frames, masks = [], []
    for t in range(n):
        img = tex.copy()
        for k in range(objects):
            cx = size * (0.25 + 0.5 * k / max(objects - 1, 1)) + 0.04 * size * np.sin(t / 10 + k)
            cy = size * (0.5 + 0.15 * np.sin(k * 2.1)) + 0.06 * size * np.cos(t / 13 + k)
            disc = (xx - cx) ** 2 + (yy - cy) ** 2 < (0.08 * size) ** 2
            img[disc] = (200, 40 + 50 * k % 200, 60)
            if t == 0:
                masks.append(disc)
        frames.append(img)
    return frames, masks


def _jpeg_round_trip(frames: Sequence[np.ndarray], folder: Path) -> list[np.ndarray]:
    """Write the frames as a JPEG folder (what Meta's predictor reads) and return them as
    decoded from it, so every variant sees the same pixels."""
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for t, f in enumerate(frames):
        path = folder / f"{t:05d}.jpg"
        Image.fromarray(f).save(path, quality=95)
        out.append(np.array(Image.open(path).convert("RGB")))
    return out


# ---------------------------------------------------------------------- session memory
def held_bytes(root: Any) -> int:
    """Bytes of the tensors reachable from ``root`` through dicts, sequences and plain
    objects (each storage counted once; modules, functions and classes are not entered:
    model weights are not session state)."""
    seen_obj: set[int] = set()
    storages: dict[tuple[int, str], int] = {}
    stack = [root]
    while stack:
        x = stack.pop()
        if id(x) in seen_obj:
            continue
        seen_obj.add(id(x))
        if isinstance(x, torch.Tensor):
            try:
                st = x.untyped_storage()
                storages[(st.data_ptr(), str(x.device))] = st.nbytes()
            except (RuntimeError, NotImplementedError):
                storages[(id(x), "?")] = x.numel() * x.element_size()
        elif isinstance(x, dict):
            stack.extend(x.values())
        elif isinstance(x, (list, tuple, set, frozenset)):
            stack.extend(x)
        elif isinstance(x, (torch.nn.Module, type)) or callable(x) or isinstance(x, (str, bytes, int, float, bool)):
            continue
        elif hasattr(x, "__dict__"):
            stack.extend(vars(x).values())
    return sum(storages.values())


# ---------------------------------------------------------------------- runners
class Runner(Protocol):
    """One predictor stepping through the clip: masks ``K x H x W`` bool per frame."""

    notice: str

    def start(self, frame: np.ndarray, masks: Sequence[np.ndarray]) -> np.ndarray: ...

    def step(self, frame: np.ndarray) -> np.ndarray: ...

    def session_bytes(self) -> int: ...


class OursRunner:
    """Our engine with the settings of one of :data:`OUR_MODES` (``""``: float32 eager)."""

    def __init__(self, model: SAM2Model, memory: str, mode: str, num_frames: int) -> None:
        from ..engine import VideoSegmenter

        self.seg = VideoSegmenter(model, memory=memory, num_frames=num_frames, **OUR_MODES[mode])
        self.notice = self.seg.fast_path.notice

    def start(self, frame: np.ndarray, masks: Sequence[np.ndarray]) -> np.ndarray:
        res = None
        for k, m in enumerate(masks):
            res = self.seg.add_prompt(frame if k == 0 else None, obj_id=k + 1, mask=m)
        assert res is not None
        return res.masks

    def step(self, frame: np.ndarray) -> np.ndarray:
        return self.seg.step(frame).masks

    def session_bytes(self) -> int:
        skip = {"model", "net", "_ops"}
        return held_bytes({k: v for k, v in vars(self.seg).items() if k not in skip})


def _to_masks(logits: torch.Tensor) -> np.ndarray:
    return (logits[:, 0] > 0).cpu().numpy()


class MetaRunner:
    """Meta's ``SAM2VideoPredictor`` on a JPEG folder (preloaded by ``init_state``)."""

    def __init__(self, predictor: Any, folder: Path) -> None:
        self.pred = predictor
        self.notice = ""
        self._quiet = io.StringIO()  # its progress bars
        with torch.inference_mode(), contextlib.redirect_stderr(self._quiet):
            self.state = predictor.init_state(video_path=str(folder))
        self._gen: Any = None

    def start(self, frame: np.ndarray, masks: Sequence[np.ndarray]) -> np.ndarray:
        with torch.inference_mode():
            for k, m in enumerate(masks):
                self.pred.add_new_mask(self.state, 0, k + 1, m)
        self._gen = self.pred.propagate_in_video(self.state)
        return self.step(frame)

    def step(self, frame: np.ndarray) -> np.ndarray:
        self._quiet.seek(0)
        self._quiet.truncate()
        with contextlib.redirect_stderr(self._quiet):
            _, _, logits = next(self._gen)
        return _to_masks(logits)

    def session_bytes(self) -> int:
        return held_bytes(self.state)


def build_meta(model: SAM2Model, device: str) -> Any:
    """Meta's video predictor for ``model``'s preset and image size, holding its weights."""
    from sam2.build_sam import build_sam2_video_predictor

    cfg = META_CONFIGS[model.cfg.name]
    pred = build_sam2_video_predictor(
        cfg, None, device=device, hydra_overrides_extra=[f"++model.image_size={model.image_size}"]
    )
    pred.load_state_dict(model.state_dict())
    return pred.eval()


class HFRunner:
    """transformers' ``Sam2VideoModel`` in a streaming session (frames added as they come)."""

    def __init__(self, hf: Any, model: SAM2Model) -> None:
        from transformers.models.sam2_video.modeling_sam2_video import Sam2VideoInferenceSession

        self.hf, self.model = hf, model
        dev = model.device
        self.session = Sam2VideoInferenceSession(
            inference_device=dev, inference_state_device=dev, video_storage_device=dev, dtype=torch.float32
        )
        self.notice = "frames preprocessed like our engine (transformers' own processor needs torchvision)"

    def _pixels(self, frame: np.ndarray) -> torch.Tensor:
        x = torch.from_numpy(np.ascontiguousarray(frame)).permute(2, 0, 1)[None]
        return self.model.preprocess(x, resize="pil")[0]

    def _run(self, frame: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            out = self.hf(inference_session=self.session, frame=self._pixels(frame))
            logits = F.interpolate(out.pred_masks.float(), frame.shape[:2], mode="bilinear", align_corners=False)
        return _to_masks(logits)

    def start(self, frame: np.ndarray, masks: Sequence[np.ndarray]) -> np.ndarray:
        s = self.model.image_size
        self.session.video_height, self.session.video_width = frame.shape[:2]
        for k, m in enumerate(masks):
            idx = self.session.obj_id_to_idx(k + 1)
            x = torch.from_numpy(m).float()[None, None]
            x = (F.interpolate(x, (s, s), mode="bilinear", align_corners=False, antialias=True) >= 0.5).float()
            self.session.add_mask_inputs(idx, 0, x)
        self.session.obj_with_new_inputs = [k + 1 for k in range(len(masks))]
        return self._run(frame)

    def step(self, frame: np.ndarray) -> np.ndarray:
        return self._run(frame)

    def session_bytes(self) -> int:
        return held_bytes(self.session)


# ---------------------------------------------------------------------- results
@dataclass
class VariantResult:
    """One variant at one object count. Times in ms; ``vs_baseline`` = baseline median /
    this median (higher is faster); ``vs_baseline_paired`` = median over frames of the
    per-frame ratio; IoU against ``agreement_ref`` over every frame after the prompt, overall
    and per object (``iou_per_object``: the mean over frames, objects in prompt order)."""

    variant: str
    objects: int
    median_ms: float
    p90_ms: float
    fps: float
    session_mib: float
    notice: str = ""
    vs_baseline: float | None = None
    vs_baseline_paired: float | None = None
    agreement_ref: str | None = None
    iou_mean: float | None = None
    iou_min: float | None = None
    latencies_ms: list[float] = field(default_factory=list)
    iou_per_object: list[float] = field(default_factory=list)


@dataclass
class BenchResult:
    """Everything :func:`run_bench` measured; :meth:`table` and :meth:`to_json` report it."""

    config: BenchConfig
    machine: dict[str, Any]
    baseline: str
    results: list[VariantResult]
    skipped: dict[str, str]

    def to_json(self) -> dict[str, Any]:
        return {
            "config": asdict(self.config),
            "machine": self.machine,
            "baseline": self.baseline,
            "results": [asdict(r) for r in self.results],
            "skipped": self.skipped,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> BenchResult:
        """The inverse of :meth:`to_json` (e.g. to print a saved run's :meth:`table` again)."""
        cfg: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in data["config"].items()}
        return cls(
            config=BenchConfig(**cfg),
            machine=dict(data["machine"]),
            baseline=data["baseline"],
            results=[VariantResult(**r) for r in data["results"]],
            skipped=dict(data["skipped"]),
        )

    def table(self) -> str:
        """A Markdown table (one row per variant and object count) with a header line."""
        c, m = self.config, self.machine
        head = (
            f"{c.model} at {m['image_size']} px, {c.frames} timed frames (+{c.warmup} warm-up), "
            f"{'frame by frame' if c.block == 1 else f'in turns of {c.block} frames'}, "
            f"{'random weights' if c.checkpoint is None else c.checkpoint}, {m['device']}, "
            f"{m['threads']} threads, torch {m['torch']}"
        )
        if m["device"] == "cpu" and m.get("cpu_isa"):  # older saved runs do not have these
            head += f"; {describe_cpu(m)}"
        rows = [
            f"| variant | objects | ms/frame (median) | p90 | FPS | vs {self.baseline} | "
            "mask IoU vs fp32 (mean / min) | session MiB |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for r in self.results:
            ratio = "" if r.vs_baseline is None else f"{r.vs_baseline:.2f}x"
            iou = (
                "reference"
                if r.agreement_ref == r.variant
                else ""
                if r.iou_mean is None or r.iou_min is None
                else f"{r.iou_mean:.4f} / {r.iou_min:.4f}"
            )
            rows.append(
                f"| {r.variant} | {r.objects} | {r.median_ms:.1f} | {r.p90_ms:.1f} | {r.fps:.2f} | {ratio} | "
                f"{iou} | {r.session_mib:.1f} |"
            )
        notes = [f"- {r.variant}: {r.notice}" for r in self.results if r.notice and r.objects == c.objects[0]]
        notes += [
            f"- {r.variant}, {r.objects} objects: mask IoU vs fp32 per object "
            + " / ".join(f"{x:.4f}" for x in r.iou_per_object)
            for r in self.results
            if len(r.iou_per_object) > 1
        ]
        notes += [f"- {v}: skipped ({why})" for v, why in self.skipped.items()]
        return "\n".join([head, "", *rows, *([""] + notes if notes else [])])


def _iou(a: np.ndarray, b: np.ndarray) -> list[float]:
    out = []
    for x, y in zip(a, b):
        u = np.logical_or(x, y).sum()
        out.append(1.0 if u == 0 else float(np.logical_and(x, y).sum() / u))
    return out


def describe_cpu(info: dict[str, Any]) -> str:
    """``info``'s CPU in words (a :func:`machine_info` record), e.g. "AMD EPYC (family/model 25/1,
    AVX2, no bf16 instructions)"."""
    bf16 = "bf16 instructions" if info.get("cpu_bf16_instructions") else "no bf16 instructions"
    return f"{info['cpu']} (family/model {info.get('cpu_family_model') or '?'}, {info.get('cpu_isa') or '?'}, {bf16})"


def machine_info(device: str) -> dict[str, Any]:
    """The host as the results depend on it: CPU name, its family/model (one name covers several
    generations, e.g. "AMD EPYC" for Zen 3 and Zen 4) and the vector ISA torch dispatches to
    (AVX2 / AVX512: whether bf16 matmuls are fast), threads, torch, device."""
    cpu = platform.processor() or platform.machine()
    fields: dict[str, str] = {}
    try:
        with open("/proc/cpuinfo") as f:
            for ln in f:
                key, _, value = ln.partition(":")
                if not key.strip():
                    break  # the first processor's block is enough
                fields.setdefault(key.strip(), value.strip())
    except OSError:
        pass
    cpu = fields.get("model name", cpu)
    flags = set(fields.get("flags", "").split())
    info: dict[str, Any] = {
        "cpu": cpu,
        "cpu_family_model": f"{fields['cpu family']}/{fields['model']}" if "cpu family" in fields else "",
        "cpu_isa": torch.backends.cpu.get_cpu_capability(),
        "cpu_bf16_instructions": bool(flags & {"avx512_bf16", "amx_bf16"}),
        "cores": os.cpu_count(),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "device": device,
    }
    if device.startswith("cuda") and torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(torch.device(device))
    return info


# ---------------------------------------------------------------------- the run
def _available(variants: Sequence[str], model: SAM2Model) -> tuple[list[str], dict[str, str]]:
    import importlib.util

    keep, skipped = [], {}
    for v in variants:
        if v == "meta":
            if importlib.util.find_spec("sam2") is None:
                skipped[v] = "the sam2 package is not installed"
                continue
            if model.cfg.name not in META_CONFIGS:
                skipped[v] = f"Meta ships no config for {model.cfg.name}"
                continue
        if v == "hf":
            if importlib.util.find_spec("transformers") is None:
                skipped[v] = "transformers is not installed"
                continue
            if model.cfg.version != "2.1" or model.cfg.name not in META_CONFIGS:
                skipped[v] = f"transformers' Sam2VideoModel runs the SAM 2.1 presets, not {model.cfg.name}"
                continue
        keep.append(v)
    return keep, skipped


def run_bench(
    cfg: BenchConfig, clock: Clock = time.perf_counter, log: Callable[[str], None] | None = None
) -> BenchResult:
    """Run every available variant of ``cfg`` interleaved, once per object count."""
    torch.manual_seed(cfg.seed)
    model = build_model(cfg.model, image_size=cfg.image_size, checkpoint=cfg.checkpoint, device=cfg.device)
    variants, skipped = _available(cfg.variants, model)
    baseline = "meta" if "meta" in variants else "fifo" if "fifo" in variants else variants[0]
    size = cfg.frame_size or model.image_size
    n = 1 + cfg.warmup + cfg.frames
    cuda = cfg.device.startswith("cuda")
    meta = build_meta(model, cfg.device) if "meta" in variants else None
    hf = None
    if "hf" in variants:
        from .hf import hf_model

        hf = hf_model(model)
    results: list[VariantResult] = []
    with tempfile.TemporaryDirectory(prefix="surgsam-bench-") as tmp:
        for k in cfg.objects:
            raw, masks = synthetic_clip(n, size, k, cfg.seed)
            frames = _jpeg_round_trip(raw, Path(tmp) / f"clip{k}")
            runners: dict[str, Runner] = {}
            for v in variants:
                base, mode = parse_variant(v)
                if v == "meta":
                    runners[v] = MetaRunner(meta, Path(tmp) / f"clip{k}")
                elif v == "hf":
                    runners[v] = HFRunner(hf, model)
                else:
                    runners[v] = OursRunner(model, base, mode, n)
            lat: dict[str, list[float]] = {v: [] for v in variants}
            ious: dict[str, list[float]] = {v: [] for v in variants}
            names = list(runners)
            for b, first in enumerate(range(0, n, cfg.block)):
                ts = range(first, min(n, first + cfg.block))
                order = names[b % len(names) :] + names[: b % len(names)]
                out: dict[int, dict[str, np.ndarray]] = {t: {} for t in ts}
                for v in order:
                    for t in ts:
                        if cuda:
                            torch.cuda.synchronize()
                        t0 = clock()
                        out[t][v] = runners[v].start(frames[t], masks) if t == 0 else runners[v].step(frames[t])
                        if cuda:
                            torch.cuda.synchronize()
                        if t > cfg.warmup:
                            lat[v].append(1000.0 * (clock() - t0))
                for t in ts:
                    if t > 0:
                        for v in names:
                            ref = reference_of(v)
                            if ref in out[t] and ref != v:
                                ious[v].extend(_iou(out[t][ref], out[t][v]))
                    if log is not None and t > cfg.warmup:
                        j = t - cfg.warmup - 1
                        log(f"objects={k} frame {t}: " + ", ".join(f"{v} {lat[v][j]:.0f} ms" for v in names))
            for v in names:
                x = lat[v]
                med = statistics.median(x)
                ref = reference_of(v)
                r = VariantResult(
                    v,
                    k,
                    med,
                    float(np.percentile(x, 90)),
                    1000.0 / med,
                    runners[v].session_bytes() / 2**20,
                    notice=runners[v].notice,
                    latencies_ms=[round(a, 3) for a in x],
                    agreement_ref=ref if ref in names else None,
                    iou_mean=float(np.mean(ious[v])) if ious[v] else None,
                    iou_min=float(np.min(ious[v])) if ious[v] else None,
                    iou_per_object=[float(x) for x in np.reshape(ious[v], (-1, k)).mean(0)] if ious[v] else [],
                )
                if baseline in lat:
                    r.vs_baseline = statistics.median(lat[baseline]) / med
                    r.vs_baseline_paired = statistics.median(b / a for a, b in zip(x, lat[baseline]))
                results.append(r)
            del runners
    info = machine_info(cfg.device)
    info["image_size"] = model.image_size
    return BenchResult(cfg, info, baseline, results, skipped)
