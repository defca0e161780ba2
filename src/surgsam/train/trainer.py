"""The training loop: data, mixed video/image batches, precision, DDP, logs, checkpoints.

Determinism: the batch of step ``s`` on rank ``r`` and all randomness of that step (prompts,
clicks, dropout) derive from ``(seed, s, r)``, so a resumed run continues exactly where an
uninterrupted run would be. Launch on several processes with ``torchrun``: the ranks split
every epoch of samples (gloo on CPU, nccl on GPU) and DDP averages gradients.

Output folder::

    OUT/train_config.json                       the full config of the run
    OUT/log.jsonl                               one JSON line per logged step
    OUT/checkpoints/step_0001000.pt             weights in surgsam format (build_model loads it;
                                                build_referring_model for referring runs)
    OUT/checkpoints/step_0001000.state.pt       optimizer, schedule, step, RNG state (and the
                                                training-only type head of --aux-type-loss runs)
    OUT/checkpoints/latest.json                 which step to resume from
    OUT/model.pt                                final weights
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from ..data import DatasetLayout
from ..engine.precision import TrainPrecision, autocast, resolve_precision
from ..modeling import build_model, read_checkpoint, save_checkpoint
from ..modeling.checkpoint import load_state_dict_strict
from ..modeling.sam2 import SAM2Model
from ..runtime import process_device
from .aux_types import AuxTypeConfig, TypeHead, aux_param_groups
from .clips import ClipBatch, ClipConfig, ClipSampler, collate, epoch_index, open_datasets
from .losses import LossConfig
from .model_step import TrainStep
from .referring_step import ReferringTrainConfig
from .optim import (
    CosineSchedule,
    OptimConfig,
    build_optimizer,
    clip_gradients,
    freeze_modules,
    set_train_mode,
    warmup_warning,
)
from .prompts import PromptConfig

if TYPE_CHECKING:  # the referring package is imported only by referring runs
    from ..referring.model import ReferringSAM2

__all__ = ["TrainConfig", "Trainer", "TrainResult", "StepBatches", "step_seed"]


@dataclass(frozen=True)
class TrainConfig:
    """A training run. ``steps`` optimisation steps (or ``epochs`` over the clip windows when
    steps is 0); every ``image_every``-th step is an image batch (0 = videos only)."""

    recipe: str = "custom"
    model: str = "nano"
    init: str | None = None
    data: tuple[str, ...] = ()
    split: str = "train"
    layout: DatasetLayout = "auto"  # dataset layout of every data folder (surgsam.data.LAYOUTS)
    out: str = "runs/train"
    steps: int = 1000
    epochs: float | None = None
    batch_size: int = 1
    image_batch_size: int = 4
    image_every: int = 2
    image_size: int | None = None
    seed: int = 0
    precision: TrainPrecision = "auto"  # bf16 on CUDA sm80+, else fp32 (surgsam.engine.precision)
    device: str | None = None
    workers: int = 0
    threads: int | None = None
    log_every: int = 1
    ckpt_every: int = 1000
    keep_checkpoints: int = 3
    progress: bool = True
    clip: ClipConfig = field(default_factory=ClipConfig)
    prompts: PromptConfig = field(default_factory=PromptConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    referring: ReferringTrainConfig | None = None  # set: ReSurgSAM2 referring training (referring_step.py)
    aux_type: AuxTypeConfig = field(default_factory=AuxTypeConfig)  # training-only type head (aux_types.py)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class TrainResult:
    step: int
    loss: float | None
    checkpoint: Path | None
    log: Path
    seconds: float


def step_seed(seed: int, step: int, rank: int, stream: int = 0) -> int:
    """A 63-bit seed for (run seed, step, rank, stream)."""
    return (
        int(np.random.SeedSequence([int(seed), int(step), int(rank), int(stream)]).generate_state(1, np.uint64)[0]) >> 1
    )


def _identity(x):
    return x


class StepBatches(torch.utils.data.Dataset):
    """``batches[step]`` is the batch of ``step`` on ``rank``: a video batch of ``batch_size``
    clips, or every ``image_every``-th step an image batch; a DistributedSampler-like split
    of per-epoch permutations without state."""

    def __init__(self, sampler: ClipSampler, cfg: TrainConfig, rank: int = 0, world: int = 1) -> None:
        self.sampler, self.cfg, self.rank, self.world = sampler, cfg, rank, world

    def __len__(self) -> int:
        return 1 << 62

    def is_image_step(self, step: int) -> bool:
        k = self.cfg.image_every
        return self.sampler.num_clips == 0 or (k > 0 and (step + 1) % k == 0)

    def __getitem__(self, step: int) -> ClipBatch:
        k = self.cfg.image_every
        if self.is_image_step(step):
            n_img = step // k if (k > 0 and self.sampler.num_clips) else step  # image steps before this one
            b, n, make, stream = self.cfg.image_batch_size, self.sampler.num_images, self.sampler.image, 1
            counter0 = (n_img * self.world + self.rank) * b
        else:
            n_vid = step - (step // k if k > 0 else 0)
            b, n, make, stream = self.cfg.batch_size, self.sampler.num_clips, self.sampler.clip, 0
            counter0 = (n_vid * self.world + self.rank) * b
        seed = self.cfg.seed
        out = []
        for j in range(b):
            c = counter0 + j
            rng = np.random.default_rng([seed, stream, c])
            out.append(make(epoch_index(c, n, seed * 2 + stream), rng))
        return collate(out)


class Trainer:
    """Builds everything from a :class:`TrainConfig` and runs :meth:`train`.

    ``model`` / ``sampler`` may be given directly (tests); otherwise they come from
    ``cfg.model`` / ``cfg.init`` and ``cfg.data``. ``resume=True`` continues from
    ``OUT/checkpoints/latest.json`` when it exists.
    """

    def __init__(
        self,
        cfg: TrainConfig,
        *,
        model: SAM2Model | ReferringSAM2 | None = None,
        sampler: ClipSampler | None = None,
        resume: bool = False,
        text_encoder=None,
    ) -> None:
        self.rank, self.world, self.local_rank = _init_distributed(cfg.device)
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        self.device = process_device(cfg.device, self.local_rank)
        if self.device.type == "cuda":
            torch.cuda.set_device(self.device)
        torch.manual_seed(cfg.seed)  # identical random init on every rank
        self.model: SAM2Model | ReferringSAM2 = (model if model is not None else _build(cfg)).to(self.device)
        self.referring = cfg.referring
        size = _sam_of(self.model).image_size
        cfg = replace(cfg, image_size=size, clip=replace(cfg.clip, image_size=size))
        if cfg.aux_type.enabled:
            if self.referring is not None:
                raise ValueError("the auxiliary type loss applies to SAM 2 (VOS) training, not referring training")
            cfg = replace(cfg, clip=replace(cfg.clip, type_maps=True))
        self.frozen = tuple(cfg.optim.freeze)
        freeze_modules(self.model, self.frozen)
        set_train_mode(self.model, self.frozen)
        self.sampler = (
            sampler if sampler is not None else ClipSampler(open_datasets(cfg.data, cfg.split, cfg.layout), cfg.clip)
        )
        if sampler is not None and sampler.cfg.image_size != size:
            raise ValueError(f"sampler draws {sampler.cfg.image_size}px samples for a {size}px model")
        if sampler is not None and cfg.clip.type_maps and not sampler.cfg.type_maps:
            raise ValueError("the auxiliary type loss needs a sampler with ClipConfig(type_maps=True)")
        if not cfg.steps:
            cfg = replace(cfg, steps=self._steps_for_epochs(cfg))
        self.cfg = cfg
        self.out = Path(cfg.out)
        self.ckpt_dir = self.out / "checkpoints"
        self.log_path = self.out / "log.jsonl"
        # training-only head: not part of the model, so checkpoints keep the model's keys
        self.type_head = (
            TypeHead.for_model(_sam_of(self.model), cfg.aux_type).to(self.device) if cfg.aux_type.enabled else None
        )
        if self.referring is not None:
            from .referring_step import ReferringTrainStep, build_training_text_encoder

            if cfg.clip.num_frames < self.referring.frames_needed():
                raise ValueError(
                    f"referring stage {self.referring.stage} needs clips of at least "
                    f"{self.referring.frames_needed()} frames, got {cfg.clip.num_frames}"
                )
            text = (
                text_encoder
                if text_encoder is not None
                else build_training_text_encoder(self.referring, self._referring_model(), self.device)
            )
            self.step_module: nn.Module = ReferringTrainStep(
                self._referring_model(), self.referring, text, cfg.prompts, cfg.loss
            )
        else:
            if not isinstance(self.model, SAM2Model):
                raise TypeError("a ReferringSAM2 model trains with TrainConfig.referring set")
            self.step_module = TrainStep(
                self.model,
                cfg.prompts,
                cfg.loss,
                type_head=self.type_head,
                aux_weight=cfg.aux_type.weight,
                aux_balance=cfg.aux_type.balance,
            )
        if self.world > 1:
            self.step_module = nn.parallel.DistributedDataParallel(self.step_module, find_unused_parameters=True)
        self.optimizer = build_optimizer(self.model, cfg.optim)
        if self.type_head is not None:
            for g in aux_param_groups(self.type_head, cfg.optim.lr * cfg.aux_type.lr_scale, cfg.optim.weight_decay):
                self.optimizer.add_param_group(g)
        warm = cfg.optim.warmup_steps or int(round(cfg.optim.warmup_frac * cfg.steps))
        self.schedule = CosineSchedule(self.optimizer, cfg.steps, warm, cfg.optim.min_lr_ratio)
        #: one line when the whole run is inside its warm-up (``surgsam train`` prints it), else None
        self.warmup_warning = warmup_warning(cfg.steps, warm, cfg.optim.lr)
        self.trainable = [p for p in self.model.parameters() if p.requires_grad]
        if self.type_head is not None:
            self.trainable += list(self.type_head.parameters())
        self.sam_freeze_steps = self._sam_freeze_steps() if self.referring is not None else 0
        self._sam_frozen: bool | None = None
        self.step = 0
        if resume:
            self.load_latest()
        self.precision = resolve_precision(cfg.precision, self.device, training=True)

    # ------------------------------------------------------------------ setup helpers
    def _steps_for_epochs(self, cfg: TrainConfig) -> int:
        if not cfg.epochs:
            raise ValueError("give steps > 0 or epochs")
        if self.sampler.num_clips == 0 or cfg.image_every == 1:
            return max(1, math.ceil(cfg.epochs * self.sampler.num_images / (cfg.image_batch_size * self.world)))
        video_steps = math.ceil(cfg.epochs * self.sampler.num_clips / (cfg.batch_size * self.world))
        k = cfg.image_every
        return max(1, math.ceil(video_steps * k / (k - 1)) if k > 1 else video_steps)

    def _referring_model(self) -> ReferringSAM2:
        """``model`` in a referring run (``cfg.referring`` set), which trains a ReSurgSAM2 model."""
        from ..referring.model import ReferringSAM2

        if not isinstance(self.model, ReferringSAM2):
            raise TypeError(f"referring training needs a ReferringSAM2 model, got {type(self.model).__name__}")
        return self.model

    def _sam_freeze_steps(self) -> int:
        rc = self.referring
        assert rc is not None  # referring runs only
        by_epochs = (
            self._steps_for_epochs(replace(self.cfg, epochs=rc.freeze_sam_epochs)) if rc.freeze_sam_epochs else 0
        )
        return max(int(rc.freeze_sam_steps), by_epochs)

    def _set_phase(self, step: int) -> None:
        """Referring runs: the SAM 2 part is frozen during the first ``sam_freeze_steps``."""
        if self.referring is None or not self.sam_freeze_steps:
            return
        frozen = step < self.sam_freeze_steps
        if frozen != self._sam_frozen:
            from .referring_step import set_sam_frozen

            set_sam_frozen(self._referring_model(), frozen, self.frozen)
            self._sam_frozen = frozen

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def autocast(self):
        return autocast(self.precision, self.device)

    # ------------------------------------------------------------------ loop
    def train(self, until: int | None = None) -> TrainResult:
        """Run from the current step to ``cfg.steps`` (or stop after step ``until``, as an
        interrupted run would); returns the final state."""
        cfg = self.cfg
        stop = cfg.steps if until is None else min(int(until), cfg.steps)
        t_start = time.perf_counter()
        if self.is_main:
            self.out.mkdir(parents=True, exist_ok=True)
            (self.out / "train_config.json").write_text(json.dumps(cfg.to_dict(), indent=1))
        data = StepBatches(self.sampler, cfg, self.rank, self.world)
        loader = torch.utils.data.DataLoader(
            data,
            batch_size=None,
            sampler=range(self.step, stop),
            num_workers=cfg.workers,
            collate_fn=_identity,
            pin_memory=self.device.type == "cuda",
            generator=torch.Generator(),  # keeps the global RNG untouched (exact resume)
            persistent_workers=False,
            prefetch_factor=2 if cfg.workers > 0 else None,
        )
        bar = _progress(cfg.steps, self.step, cfg.progress and self.is_main)
        last_loss, ckpt = None, None
        t_data = time.perf_counter()
        log = self.log_path.open("a") if self.is_main else None
        try:
            for batch in loader:
                step = self.step
                batch = batch.to(self.device, non_blocking=True)
                data_time = time.perf_counter() - t_data
                t0 = time.perf_counter()
                terms, gnorm, kind = self.train_step(batch, step)
                self.step = step + 1
                if self.step % cfg.log_every == 0 or self.step == cfg.steps:  # every rank (mean over ranks)
                    rec = self._record(step, terms, gnorm, kind, batch, data_time, time.perf_counter() - t0, t_start)
                    last_loss = rec["loss"]
                    if log is not None:
                        log.write(json.dumps(rec) + "\n")
                        log.flush()
                        bar.set_postfix(loss=f"{rec['loss']:.3f}", lr=f"{rec['lr']:.2e}", s=f"{rec['step_time']:.2f}")
                bar.update(1)
                if self.step % cfg.ckpt_every == 0 or self.step == cfg.steps:
                    ckpt = self.save()
                t_data = time.perf_counter()
        except KeyboardInterrupt:
            if self.step and self.step % cfg.ckpt_every:  # keep what was done: --resume continues here
                self.save()
            raise
        finally:
            bar.close()
            if log is not None:
                log.close()
        if self.is_main and self.step == cfg.steps:
            self._save_weights(self.out / "model.pt", step=self.step, recipe=cfg.recipe)
        return TrainResult(self.step, last_loss, ckpt, self.log_path, time.perf_counter() - t_start)

    def train_step(self, batch: ClipBatch, step: int):
        """Forward, backward, clip, optimiser step for ``step`` (0-based); returns the loss
        terms, the gradient norm before clipping and the batch kind."""
        seed = step_seed(self.cfg.seed, step, self.rank)
        torch.manual_seed(step_seed(self.cfg.seed, step, self.rank, stream=1))  # dropout
        self.schedule.set(step)
        self._set_phase(step)
        with self.autocast():
            loss, terms, out = self.step_module(batch, seed)
        loss.backward()
        gnorm = clip_gradients(self.trainable, self.cfg.optim.grad_clip)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        kind = "image" if batch.is_image else out.plan.kind
        return terms, gnorm, kind

    def _record(self, step, terms, gnorm, kind, batch, data_time, step_time, t_start) -> dict:
        vals = terms.as_dict()
        if self.world > 1:  # mean over ranks
            x = torch.tensor(list(vals.values()), device=self.device, dtype=torch.float64)
            dist.all_reduce(x)
            vals = dict(zip(vals, (x / self.world).tolist()))
        lrs = {g["name"]: g["lr"] for g in self.optimizer.param_groups}
        return {
            "step": step + 1,
            **{k: round(v, 6) for k, v in vals.items()},
            "lr": lrs.get("rest", next(iter(lrs.values()))),
            "lrs": lrs,
            "grad_norm": round(gnorm, 6),
            "batch": "image" if batch.is_image else "video",
            "prompt": kind,
            "objects": batch.num_objects,
            "frames": batch.num_frames,
            "step_time": round(step_time, 4),
            "data_time": round(data_time, 4),
            "elapsed": round(time.perf_counter() - t_start, 2),
            "time": time.time(),
        }

    # ------------------------------------------------------------------ checkpoints
    def save(self) -> Path | None:
        """Write the weights (surgsam format) and the training state of the current step."""
        if not self.is_main:
            return None
        self.ckpt_dir.mkdir(parents=True, exist_ok=True)
        name = f"step_{self.step:07d}"
        model_path = self.ckpt_dir / f"{name}.pt"
        self._save_weights(model_path, step=self.step, recipe=self.cfg.recipe, train_config=self.cfg.to_dict())
        state = {
            "step": self.step,
            "optimizer": self.optimizer.state_dict(),
            "schedule": self.schedule.state_dict(),
            "rng_torch": torch.get_rng_state(),
            "rng_cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            "world_size": self.world,
        }
        if self.type_head is not None:
            state["aux_type_head"] = self.type_head.state_dict()
        _atomic_save(state, self.ckpt_dir / f"{name}.state.pt")
        tmp = self.ckpt_dir / "latest.json.tmp"
        tmp.write_text(json.dumps({"step": self.step, "model": model_path.name, "state": f"{name}.state.pt"}))
        tmp.replace(self.ckpt_dir / "latest.json")
        self._prune()
        return model_path

    def _save_weights(self, path: Path, **meta) -> None:
        if self.referring is not None:  # ReSurgSAM2 layout + both configs (build_referring_model loads it)
            from .referring_step import save_referring_weights

            save_referring_weights(self._referring_model(), path, **meta)
        else:
            save_checkpoint(self.model, path, config=_sam_of(self.model).cfg.to_dict(), **meta)

    def _prune(self) -> None:
        keep = self.cfg.keep_checkpoints
        if keep <= 0:
            return
        olds = sorted(self.ckpt_dir.glob("step_*.state.pt"))[:-keep]
        for st in olds:
            st.unlink(missing_ok=True)
            (self.ckpt_dir / st.name.replace(".state.pt", ".pt")).unlink(missing_ok=True)

    def load_latest(self) -> bool:
        """Restore weights, optimizer, schedule, step and RNG from ``latest.json``; False if
        there is nothing to resume."""
        latest = self.ckpt_dir / "latest.json"
        if not latest.is_file():
            return False
        info = json.loads(latest.read_text())
        if self.referring is not None:
            from .referring_step import load_referring_weights

            load_referring_weights(self._referring_model(), self.ckpt_dir / info["model"])
        else:
            ck = read_checkpoint(self.ckpt_dir / info["model"])
            load_state_dict_strict(self.model, ck.state_dict, source=str(ck.path))
        state = torch.load(self.ckpt_dir / info["state"], map_location="cpu", weights_only=True)
        if self.type_head is not None:
            if "aux_type_head" not in state:
                raise ValueError(
                    f"{info['state']} has no auxiliary type head: it comes from a run without "
                    "--aux-type-loss; resume it without the option"
                )
            self.type_head.load_state_dict(state["aux_type_head"])
        self.optimizer.load_state_dict(state["optimizer"])
        sched = dict(state["schedule"], total_steps=self.cfg.steps)  # a longer run may extend the schedule
        self.schedule.load_state_dict(sched)
        torch.set_rng_state(state["rng_torch"])
        if state["rng_cuda"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["rng_cuda"])
        self.step = int(state["step"])
        if self.is_main and self.log_path.is_file():
            # steps logged after this checkpoint by the interrupted run are done again: drop them
            lines = self.log_path.read_text().splitlines(keepends=True)
            self.log_path.write_text("".join(x for x in lines if json.loads(x)["step"] <= self.step))
        return True


# ---------------------------------------------------------------------- helpers
def _sam_of(model: SAM2Model | ReferringSAM2) -> SAM2Model:
    """The SAM 2 network of a model (itself, or a referring model's ``sam``)."""
    return model if isinstance(model, SAM2Model) else model.sam


def _build(cfg: TrainConfig) -> SAM2Model | ReferringSAM2:
    if cfg.referring is not None:
        from .referring_step import build_referring_for_training

        return build_referring_for_training(cfg.model, cfg.image_size, cfg.init, cfg.referring)
    name: str | None = cfg.model
    if cfg.init is not None and read_checkpoint(cfg.init).config is not None:
        name = None  # our own file states its network
    return build_model(name, image_size=cfg.image_size, checkpoint=cfg.init)


def _init_distributed(device: str | None) -> tuple[int, int, int]:
    """(rank, world size, local rank); initialises the process group under torchrun."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1, 0
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if not dist.is_initialized():
        cuda = torch.cuda.is_available() and (device is None or device.startswith("cuda"))
        dist.init_process_group(backend="nccl" if cuda else "gloo")
    return dist.get_rank(), dist.get_world_size(), local


def _atomic_save(obj, path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    tmp.replace(path)


def _progress(total: int, initial: int, enabled: bool):
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, disable=not enabled, desc="train", unit="step", dynamic_ncols=True)
