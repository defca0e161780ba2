"""Differentiable forward over a clip with the model's per-frame building blocks.

It runs exactly what the streaming engine runs at inference, batched over all objects of the
batch, with SAM 2's training choices where the two differ:

* prompted (conditioning) frames: no memory (``no_mem_embed``); clicks/box -> prompt encoder +
  decoder (3 candidates for a single click); a mask prompt is used as the output
  (``mask_as_output``);
* other frames: memory attention over what the ``fifo`` policy selects (conditioning frames
  in slot 0, the last 6 frames in slots 1..6, object pointers of the conditioning frames and
  of the last 15 frames), then the decoder with 3 candidates;
* correction clicks re-run the decoder with all clicks so far and the previous low-res logits
  as the mask prompt (clamped to +-32 as the engine does);
* the memory of a frame is encoded from ``sigmoid`` of its final high-res logits (SAM 2
  trains this way; the engine, like Meta's predictor, binarises the masks of prompted frames)
  and nothing is detached, so later frames' losses reach earlier predictions, the memory
  encoder and the object pointers;
* a frame that received correction clicks becomes a conditioning frame (slot 0) for the
  following frames (``add_corrected_as_cond``, as Meta's fine-tuning configs).

:class:`TrainStep` wraps this plus the loss into one ``nn.Module`` so that DDP sees a single
``forward`` call per step.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass, field, replace

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from ..memory import MemoryBank, MemoryEntry, MemoryPolicy, make_policy
from ..modeling.sam2 import FrameFeatures, MaskOutput, SAM2Model, SpatialMemory
from .aux_types import TypeBalance, TypeHead, type_loss
from .clips import ClipBatch
from .losses import DecoderStep, LossConfig, LossTerms, sam2_loss
from .prompts import PromptConfig, PromptPlan, initial_clicks, plan_prompts, sample_error_clicks

__all__ = ["FrameTrace", "ClipOutput", "forward_clip", "TrainStep"]

PREV_LOGITS_CLAMP = 32.0  # the engine clamps previous logits fed back with new clicks


@dataclass
class FrameTrace:
    """Everything the loss needs from one frame (N objects).

    steps: decoder calls in order (initial, then one per correction click).
    high_res_masks: ``N x 1 x S x S`` final logits (the frame's output and memory input).
    points / labels: the clicks on this frame at the end (``N x P x 2`` / ``N x P``), if any.
    """

    frame_idx: int
    steps: list[DecoderStep]
    high_res_masks: torch.Tensor
    is_cond: bool
    points: torch.Tensor | None = None
    labels: torch.Tensor | None = None


@dataclass
class ClipOutput:
    """Per-frame traces in time order and the prompt plan that produced them."""

    frames: list[FrameTrace]
    plan: PromptPlan
    extras: dict = field(default_factory=dict)

    def steps_per_frame(self) -> list[list[DecoderStep]]:
        return [f.steps for f in self.frames]


def _objects_view(feats: FrameFeatures, index: torch.Tensor) -> FrameFeatures:
    """Per-object features ``N x ...`` gathered from per-image features."""
    sel = lambda x: x.index_select(0, index)  # noqa: E731
    return FrameFeatures(sel(feats.features), sel(feats.pos), (sel(feats.high_res[0]), sel(feats.high_res[1])))


def _step(out: MaskOutput, size: int, from_mask: bool = False) -> DecoderStep:
    if from_mask:  # mask_as_output: the (scaled) prompt mask is already full resolution
        multi = out.high_res_masks
    else:
        multi = F.interpolate(out.multimask_logits.float(), (size, size), mode="bilinear", align_corners=False)
    return DecoderStep(multi, out.ious, out.object_score_logits)


_Clicks = tuple[torch.Tensor, torch.Tensor]  # ``N x P x 2`` points, ``N x P`` labels


@dataclass
class _ClipMemory:
    """The memory of one clip forward: a ``fifo`` policy over one N-batched bank."""

    policy: MemoryPolicy
    bank: MemoryBank
    tmax: int  # the temporal-position scale of the object pointers
    pos: torch.Tensor | None = None  # memory position encoding, set by the first commit

    def condition(self, model: SAM2Model, feats: FrameFeatures, t: int) -> torch.Tensor:
        """Frame ``t``'s features conditioned on what the policy selects."""
        sel = self.policy.select(self.bank, t)
        spatial = [(slot, SpatialMemory(e.spatial_features, self._pos())) for slot, e in sel.spatial]
        pointers = [(d, e.obj_ptr) for d, e in sel.pointers]
        return model.condition_on_memory(feats, spatial, pointers, self.tmax)

    def commit(self, model: SAM2Model, feats: FrameFeatures, out: MaskOutput, t: int, is_cond: bool) -> None:
        """Encode frame ``t``'s output (nothing detached) and store it."""
        mem = model.encode_memory(feats.features, out.high_res_masks, out.object_score_logits)
        if self.pos is None:
            self.pos = mem.pos
        self.policy.commit(self.bank, MemoryEntry(t, mem.features, out.obj_ptr, is_cond, 0.0, 0.0))

    def _pos(self) -> torch.Tensor:
        assert self.pos is not None  # a selected entry was committed, which sets it
        return self.pos


def _predict_with_corrections(
    model: SAM2Model,
    pix: torch.Tensor,
    feats: FrameFeatures,
    gt: torch.Tensor,
    clicks: _Clicks | None,
    corrections: int,
    cfg: PromptConfig,
    rng: random.Random,
    generator: torch.Generator | None,
    extra_sparse: torch.Tensor | None,
) -> tuple[MaskOutput, list[DecoderStep], _Clicks | None]:
    """Decode one frame from its conditioned features ``pix`` and ``clicks``, then add
    ``corrections`` error clicks one at a time, each re-decoding with all clicks so far and
    the previous low-res logits. Returns the final output, every decoder step and the clicks."""
    s = model.image_size
    points, labels = clicks if clicks is not None else (None, None)
    multimask = points is None or points.shape[1] <= 1
    out = model.predict_masks(pix, feats.high_res, points, labels, None, multimask, extra_sparse)
    steps = [_step(out, s)]
    for _ in range(corrections):
        from_gt = rng.random() < cfg.prob_sample_from_gt
        pred = None if from_gt else out.high_res_masks[:, 0] > 0
        p, lab = sample_error_clicks(gt, pred, generator)
        points = p if points is None else torch.cat([points, p], 1)
        labels = lab if labels is None else torch.cat([labels, lab], 1)
        prev = out.low_res_masks.clamp(-PREV_LOGITS_CLAMP, PREV_LOGITS_CLAMP)
        out = model.predict_masks(pix, feats.high_res, points, labels, prev, points.shape[1] <= 1, extra_sparse)
        steps.append(_step(out, s))
    final = (points, labels) if points is not None and labels is not None else None
    return out, steps, final


def forward_clip(
    model: SAM2Model,
    batch: ClipBatch,
    plan: PromptPlan,
    cfg: PromptConfig,
    rng: random.Random,
    generator: torch.Generator | None = None,
    *,
    features: FrameFeatures | None = None,
    given: Mapping[int, MaskOutput] | None = None,
    extra_sparse: torch.Tensor | None = None,
) -> ClipOutput:
    """Run the model over a batch of clips.

    Args:
        model: a :class:`SAM2Model` (train mode for training).
        batch: frames ``B x T x 3 x S x S`` on the model's device, targets ``T x N x S x S``.
        plan: prompts (:func:`plan_prompts`); cfg: correction-click settings.
        rng / generator: draw sample-from-GT decisions / click and box noise.
        features: the clip's image features ``(B*T) x ...`` when already computed.
        given: outputs of initial conditioning frames computed elsewhere (e.g. a referring
            detection), used instead of prompting them; they are memory-encoded as usual.
        extra_sparse: ``N x K x C`` extra sparse prompt tokens for every decoder call here
            (the referring model's sentence token during tracking).
    """
    t_len = batch.frames.shape[1]
    s = model.image_size
    feats_all = features if features is not None else model.encode_image(batch.frames.flatten(0, 1))  # (B*T) x ...
    given = given or {}
    tmax = max(1, min(t_len, model.cfg.max_obj_ptrs_in_encoder) - 1)
    memory = _ClipMemory(make_policy("fifo", model.num_maskmem, model.cfg.max_obj_ptrs_in_encoder), MemoryBank(), tmax)
    traces: dict[int, FrameTrace] = {}
    order = plan.processing_order
    for i, t in enumerate(order):
        feats = _objects_view(feats_all, batch.obj_to_clip * t_len + t)
        gt = batch.masks[t]
        is_init = t in plan.init_cond_frames
        clicks = initial_clicks(plan.kind, gt, cfg, generator) if is_init and t not in given else None
        if t in given:  # an output computed elsewhere
            out = given[t]
            steps = [_step(out, s)]
        elif is_init and clicks is None:  # mask prompt: the mask is the output
            out = model.mask_as_output(feats.features, feats.high_res, gt[:, None].float())
            steps = [_step(out, s, from_mask=True)]
        else:
            pix = model.condition_on_memory(feats, [], []) if is_init else memory.condition(model, feats, t)
            corrections = cfg.num_correction_clicks if t in plan.correct_frames else 0
            out, steps, clicks = _predict_with_corrections(
                model, pix, feats, gt, clicks, corrections, cfg, rng, generator, extra_sparse
            )
        is_cond = t in plan.cond_frames
        traces[t] = FrameTrace(
            t, steps, out.high_res_masks, is_cond, clicks[0] if clicks else None, clicks[1] if clicks else None
        )
        if i < len(order) - 1:  # the last processed frame's memory would never be read
            memory.commit(model, feats, out, t, is_cond)  # one N-batched entry
    return ClipOutput([traces[t] for t in range(t_len)], plan)


class TrainStep(nn.Module):
    """One training step's forward (prompts, clip forward, loss) as a module for DDP.

    ``forward(batch, seed)`` returns ``(loss, terms, clip output)``; all randomness derives
    from ``seed``. With a ``type_head`` (training only, not part of ``model``) the loss adds
    ``aux_weight`` x the per-pixel type cross-entropy on every frame of the batch
    (:mod:`.aux_types`; the batch must carry ``types``).
    """

    def __init__(
        self,
        model: SAM2Model,
        prompts: PromptConfig = PromptConfig(),
        loss: LossConfig = LossConfig(),
        *,
        type_head: TypeHead | None = None,
        aux_weight: float = 0.0,
        aux_balance: TypeBalance = "class",
    ) -> None:
        super().__init__()
        self.model = model
        self.prompts = prompts
        self.loss_cfg = loss
        self.type_head = type_head
        self.aux_weight = float(aux_weight)
        self.aux_balance = aux_balance

    def forward(
        self, batch: ClipBatch, seed: int, plan: PromptPlan | None = None
    ) -> tuple[torch.Tensor, LossTerms, ClipOutput]:
        rng = random.Random(seed)
        dev = batch.frames.device
        gen = torch.Generator(device=dev)
        gen.manual_seed(seed & 0x7FFF_FFFF_FFFF_FFFF)
        plan = plan or plan_prompts(batch.num_frames, self.prompts, rng)
        if self.type_head is None:
            out = forward_clip(self.model, batch, plan, self.prompts, rng, gen)
            terms = sam2_loss(
                out.steps_per_frame(), batch.masks, mean_num_objects(batch.num_objects, dev), self.loss_cfg
            )
            return terms.total, terms, out
        if batch.types is None:
            raise ValueError("the auxiliary type loss needs batches with type maps (ClipConfig.type_maps)")
        feats = self.model.encode_image(batch.frames.flatten(0, 1))  # (B*T) x ..., shared with the clip forward
        out = forward_clip(self.model, batch, plan, self.prompts, rng, gen, features=feats)
        terms = sam2_loss(out.steps_per_frame(), batch.masks, mean_num_objects(batch.num_objects, dev), self.loss_cfg)
        aux, acc = type_loss(self.type_head(feats), batch.types.flatten(0, 1), self.aux_balance)
        terms = replace(terms, total=terms.total + self.aux_weight * aux, aux_type=aux, aux_type_acc=acc)
        return terms.total, terms, out


def mean_num_objects(n: int, device: torch.device) -> float:
    """Objects per rank, averaged over ranks (SAM 2's loss normaliser), at least 1."""
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        x = torch.tensor([float(n)], device=device)
        dist.all_reduce(x)
        return max(float(x) / dist.get_world_size(), 1.0)
    return max(float(n), 1.0)
