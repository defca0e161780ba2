"""``surgsam train``: run a training recipe.

surgsam train --recipe nano-synth --data data/synth --out runs/nano --steps 20000
surgsam train --recipe surgsam2 --init sam2.1_hiera_small.pt --data EndoVis18 --out runs/endo18
surgsam train --recipe resurgsam2-stage1 --init sam2.1_hiera_small.pt --data Ref-EndoVis17 --out runs/ref1
torchrun --nproc_per_node 8 -m surgsam train --recipe surgsam2 ...   (DDP)
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace

__all__ = ["register", "run_train"]


def register(subparsers) -> None:
    """Add the ``train`` subcommand."""
    from ..options import add_layout_argument

    p = subparsers.add_parser(
        "train",
        help="train or fine-tune a model (recipes: surgsam2, nano-synth, resurgsam2-stage1/2, ref-nano-synth)",
        description="Train SAM 2 on video clips with SAM 2's losses and prompt simulation. Writes checkpoints "
        "(surgsam format), OUT/log.jsonl and OUT/model.pt. Under torchrun every process takes its share of the data.",
    )
    p.add_argument(
        "--recipe",
        required=True,
        choices=("surgsam2", "nano-synth", "resurgsam2-stage1", "resurgsam2-stage2", "ref-nano-synth"),
        help="surgsam2: fine-tune an official checkpoint (encoders frozen); nano-synth: nano from scratch; "
        "resurgsam2-stage1/2: ReSurgSAM2 text-referred training (stage 1 detection, stage 2 + tracking); "
        "ref-nano-synth: the referring branch on nano with the embedded MiniLM text encoder",
    )
    p.add_argument(
        "--data",
        action="append",
        required=True,
        metavar="DIR",
        help="dataset folder (VOS, EndoVis, Ref-EndoVis or synthetic); repeat to mix datasets",
    )
    p.add_argument("--out", required=True, help="output folder for checkpoints and logs")
    p.add_argument(
        "--init", default=None, metavar="CKPT", help="initial weights (official .pt, bare state dict or ours)"
    )
    p.add_argument(
        "--model", default=None, help="model preset (default: the recipe's; ignored for our own --init files)"
    )
    p.add_argument("--split", default="train", help="split folder to use where the dataset has splits (default train)")
    add_layout_argument(p)
    p.add_argument("--steps", type=int, default=None, help="optimisation steps (default: the recipe's)")
    p.add_argument("--epochs", type=float, default=None, help="instead of --steps: passes over the clip windows")
    p.add_argument("--batch-size", type=int, default=None, help="clips per video batch per process")
    p.add_argument("--image-batch-size", type=int, default=None, help="frames per image batch per process")
    p.add_argument("--image-every", type=int, default=None, help="every k-th step is an image batch (0 = never)")
    p.add_argument("--image-size", type=int, default=None, help="model input side (multiple of 32)")
    p.add_argument("--frames", type=int, default=None, help="frames per clip (default 8)")
    p.add_argument(
        "--entry-prob",
        type=float,
        default=None,
        help="chance that a clip starts where an object enters the view and tracks it from there "
        "(default: the recipe's)",
    )
    p.add_argument(
        "--exit-prob",
        type=float,
        default=None,
        help="chance that a clip starts shortly before an object leaves the view and tracks it (default: the recipe's)",
    )
    p.add_argument(
        "--frame-resize",
        choices=("pil", "antialias"),
        default=None,
        help="how clip frames are resized to the model input: pil (PIL bicubic, as the engine reads "
        "frames; default) or antialias (float bilinear, as runs before session 9)",
    )
    p.add_argument("--max-objects", type=int, default=None, help="objects per clip (default 3)")
    p.add_argument("--lr", type=float, default=None, help="base learning rate")
    p.add_argument("--warmup", type=float, default=None, help="warm-up: steps (>= 1) or a fraction of the run (< 1)")
    p.add_argument(
        "--point-prob",
        type=float,
        default=None,
        help="probability that a video clip is prompted with a click or box instead of a mask (default 0.5)",
    )
    p.add_argument(
        "--iou-loss",
        choices=("l1", "mse"),
        default=None,
        help="loss of the IoU head (SAM 2: l1; SAM: mse, which does not collapse to 0 from random init)",
    )
    p.add_argument(
        "--absent-weight",
        type=float,
        default=None,
        metavar="W",
        help="weight of the object-score loss on frames where a tracked object is absent (default 1, SAM 2's); "
        "more pushes the tracker to let a departed object go",
    )
    p.add_argument(
        "--aux-type-loss",
        type=float,
        default=None,
        metavar="WEIGHT",
        help="add WEIGHT x a per-pixel object-type cross-entropy from the datasets' categories (Ref-EndoVis "
        "Meta, e.g. synthetic data) through a training-only 1x1-conv head; checkpoints do not contain it "
        "(default 0: off)",
    )
    p.add_argument(
        "--aux-type-level",
        choices=("s16", "s4", "s16+s4"),
        default=None,
        help="features the type head reads: s16 image-encoder top level (default), s4 the decoder's "
        "stride-4 map, or both",
    )
    p.add_argument(
        "--aux-type-balance",
        choices=("class", "pixel"),
        default=None,
        help="class: every class in the batch weighs the same (default); pixel: plain mean over pixels",
    )
    p.add_argument(
        "--aux-type-lr-scale",
        type=float,
        default=None,
        metavar="X",
        help="learning rate of the type head = X x the base lr (default 10)",
    )
    p.add_argument(
        "--freeze",
        default=None,
        help="comma-separated module prefixes to freeze (e.g. image_encoder,sam_prompt_encoder; 'none')",
    )
    p.add_argument(
        "--text-encoder",
        default=None,
        help="referring recipes: frozen text encoder (clip, minilm, clip-tiny, a model folder); default: "
        "the recipe's / the --init checkpoint's",
    )
    p.add_argument(
        "--stage",
        type=int,
        choices=(1, 2),
        default=None,
        help="referring recipes: 1 = detection only on the first 3 frames of each clip; 2 = detection "
        "then tracking (default: the recipe's)",
    )
    p.add_argument(
        "--freeze-sam-steps",
        type=int,
        default=None,
        help="referring recipes: keep the SAM 2 part frozen for this many first steps",
    )
    p.add_argument(
        "--freeze-sam-epochs", type=float, default=None, help="referring recipes: ... or epochs (resurgsam2-stage1: 5)"
    )
    p.add_argument(
        "--paraphrase-prob",
        type=float,
        default=None,
        metavar="P",
        help="referring recipes: chance that a clip's expression is reworded with the training paraphrases "
        "(EndoVis names, synonyms, other templates; surgsam.data.paraphrase, never its held-out-only wordings); "
        "default 0: the dataset's sentences as they are",
    )
    p.add_argument(
        "--photometric-prob",
        type=float,
        default=None,
        metavar="P",
        help="chance that a clip gets one random change of colour and light (channel gains, brightness, contrast, "
        "saturation, gamma; the same for all its frames); default 0",
    )
    p.add_argument("--seed", type=int, default=None)
    p.add_argument(
        "--precision", choices=("auto", "bf16", "fp32"), default=None, help="auto: bf16 on CUDA sm80+, fp32 elsewhere"
    )
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1 (default: cuda when available)")
    p.add_argument("--workers", type=int, default=None, help="data-loading processes (default 0 on CPU, 4 on CUDA)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--log-every", type=int, default=None)
    p.add_argument("--ckpt-every", type=int, default=None)
    p.add_argument(
        "--keep-checkpoints",
        type=int,
        default=None,
        help="checkpoints kept in OUT/checkpoints, the newest (default 3; 0 keeps all)",
    )
    p.add_argument("--resume", action="store_true", help="continue from OUT/checkpoints/latest.json if present")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run_train)


def config_from_args(args: argparse.Namespace):
    """The :class:`TrainConfig` of parsed ``surgsam train`` arguments."""
    import torch

    from .recipes import make_config

    cfg = make_config(
        args.recipe,
        model=args.model,
        init=args.init,
        data=tuple(args.data),
        split=args.split,
        layout=args.layout,
        out=args.out,
        steps=args.steps,
        epochs=args.epochs,
        batch_size=args.batch_size,
        image_batch_size=args.image_batch_size,
        image_every=args.image_every,
        image_size=args.image_size,
        seed=args.seed,
        precision=args.precision,
        device=args.device,
        threads=args.threads,
        log_every=args.log_every,
        ckpt_every=args.ckpt_every,
        keep_checkpoints=getattr(args, "keep_checkpoints", None),
    )
    cuda = torch.cuda.is_available() and (args.device is None or args.device.startswith("cuda"))
    workers = args.workers if args.workers is not None else (4 if cuda else 0)
    clip = replace(cfg.clip, **{k: v for k, v in (("num_frames", args.frames), ("max_objects", args.max_objects)) if v})
    if args.entry_prob is not None:  # ClipConfig checks the range
        clip = replace(clip, entry_prob=args.entry_prob)
    if args.exit_prob is not None:
        clip = replace(clip, exit_prob=args.exit_prob)
    if getattr(args, "frame_resize", None) is not None:
        clip = replace(clip, frame_resize=args.frame_resize)
    if getattr(args, "paraphrase_prob", None) is not None:  # ClipConfig checks the range
        if cfg.referring is None:
            raise ValueError(f"--paraphrase-prob applies to referring recipes, not {cfg.recipe}")
        clip = replace(clip, paraphrase_prob=args.paraphrase_prob)
    if getattr(args, "photometric_prob", None) is not None:
        clip = replace(clip, photometric_prob=args.photometric_prob)
    optim = cfg.optim
    if args.lr is not None:
        optim = replace(optim, lr=args.lr)
    if args.warmup is not None:
        optim = (
            replace(optim, warmup_steps=int(args.warmup), warmup_frac=0.0)
            if args.warmup >= 1
            else replace(optim, warmup_steps=0, warmup_frac=float(args.warmup))
        )
    if args.freeze is not None:
        names = (
            ()
            if args.freeze.strip().lower() in ("", "none")
            else tuple(x.strip() for x in args.freeze.split(",") if x.strip())
        )
        optim = replace(optim, freeze=names)
    prompts, loss = cfg.prompts, cfg.loss
    if args.point_prob is not None:
        if not 0.0 <= args.point_prob <= 1.0:
            raise ValueError(f"--point-prob must be in [0, 1], got {args.point_prob}")
        prompts = replace(prompts, prob_point_input=args.point_prob)
    if args.iou_loss is not None:
        loss = replace(loss, iou_use_l1=args.iou_loss == "l1")
    if args.absent_weight is not None:  # LossConfig checks the value
        loss = replace(loss, weight_absent=args.absent_weight)
    aux = cfg.aux_type
    given = {
        k: getattr(args, f"aux_type_{a}", None)
        for k, a in (("weight", "loss"), ("level", "level"), ("balance", "balance"), ("lr_scale", "lr_scale"))
    }
    if any(v is not None for v in given.values()):  # AuxTypeConfig checks the values
        aux = replace(aux, **{k: v for k, v in given.items() if v is not None})
        if aux.enabled and cfg.referring is not None:
            raise ValueError(f"--aux-type-loss applies to SAM 2 (VOS) recipes, not {cfg.recipe}")
    ref = cfg.referring
    ref_args = (
        getattr(args, "text_encoder", None),
        getattr(args, "freeze_sam_steps", None),
        getattr(args, "freeze_sam_epochs", None),
        getattr(args, "stage", None),
    )
    if ref is None and any(v is not None for v in ref_args):
        raise ValueError(f"--text-encoder / --freeze-sam-* / --stage apply to referring recipes, not {cfg.recipe}")
    if ref is not None:
        text_encoder, fs, fe, stage = ref_args
        if stage is not None:
            ref = replace(ref, stage=stage)
        if text_encoder is not None:  # the width follows the encoder (checked against the model when built)
            from ..referring.config import pooled_scale_for

            ref = replace(
                ref,
                text_encoder=text_encoder,
                text_dim=_text_dim(text_encoder, ref.text_dim),
                pooled_scale=pooled_scale_for(text_encoder),
            )
        if fs is not None or fe is not None:
            ref = replace(ref, freeze_sam_steps=fs or 0, freeze_sam_epochs=fe or 0.0)
    return replace(
        cfg,
        clip=clip,
        optim=optim,
        prompts=prompts,
        loss=loss,
        workers=workers,
        progress=not args.no_progress,
        referring=ref,
        aux_type=aux,
    )


def _text_dim(name: str, current: int | None) -> int | None:
    """The token width of a named text encoder (None: unknown, keep the preset's)."""
    known = {"clip": 512, "clip-random": 512, "clip-tiny": 32, "minilm": 384}
    return known.get(name, current)


def run_train(args: argparse.Namespace) -> int:
    from .trainer import Trainer

    try:
        cfg = config_from_args(args)
        if cfg.recipe in ("surgsam2", "resurgsam2-stage1", "resurgsam2-stage2") and cfg.init is None:
            print(
                f"warning: the {cfg.recipe} recipe fine-tunes a pretrained model; no --init given, starting from "
                "random weights",
                file=sys.stderr,
            )
        trainer = Trainer(cfg, resume=args.resume)
    except (ValueError, FileNotFoundError, KeyError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if trainer.is_main:
        n = trainer.sampler
        sam = getattr(trainer.model, "sam", trainer.model)
        print(
            f"train: recipe {cfg.recipe}, model {sam.cfg.name} at {sam.image_size}px on "
            f"{trainer.device} ({trainer.precision}), {trainer.world} process(es); {n.num_clips} clips, "
            f"{n.num_images} images; steps {trainer.step} -> {trainer.cfg.steps}",
            file=sys.stderr,
        )
        if trainer.warmup_warning:
            print(trainer.warmup_warning, file=sys.stderr)
    result = trainer.train()
    _finish_distributed()
    if trainer.is_main:
        print(
            f"done: step {result.step}, loss {result.loss}, {result.seconds:.1f} s; weights {cfg.out}/model.pt, "
            f"log {result.log}",
            file=sys.stderr,
        )
    return 0


def _finish_distributed() -> None:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
