"""ReSurgSAM2's two-stage referring training on top of the SAM 2 training step.

Per clip of ``T`` frames and ``N`` objects, each with its referring expression:

* **referring frames** (the first ``ref_frames`` = 3): every frame is segmented from its
  expression alone by :meth:`ReferringSAM2.detect` -- CSTMamba over the frame and the previous
  referring frames' raw top-level features (newest first, at most ``num_previous``), no memory;
  every frame is supervised with SAM 2's losses (multimask rule, object-score BCE);
* **tracked frames** (stage 2 only, the remaining ``T - ref_frames`` = 7): the last referring
  frame's detection becomes the conditioning frame (memory-encoded from its raw features and
  its best mask, its object pointer kept) and the clip continues with SAM 2's memory tracking,
  the sentence token as an extra sparse decoder prompt -- exactly :func:`forward_clip` with the
  detection as the given output of its initial conditioning frame. Nothing is detached, so the
  tracked frames' losses reach the detection, the fusion and the text projections.

In stage 2 a batch is referring-only (its first ``ref_frames`` frames, as in stage 1) with
``referring_only_prob`` (0.5), drawn from the step's seed. Texts come from the dataset (the
clip sampler swaps "left"/"right" on flipped clips), are encoded once each by the frozen text
encoder (no gradient; each text alone, so encodings never depend on their batch mates) and
projected by the model's trainable projections on every step.

While the SAM 2 part is frozen (the first ``freeze_sam_steps`` steps of stage 1, see
:func:`set_sam_frozen`), its parameters get no gradient and stay in eval mode; they stay in the
optimiser, whose AdamW skips parameters without a gradient, so they do not change.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from ..modeling.sam2 import FrameFeatures
from .clips import ClipBatch
from .losses import LossConfig, LossTerms, sam2_loss
from .model_step import ClipOutput, FrameTrace, _objects_view, _step, forward_clip, mean_num_objects
from .optim import _matches, set_train_mode
from .prompts import PromptConfig, PromptPlan

if TYPE_CHECKING:  # the referring package is imported lazily (it pulls in the engine)
    from ..referring.model import ReferringSAM2
    from ..referring.text import TextFeatures

__all__ = [
    "ReferringTrainConfig",
    "ReferringTrainStep",
    "forward_referring_clip",
    "TextCache",
    "set_sam_frozen",
    "build_referring_for_training",
    "build_training_text_encoder",
    "save_referring_weights",
    "load_referring_weights",
]


@dataclass(frozen=True)
class ReferringTrainConfig:
    """The referring part of a :class:`~surgsam.train.TrainConfig`.

    stage: 1 = detection only on ``ref_frames`` frames; 2 = detection then tracking of the
        rest of the clip, mixed with referring-only batches (``referring_only_prob``).
    preset: referring preset of a new referring branch (ignored when ``init`` is a referring
        checkpoint, which carries its config); text_encoder / text_dim: override the preset's
        (e.g. ``"minilm"`` / 384); the encoder defaults to the model config's; pooled_scale /
        multimask_output: override the preset's (:class:`~surgsam.referring.ReferringConfig`).
    freeze_sam_steps / freeze_sam_epochs: keep the SAM 2 part frozen for this many first
        steps (epochs are converted to steps like ``TrainConfig.epochs``; the larger wins).
    """

    stage: int = 1
    preset: str = "resurgsam2"
    text_encoder: str | None = None
    text_dim: int | None = None
    pooled_scale: float | None = None
    multimask_output: bool | None = None
    ref_frames: int = 3
    referring_only_prob: float = 0.5
    freeze_sam_steps: int = 0
    freeze_sam_epochs: float = 0.0

    def __post_init__(self) -> None:
        if self.stage not in (1, 2):
            raise ValueError(f"referring stage must be 1 or 2, got {self.stage}")
        if self.ref_frames < 1:
            raise ValueError("ref_frames must be >= 1")
        if not 0.0 <= self.referring_only_prob <= 1.0:
            raise ValueError("referring_only_prob must be in [0, 1]")
        if self.freeze_sam_steps < 0 or self.freeze_sam_epochs < 0:
            raise ValueError("freeze_sam_steps / freeze_sam_epochs must be >= 0")

    def frames_needed(self) -> int:
        """The smallest clip length this stage can train on."""
        return self.ref_frames + (1 if self.stage == 2 else 0)


# ---------------------------------------------------------------------- text
class TextCache:
    """Frozen text encoder with a per-text cache: ``cache(texts)`` -> padded
    :class:`TextFeatures` on the encoder's device. Every text is encoded alone (no gradient),
    so its features are the same whatever batch it arrives in."""

    def __init__(self, encoder: Any, max_items: int = 8192) -> None:
        self.encoder = encoder
        self.max_items = int(max_items)
        self._cache: dict[str, TextFeatures] = {}

    @property
    def dim(self) -> int:
        return int(self.encoder.dim)

    def _one(self, text: str) -> "TextFeatures":
        hit = self._cache.get(text)
        if hit is None:
            with torch.no_grad():
                f = self.encoder.encode([text])
            keep = int((~f.padding_mask[0]).sum())  # the text's own tokens
            hit = type(f)(f.tokens[:, :keep].detach(), f.padding_mask[:, :keep], f.pooled.detach())
            if len(self._cache) >= self.max_items:
                self._cache.pop(next(iter(self._cache)))
            self._cache[text] = hit
        return hit

    def __call__(self, texts: Sequence[str]) -> "TextFeatures":
        from ..referring.text import TextFeatures

        return TextFeatures.concat([self._one(t) for t in texts])


# ---------------------------------------------------------------------- forward
def _frames_view(feats: FrameFeatures, num_clips: int, t_len: int, start: int, stop: int) -> FrameFeatures:
    """Features of frames ``start..stop-1`` of every clip, laid out ``(B*T') x ...``."""
    t = torch.arange(start, stop, device=feats.features.device)
    idx = (torch.arange(num_clips, device=t.device)[:, None] * t_len + t[None]).flatten()
    sel = lambda x: x.index_select(0, idx)  # noqa: E731
    return FrameFeatures(sel(feats.features), sel(feats.pos), (sel(feats.high_res[0]), sel(feats.high_res[1])))


def forward_referring_clip(
    model: "ReferringSAM2",
    batch: ClipBatch,
    text: "TextFeatures",
    ref_frames: int = 3,
    track: bool = False,
    prompts: PromptConfig = PromptConfig(),
    rng: random.Random | None = None,
    generator: torch.Generator | None = None,
) -> ClipOutput:
    """Referring frames (detection), then with ``track`` the rest of the clip tracked from the
    last referring frame. ``text``: the N objects' encoder output. Returns traces of the
    frames used (``ref_frames``, or all ``T`` with ``track``) in time order; the plan's kind
    is ``"refer"`` or ``"refer+track"`` and its ``cond_frames`` the conditioning frame."""
    sam = model.sam
    t_all, b = batch.num_frames, batch.frames.shape[0]
    r = min(ref_frames, t_all)
    track = bool(track) and t_all > r
    t_len = t_all if track else r
    size = sam.image_size
    feats_all = sam.encode_image(batch.frames[:, :t_len].flatten(0, 1))  # only the frames used
    prompt = model.project_text(text)
    traces: list[FrameTrace] = []
    previous: list[torch.Tensor] = []  # raw top-level features of earlier referring frames, newest first
    det = None
    for t in range(r):
        feats = _objects_view(feats_all, batch.obj_to_clip * t_len + t)
        det = model.detect(feats, previous[: model.num_previous], prompt)
        traces.append(FrameTrace(t, [_step(det.masks, size)], det.masks.high_res_masks, False))
        previous.insert(0, feats.features)
    if not track:
        return ClipOutput(traces, PromptPlan("refer", r, [], [], []))
    assert det is not None
    cond = r - 1  # the last referring frame conditions the tracking
    sub = ClipBatch(
        batch.frames[:, cond:t_len],
        batch.masks[cond:t_len],
        batch.obj_to_clip,
        batch.obj_ids,
        batch.texts,
        batch.videos,
    )
    plan = PromptPlan("refer", t_len - cond, [0], [], [0])
    tracked = forward_clip(
        sam,
        sub,
        plan,
        prompts,
        rng or random.Random(0),
        generator,
        features=_frames_view(feats_all, b, t_len, cond, t_len),
        given={0: det.masks},
        extra_sparse=model.tracking_prompt(prompt),
    )
    traces[cond].is_cond = True
    for tr in tracked.frames[1:]:
        tr.frame_idx += cond
        traces.append(tr)
    return ClipOutput(traces, PromptPlan("refer+track", t_len, [], [], [cond]))


def _with_texts(batch: ClipBatch) -> tuple[ClipBatch, list[str]]:
    """The batch restricted to objects that have an expression (an error if none has), and
    their expressions."""
    having = [(i, x) for i, x in enumerate(batch.texts) if isinstance(x, str) and x.strip()]
    keep, texts = [i for i, _ in having], [x for _, x in having]
    if len(keep) == len(batch.texts):
        return batch, texts
    if not keep:
        raise ValueError(
            f"referring training needs expressions; no object of {batch.videos} has one "
            "(use a Ref-EndoVis style dataset with meta_expressions.json)"
        )
    idx = torch.tensor(keep, device=batch.masks.device)
    kept = ClipBatch(
        batch.frames,
        batch.masks.index_select(1, idx),
        batch.obj_to_clip.index_select(0, idx),
        [batch.obj_ids[i] for i in keep],
        list(texts),
        batch.videos,
    )
    return kept, texts


class ReferringTrainStep(nn.Module):
    """One referring training step's forward (text, detection, tracking, loss) for DDP.

    ``forward(batch, seed)`` returns ``(loss, terms, ClipOutput)`` like :class:`TrainStep`; all
    randomness (referring-only draw, dropout aside) derives from ``seed``. The text encoder is
    held outside the module tree: it is frozen and never part of the checkpoint.
    """

    def __init__(
        self,
        model: "ReferringSAM2",
        cfg: ReferringTrainConfig,
        text: TextCache | Any,
        prompts: PromptConfig = PromptConfig(),
        loss: LossConfig = LossConfig(),
    ) -> None:
        super().__init__()
        self.model = model
        self.cfg = cfg
        self._text = (text if isinstance(text, TextCache) else TextCache(text),)  # not a submodule
        if self._text[0].dim != model.cfg.text_dim:
            raise ValueError(
                f"the text encoder gives {self._text[0].dim}-wide features but the model's token "
                f"projection expects {model.cfg.text_dim} (referring preset {model.cfg.name!r})"
            )
        self.prompts = prompts
        self.loss_cfg = loss

    @property
    def text(self) -> TextCache:
        return self._text[0]

    def forward(
        self, batch: ClipBatch, seed: int, track: bool | None = None
    ) -> tuple[torch.Tensor, LossTerms, ClipOutput]:
        rng = random.Random(seed)
        dev = batch.frames.device
        gen = torch.Generator(device=dev)
        gen.manual_seed(seed & 0x7FFF_FFFF_FFFF_FFFF)
        if batch.num_frames < self.cfg.ref_frames:
            raise ValueError(
                f"referring training needs clips of at least {self.cfg.ref_frames} frames, got {batch.num_frames}"
            )
        draw = rng.random() >= self.cfg.referring_only_prob  # drawn in both stages: same stream
        if track is None:
            track = self.cfg.stage == 2 and draw
        batch, texts = _with_texts(batch)
        text = self.text(texts).to(dev)
        out = forward_referring_clip(self.model, batch, text, self.cfg.ref_frames, track, self.prompts, rng, gen)
        targets = batch.masks[: len(out.frames)]
        terms = sam2_loss(out.steps_per_frame(), targets, mean_num_objects(batch.num_objects, dev), self.loss_cfg)
        return terms.total, terms, out


# ---------------------------------------------------------------------- freezing
def set_sam_frozen(model: "ReferringSAM2", frozen: bool, permanent: Sequence[str] = ()) -> None:
    """Freeze (``requires_grad=False``, eval mode) or release the SAM 2 part ``sam.*`` of a
    referring model; ``permanent`` prefixes stay frozen either way, the referring modules are
    never touched."""
    for name, p in model.named_parameters():
        if _matches(name, "sam") and not any(_matches(name, q) for q in permanent):
            p.requires_grad_(not frozen)
    set_train_mode(model, tuple(permanent) + (("sam",) if frozen else ()))


# ---------------------------------------------------------------------- building and checkpoints
def _referring_config(rc: ReferringTrainConfig):
    from ..referring.config import get_referring_preset

    pairs = (
        ("text_encoder", rc.text_encoder),
        ("text_dim", rc.text_dim),
        ("pooled_scale", rc.pooled_scale),
        ("multimask_output", rc.multimask_output),
    )
    over = {k: v for k, v in pairs if v is not None}
    return get_referring_preset(rc.preset, **over)


def build_referring_for_training(
    model: str | None, image_size: int | None, init: str | None, rc: ReferringTrainConfig
) -> "ReferringSAM2":
    """A :class:`ReferringSAM2` to train: a new referring branch on a SAM 2 preset (random) or
    on a SAM 2 checkpoint (official or ours), or a whole referring checkpoint (ours, which
    carries its configs, or ReSurgSAM2's released layout on ``model``'s preset)."""
    from ..modeling import build_model, read_checkpoint
    from ..referring.checkpoint import build_referring_model
    from ..referring.model import ReferringSAM2

    if init is not None:
        ck = read_checkpoint(init)
        if ck.config is not None and ck.config.get("kind") == "referring":
            return build_referring_model(None, image_size, checkpoint=init)
        if ck.config is None and any(k.startswith(("token_projection.", "cross_modal_fusion.")) for k in ck.state_dict):
            if model is None:
                raise ValueError(f"{init} is a ReSurgSAM2 checkpoint without a config: give the SAM preset (--model)")
            return build_referring_model(model, image_size, referring=_referring_config(rc), checkpoint=init)
        sam = build_model(None if ck.config is not None else model, image_size=image_size, checkpoint=init)
    else:
        sam = build_model(model, image_size=image_size)
    return ReferringSAM2(sam, _referring_config(rc))


def build_training_text_encoder(
    rc: ReferringTrainConfig, model: "ReferringSAM2", device: torch.device | str
) -> TextCache:
    """The frozen text encoder named by ``rc.text_encoder`` or the model's config, cached."""
    from ..referring.text import build_text_encoder

    enc = build_text_encoder(rc.text_encoder or model.cfg.text_encoder, device=device)
    enc.eval()
    return TextCache(enc)


def save_referring_weights(model: "ReferringSAM2", path: str | Path, **meta: Any) -> Path:
    from ..referring.checkpoint import save_referring_checkpoint

    return save_referring_checkpoint(model, path, **meta)


def load_referring_weights(model: "ReferringSAM2", path: str | Path) -> None:
    """Strictly load our referring checkpoint ``path`` into ``model`` (resume)."""
    from ..referring.checkpoint import load_referring_state_dict, read_referring_checkpoint

    ck = read_referring_checkpoint(path)
    load_referring_state_dict(model, ck.state_dict, str(ck.path))
