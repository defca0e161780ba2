"""ReSurgSAM2's referring model: a SAM 2 network plus text projections and CSTMamba fusion.

Stateless, like :class:`~surgsam.modeling.sam2.SAM2Model`, which it holds (never subclasses):
the caller keeps the per-object text prompt, the previous frames' features and the CIFS state.

Detection stage (no memory), per frame::

    prompt = model.project_text(text_encoder.encode(["the grasper is retracting tissue"]))
    det = model.detect(frame_features, previous_top_level_features, prompt)
    # det.masks: SAM heads' output; det.best_iou / det.object_score feed CIFS

Tracking stage: ordinary SAM 2 memory tracking with one extra sparse prompt,
``model.tracking_prompt(prompt)`` (the sentence token), passed as ``extra_sparse`` to
:meth:`SAM2Model.predict_masks`.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from ..modeling.sam2 import FrameFeatures, MaskOutput, SAM2Model
from .config import ReferringConfig
from .fusion import CrossModalFusion, FusionOutput
from .projection import DropoutMLP
from .selective_scan import Backend
from .text import TextFeatures


@dataclass
class ReferringPrompt:
    """Text of B objects projected to the SAM width C.

    tokens: ``B x L x C`` projected token embeddings (the fusion's text tokens);
    padding_mask: ``B x L`` bool, True at padding (None: no padding);
    pooled: ``B x 1 x C`` projected sentence embedding (input of the sentence-token MLP).
    """

    tokens: torch.Tensor
    padding_mask: torch.Tensor | None
    pooled: torch.Tensor

    def __len__(self) -> int:
        return int(self.tokens.shape[0])

    def expand(self, n: int) -> "ReferringPrompt":
        """A single prompt repeated for ``n`` rows (views)."""
        if len(self) == n:
            return self
        if len(self) != 1:
            raise ValueError(f"cannot expand a prompt of batch {len(self)} to {n}")
        mask = None if self.padding_mask is None else self.padding_mask.expand(n, -1)
        return ReferringPrompt(self.tokens.expand(n, -1, -1), mask, self.pooled.expand(n, -1, -1))


@dataclass
class DetectionOutput:
    """Detection-stage result for B objects.

    masks: the SAM heads' output (multimask candidates, IoUs, best mask, object pointer,
    object-score logits); fused: ``B x C x h x w`` fused features of the current frame (before
    ``no_mem_embed``); cls_token / sentence_token: ``B x 1 x C`` decoder prompts used.
    """

    masks: MaskOutput
    fused: torch.Tensor
    cls_token: torch.Tensor
    sentence_token: torch.Tensor

    @property
    def best_iou(self) -> torch.Tensor:
        """``B``: the highest predicted IoU among the candidates (what CIFS thresholds)."""
        return self.masks.ious.max(dim=-1).values

    @property
    def object_score(self) -> torch.Tensor:
        """``B``: sigmoid of the object-score logit."""
        return torch.sigmoid(self.masks.object_score_logits[:, 0])


class ReferringSAM2(nn.Module):
    """SAM 2 + ReSurgSAM2's referring branch.

    Submodules: ``sam`` (the :class:`SAM2Model`), ``token_projection`` (text width -> C),
    ``language_fusion_mlp`` (sentence token MLP; ReSurgSAM2 keeps it inside the prompt
    encoder) and ``cross_modal_fusion`` (CSTMamba). Checkpoints in ReSurgSAM2's layout load
    through :mod:`surgsam.referring.checkpoint`, which maps the key names.
    """

    def __init__(self, sam: SAM2Model, cfg: ReferringConfig, scan_backend: Backend = "auto") -> None:
        super().__init__()
        self.sam = sam
        self.cfg = cfg
        c = sam.hidden_dim
        self.token_projection = DropoutMLP(cfg.text_dim, cfg.proj_hidden, c, 3, cfg.proj_dropout)
        self.language_fusion_mlp = DropoutMLP(c, cfg.sentence_hidden or 4 * c, c, 3, cfg.sentence_dropout)
        self.cross_modal_fusion = CrossModalFusion(
            dim=c,
            depth=cfg.fusion_depth,
            num_heads=cfg.fusion_heads,
            mlp_dim=cfg.fusion_mlp_dim,
            downsample_rate=cfg.attn_downsample_rate,
            dropout=cfg.fusion_dropout,
            mamba_per_block=cfg.mamba_per_block,
            d_state=cfg.d_state,
            d_conv=cfg.d_conv,
            expand=cfg.expand,
            dt_rank=cfg.dt_rank,
            mlp_ratio=cfg.mlp_ratio,
            kernel_size=cfg.dwconv_kernel,
            drop_path_rate=cfg.drop_path_rate,
            num_frames=cfg.num_frames,
            scan_backend=scan_backend,
        )

    @property
    def device(self) -> torch.device:
        return self.sam.device

    @property
    def num_previous(self) -> int:
        """How many previous frames' features the fusion uses (2 in ReSurgSAM2)."""
        return self.cfg.num_frames - 1

    def referring_modules(self) -> dict[str, nn.Module]:
        """The modules ReSurgSAM2 adds to SAM 2 (e.g. for their own learning rate)."""
        return {
            "token_projection": self.token_projection,
            "language_fusion_mlp": self.language_fusion_mlp,
            "cross_modal_fusion": self.cross_modal_fusion,
        }

    def referring_parameters(self) -> Iterator[nn.Parameter]:
        for m in self.referring_modules().values():
            yield from m.parameters()

    def set_scan_backend(self, backend: Backend) -> None:
        """``"auto"`` (mamba_ssm kernel on CUDA when installed), ``"kernel"`` or ``"torch"``."""
        self.cross_modal_fusion.set_scan_backend(backend)

    # ------------------------------------------------------------------ text
    def project_text(self, text: TextFeatures) -> ReferringPrompt:
        """Encoder output (width ``cfg.text_dim``) -> :class:`ReferringPrompt` (width C)."""
        if text.dim != self.cfg.text_dim:
            raise ValueError(
                f"text features are {text.dim}-wide but this model's token projection expects "
                f"{self.cfg.text_dim} (referring preset {self.cfg.name!r}, text encoder {self.cfg.text_encoder!r})"
            )
        p = next(self.token_projection.parameters())
        tokens = self.token_projection(text.tokens.to(p.device, p.dtype))
        pooled = self.token_projection(text.pooled.to(p.device, p.dtype) * self.cfg.pooled_scale).unsqueeze(1)
        mask = text.padding_mask.to(p.device).bool()
        return ReferringPrompt(tokens, mask if bool(mask.any()) else None, pooled)

    def sentence_token(self, prompt: ReferringPrompt) -> torch.Tensor:
        """``B x 1 x C`` sentence token, an extra sparse decoder prompt in both stages."""
        return self.language_fusion_mlp(prompt.pooled)

    def tracking_prompt(self, prompt: ReferringPrompt) -> torch.Tensor:
        """The ``extra_sparse`` tokens (``B x 1 x C``) for tracking-stage decoding with
        :meth:`SAM2Model.predict_masks`, as ReSurgSAM2 does after the conditioning frame."""
        return self.sentence_token(prompt)

    # ------------------------------------------------------------------ detection
    def fuse(self, frame: FrameFeatures, previous: Sequence[torch.Tensor], prompt: ReferringPrompt) -> FusionOutput:
        """CSTMamba on the current frame, up to ``num_previous`` earlier frames' top-level
        features (``B x C x h x w`` each, NEWEST FIRST) and the text."""
        b = frame.features.shape[0]
        if len(previous) > self.num_previous:
            raise ValueError(f"at most {self.num_previous} previous frames, got {len(previous)}")
        prompt = prompt.expand(b)
        prev = [_rows(p, b, "previous frame features") for p in previous]
        for p in prev:
            if p.shape != frame.features.shape:
                raise ValueError(
                    f"previous frame features {tuple(p.shape)} differ from the current {tuple(frame.features.shape)}"
                )
        return self.cross_modal_fusion(
            frame.features, _rows(frame.pos, b, "pos"), prev, prompt.tokens, prompt.padding_mask
        )

    def detect(
        self,
        frame: FrameFeatures,
        previous: Sequence[torch.Tensor],
        prompt: ReferringPrompt,
        multimask_output: bool | None = None,
    ) -> DetectionOutput:
        """Segment the referred objects in one frame from the text alone (no memory).

        Args:
            frame: the current frame's :class:`FrameFeatures` (batch B = objects, or 1).
            previous: up to ``num_previous`` previous frames' raw top-level features
                (``B x C x h x w``, newest first); fewer are padded with the current frame.
            prompt: :meth:`project_text` output for the B objects (or one, broadcast).
            multimask_output: decoder multimask mode; defaults to ``cfg.multimask_output``.
        """
        b = max(frame.features.shape[0], len(prompt))
        if frame.features.shape[0] != b:
            frame = frame.expand(b)
        fused = self.fuse(frame, previous, prompt)
        # ReSurgSAM2 treats the fused map as an initial conditioning frame: + no_mem_embed.
        pix = self.sam.condition_on_memory(FrameFeatures(fused.features, frame.pos, frame.high_res), [], [])
        sentence = self.sentence_token(prompt.expand(b))
        mm = self.cfg.multimask_output if multimask_output is None else multimask_output
        extra = torch.cat([sentence, fused.cls.to(sentence.dtype)], dim=1)  # [sentence token, fused CLS]
        masks = self.sam.predict_masks(pix, frame.high_res, multimask_output=mm, extra_sparse=extra)
        return DetectionOutput(masks, fused.features, fused.cls, sentence)

    def forward(
        self, frame: FrameFeatures, previous: Sequence[torch.Tensor], text: TextFeatures | ReferringPrompt
    ) -> DetectionOutput:
        """:meth:`detect` from encoder output or a ready prompt (training entry point)."""
        prompt = self.project_text(text) if isinstance(text, TextFeatures) else text
        return self.detect(frame, previous, prompt)


def _rows(t: torch.Tensor, b: int, what: str) -> torch.Tensor:
    """``t`` with batch ``b`` (a batch-1 tensor is expanded)."""
    if t.shape[0] == b:
        return t
    if t.shape[0] == 1:
        return t.expand(b, *t.shape[1:])
    raise ValueError(f"{what} has batch {t.shape[0]}, expected {b} or 1")


__all__ = ["ReferringSAM2", "ReferringPrompt", "DetectionOutput"]
