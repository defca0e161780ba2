"""The SAM 2 network: wires the components and exposes the per-frame building blocks.

The model is stateless: it never stores frames, prompts or memories. The engine
(``surgsam.engine``) owns that state and decides, through a memory policy, which memories a
frame attends to; the model turns the chosen entries into tokens and runs the networks.

Parameter names follow Meta's checkpoints exactly, so official files load strictly.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal, TypeVar

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from .common import MLP, InferenceCache, get_1d_sine_pe, inference_fast_ops
from .mask_decoder import DecoderOutput, MaskDecoder
from .memory_attention import MemoryAttention
from .memory_encoder import MemoryEncoder
from .neck import ImageEncoder, build_image_encoder
from .presets import SAM2Config, get_preset
from .prompt_encoder import PromptEncoder
from .two_way_transformer import TwoWayTransformer

NO_OBJ_SCORE = -1024.0  # mask logit written where the object is predicted absent
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
ResizeMode = Literal["antialias", "pil"]


def pil_resize(frames: torch.Tensor, size: int) -> torch.Tensor:
    """``B x 3 x H x W`` uint8 -> ``B x 3 x S x S`` float32 in 0..1, as Meta's JPEG-folder
    loader: PIL bicubic resize of the uint8 image, then /255 in float64 stored as float32."""
    if frames.dtype != torch.uint8:
        raise ValueError(f"resize='pil' needs uint8 frames, got {frames.dtype}")
    out = []
    for f in frames.cpu():
        arr = np.ascontiguousarray(f.permute(1, 2, 0).numpy())
        if arr.shape[:2] != (size, size):  # PIL returns a copy of an image already at the size
            arr = np.asarray(Image.fromarray(arr).resize((size, size), Image.Resampling.BICUBIC))
        out.append(torch.from_numpy(arr / 255.0).permute(2, 0, 1).to(torch.float32))
    return torch.stack(out)


@dataclass
class FrameFeatures:
    """Backbone output for a batch of B frames (B = 1 per frame in streaming).

    features: ``B x C x h x w`` top-level (stride 16) features, before any memory.
    pos: ``B x C x h x w`` their sine position encoding.
    high_res: stride-4 and stride-8 maps already projected for the decoder,
        ``B x C/8 x 4h x 4w`` and ``B x C/4 x 2h x 2w``.
    """

    features: torch.Tensor
    pos: torch.Tensor
    high_res: tuple[torch.Tensor, torch.Tensor]

    def expand(self, n: int) -> "FrameFeatures":
        """The same single frame repeated for ``n`` objects (views, no copy)."""
        if self.features.shape[0] != 1:
            raise ValueError("expand() needs features of a single frame")
        ex = lambda t: t.expand(n, *t.shape[1:])  # noqa: E731
        return FrameFeatures(ex(self.features), ex(self.pos), (ex(self.high_res[0]), ex(self.high_res[1])))


@dataclass
class MaskOutput:
    """SAM heads' output for B objects.

    multimask_logits: ``B x M x 4h x 4w`` low-res logits of all candidates (M = 3 or 1).
    ious: ``B x M`` predicted IoU of each candidate.
    low_res_masks: ``B x 1 x 4h x 4w`` best candidate; high_res_masks: ``B x 1 x S x S``.
    obj_ptr: ``B x C`` object pointer; object_score_logits: ``B x 1``.
    """

    multimask_logits: torch.Tensor
    ious: torch.Tensor
    low_res_masks: torch.Tensor
    high_res_masks: torch.Tensor
    obj_ptr: torch.Tensor
    object_score_logits: torch.Tensor


@dataclass
class SpatialMemory:
    """One frame's encoded memory: ``B x Cm x h x w`` features and position encoding."""

    features: torch.Tensor
    pos: torch.Tensor


_M = TypeVar("_M", bound=nn.Module)


def _component(cfg: SAM2Config, name: str, given: _M | None, build: Callable[[], _M]) -> _M:
    """``given``, checked to have the parameter names and shapes ``build()`` would give for
    ``cfg`` (compared on the meta device: nothing allocated, no random numbers drawn); else
    ``build()``."""
    if given is None:
        return build()
    if not isinstance(given, nn.Module):
        raise TypeError(f"{name} must be an nn.Module, got {type(given).__name__}")
    with torch.device("meta"):
        want = {k: tuple(v.shape) for k, v in build().state_dict().items()}
    got = {k: tuple(v.shape) for k, v in given.state_dict().items()}
    if got != want:
        diff = sorted(set(want) ^ set(got)) or sorted(k for k in want if want[k] != got[k])
        raise ValueError(
            f"the given {name} does not match config {cfg.name!r} (d_model {cfg.d_model}): "
            f"{len(diff)} parameters differ in name or shape, e.g. {diff[:3]}"
        )
    return given


class SAM2Model(nn.Module):
    """SAM 2 / SAM 2.1 built from a :class:`SAM2Config`.

    The networks it is made of (``image_encoder``, ``memory_attention``, ``memory_encoder``,
    ``prompt_encoder``, ``mask_decoder``) are built from ``cfg`` unless given: a given one (e.g.
    shared between models, or a subclass with other kernels) must have exactly the parameter
    names and shapes the config's own would have, so checkpoints load the same. Built from a
    preset name: :meth:`from_preset` (or :func:`surgsam.build_model`, which also loads weights).
    """

    pixel_mean: torch.Tensor  # 1 x 3 x 1 x 1 buffer
    pixel_std: torch.Tensor  # 1 x 3 x 1 x 1 buffer

    def __init__(
        self,
        cfg: SAM2Config,
        *,
        image_encoder: ImageEncoder | None = None,
        memory_attention: MemoryAttention | None = None,
        memory_encoder: MemoryEncoder | None = None,
        prompt_encoder: PromptEncoder | None = None,
        mask_decoder: MaskDecoder | None = None,
    ) -> None:
        super().__init__()
        self.cfg = cfg
        c, cm = cfg.d_model, cfg.mem_dim
        self.image_size = cfg.image_size
        self.hidden_dim, self.mem_dim, self.num_maskmem = c, cm, cfg.num_maskmem
        # Normalisation constants travel with the model but are not checkpoint entries.
        self.register_buffer("pixel_mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("pixel_std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

        # Built in this order when not given (the order fixes the random initialisation).
        self.image_encoder = _component(cfg, "image_encoder", image_encoder, lambda: build_image_encoder(cfg))
        self.mask_downsample = nn.Conv2d(1, 1, kernel_size=4, stride=4)
        self.memory_attention = _component(
            cfg,
            "memory_attention",
            memory_attention,
            lambda: MemoryAttention(c, cm, cfg.mem_attn_layers, cfg.mem_attn_ffn, cfg.mem_attn_dropout, cfg.rope_theta),
        )
        self.memory_encoder = _component(
            cfg, "memory_encoder", memory_encoder, lambda: MemoryEncoder(c, cm, cfg.mem_fuser_layers)
        )
        self.maskmem_tpos_enc = nn.Parameter(torch.zeros(cfg.num_maskmem, 1, 1, cm))
        self.no_mem_embed = nn.Parameter(torch.zeros(1, 1, c))
        self.no_mem_pos_enc = nn.Parameter(torch.zeros(1, 1, c))
        self.no_obj_ptr = nn.Parameter(torch.zeros(1, c))
        self.no_obj_embed_spatial = nn.Parameter(torch.zeros(1, cm)) if cfg.no_obj_embed_spatial else None
        for p in (self.maskmem_tpos_enc, self.no_mem_embed, self.no_mem_pos_enc, self.no_obj_ptr):
            nn.init.trunc_normal_(p, std=0.02)
        if self.no_obj_embed_spatial is not None:
            nn.init.trunc_normal_(self.no_obj_embed_spatial, std=0.02)

        side = cfg.feat_size
        self.sam_prompt_encoder = _component(
            cfg,
            "prompt_encoder",
            prompt_encoder,
            lambda: PromptEncoder(c, (side, side), (cfg.image_size, cfg.image_size), mask_in_chans=16),
        )
        self.sam_mask_decoder = _component(
            cfg,
            "mask_decoder",
            mask_decoder,
            lambda: MaskDecoder(
                c,
                TwoWayTransformer(cfg.decoder_depth, c, cfg.decoder_heads, cfg.decoder_mlp_dim),
                num_multimask_outputs=cfg.num_multimask_outputs,
                iou_head_depth=cfg.iou_head_depth,
                iou_head_hidden_dim=cfg.iou_head_hidden_dim,
                dynamic_multimask_via_stability=cfg.dynamic_multimask_via_stability,
                dynamic_multimask_stability_delta=cfg.dynamic_multimask_stability_delta,
                dynamic_multimask_stability_thresh=cfg.dynamic_multimask_stability_thresh,
            ),
        )
        self.obj_ptr_proj = MLP(c, c, c, 3)
        self.obj_ptr_tpos_proj: nn.Module = nn.Linear(c, cm) if cfg.proj_tpos_enc_in_obj_ptrs else nn.Identity()
        self._cache = InferenceCache()  # values of the weights alone, reused at inference

    @classmethod
    def from_preset(cls, name: str, image_size: int | None = None) -> SAM2Model:
        """A randomly initialised model of preset ``name`` (``list_presets()``; aliases work) at
        ``image_size`` (default: the preset's)."""
        return cls(get_preset(name, image_size))

    @property
    def device(self) -> torch.device:
        return self.no_mem_embed.device

    # ------------------------------------------------------------------ images
    def preprocess(self, frames: torch.Tensor, resize: ResizeMode = "antialias") -> torch.Tensor:
        """``B x 3 x H x W`` uint8 (or float 0..255) RGB -> ``B x 3 x S x S`` normalised input.

        ``resize`` picks how a frame of another size becomes the square model input:
        ``"antialias"`` resizes the float image bilinearly with antialiasing (Meta's
        ``SAM2ImagePredictor`` transforms, and this project's training clips); ``"pil"``
        resizes the uint8 image with PIL's bicubic filter before normalising (Meta's
        ``SAM2VideoPredictor`` reading a JPEG folder, and the two surgical releases), which
        needs uint8 frames and runs on the CPU.
        """
        if resize == "pil":
            return self._preprocess_pil(frames)
        if resize != "antialias":
            raise ValueError(f"resize must be 'antialias' or 'pil', got {resize!r}")
        x = frames.to(self.device, torch.float32) / 255.0
        if x.shape[-2:] != (self.image_size, self.image_size):
            x = F.interpolate(
                x, (self.image_size, self.image_size), mode="bilinear", align_corners=False, antialias=True
            )
        return (x - self.pixel_mean) / self.pixel_std

    def _preprocess_pil(self, frames: torch.Tensor) -> torch.Tensor:
        x = pil_resize(frames, self.image_size).to(self.device)
        if inference_fast_ops():  # x is ours: the same arithmetic in place
            return x.sub_(self.pixel_mean).div_(self.pixel_std)
        return (x - self.pixel_mean) / self.pixel_std

    def encode_image(self, images: torch.Tensor) -> FrameFeatures:
        """Normalised ``B x 3 x S x S`` -> :class:`FrameFeatures` (Meta's ``forward_image``)."""
        out = self.image_encoder(images)
        s0, s1, top = out.backbone_fpn
        dec = self.sam_mask_decoder
        return FrameFeatures(top, out.vision_pos_enc[-1], (dec.conv_s0(s0), dec.conv_s1(s1)))

    # ------------------------------------------------------------------ SAM heads
    def predict_masks(
        self,
        features: torch.Tensor,
        high_res: tuple[torch.Tensor, torch.Tensor],
        points: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        mask_input: torch.Tensor | None = None,
        multimask_output: bool = False,
        extra_sparse: torch.Tensor | None = None,
    ) -> MaskOutput:
        """Prompt encoder + mask decoder on (possibly memory-conditioned) features.

        Args:
            features: ``B x C x h x w``; high_res: see :class:`FrameFeatures`.
            points: ``B x P x 2`` in model-input pixels; labels ``B x P`` (1 pos, 0 neg,
                2/3 box corners, -1 padding). None means no clicks.
            mask_input: ``B x 1 x H' x W'`` mask logits (resized to ``4h x 4w``).
            extra_sparse: ``B x K x C`` extra prompt tokens (e.g. a text token).
        """
        return self.select_masks(
            self.decode_prompts(features, high_res, points, labels, mask_input, extra_sparse), multimask_output
        )

    def decode_prompts(
        self,
        features: torch.Tensor,
        high_res: tuple[torch.Tensor, torch.Tensor],
        points: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        mask_input: torch.Tensor | None = None,
        extra_sparse: torch.Tensor | None = None,
    ) -> DecoderOutput:
        """:meth:`predict_masks` up to the decoder: every candidate (single mask first), before
        :meth:`select_masks` picks the single or the multimask output (one decoder pass can
        serve both)."""
        b = features.shape[0]
        pe = self.sam_prompt_encoder
        if points is None and mask_input is None and inference_fast_ops():
            sparse, dense = pe.empty_prompts(b, features.dtype)  # a tracked frame's (constant) prompt
        else:
            if points is None:
                points = features.new_zeros(b, 1, 2)
                labels = -torch.ones(b, 1, dtype=torch.int32, device=features.device)
            if mask_input is not None and mask_input.shape[-2:] != pe.mask_input_size:
                mask_input = F.interpolate(
                    mask_input.float(), pe.mask_input_size, mode="bilinear", align_corners=False, antialias=True
                )
            sparse, dense = pe(points=(points, labels), boxes=None, masks=mask_input)
        if extra_sparse is not None:
            sparse = torch.cat([sparse, extra_sparse], dim=1)
        return self.sam_mask_decoder.predict_all(features, pe.get_dense_pe(), sparse, dense, False, high_res)

    def select_masks(self, decoded: DecoderOutput, multimask_output: bool) -> MaskOutput:
        """:class:`MaskOutput` of :meth:`decode_prompts`' candidates: the best of the multimask
        ones (by predicted IoU) or the single mask; object pointers gated by presence."""
        dec = self.sam_mask_decoder.select(decoded, multimask_output)
        b = dec.masks.shape[0]
        obj_logits = dec.object_score_logits
        present = obj_logits > 0
        low_multi = torch.where(present[:, None, None], dec.masks, NO_OBJ_SCORE).float()
        token = dec.sam_tokens[:, 0]
        if multimask_output:
            best = dec.iou_pred.argmax(dim=-1)
            rows = torch.arange(b, device=dec.masks.device)
            low = low_multi[rows, best].unsqueeze(1)
            token = dec.sam_tokens[rows, best]
        else:
            low = low_multi
        # only the chosen mask is upsampled (per-channel op: the same values as upsampling all)
        high = F.interpolate(low, (self.image_size, self.image_size), mode="bilinear", align_corners=False)
        obj_ptr = self._gate_obj_ptr(self.obj_ptr_proj(token), present.float())
        return MaskOutput(low_multi, dec.iou_pred, low, high, obj_ptr, obj_logits)

    def _gate_obj_ptr(self, obj_ptr: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
        """Replace the pointer of absent objects by the learned ``no_obj_ptr`` (``B x C``)."""
        return present * obj_ptr + (1 - present) * self.no_obj_ptr

    def mask_as_output(
        self, features: torch.Tensor, high_res: tuple[torch.Tensor, torch.Tensor], mask: torch.Tensor
    ) -> MaskOutput:
        """Use a given binary mask ``B x 1 x S x S`` as the output (mask prompts on a
        conditioning frame); the decoder only supplies the object pointer."""
        m = mask.float()
        high = m * 20.0 - 10.0
        low = F.interpolate(
            high, (high.shape[-2] // 4, high.shape[-1] // 4), mode="bilinear", align_corners=False, antialias=True
        )
        ious = m.new_ones(m.shape[0], 1)
        ptr_out = self.predict_masks(features, high_res, mask_input=self.mask_downsample(m))
        present = (m.flatten(1) > 0).any(dim=1, keepdim=True).float()
        obj_logits = present * 20.0 - 10.0
        obj_ptr = self._gate_obj_ptr(ptr_out.obj_ptr, present)
        return MaskOutput(low, ious, low, high, obj_ptr, obj_logits)

    # ------------------------------------------------------------------ memory
    def condition_on_memory(
        self,
        frame: FrameFeatures,
        spatial: Sequence[tuple[int, SpatialMemory]],
        pointers: Sequence[tuple[int, torch.Tensor]],
        ptr_tpos_max: int = 15,
    ) -> torch.Tensor:
        """Fuse the current frame with its memories; returns ``B x C x h x w``.

        Args:
            frame: the current frame's features (batch B = objects).
            spatial: (temporal slot, memory) pairs. Slot 0 is a conditioning frame; slot
                s in 1..num_maskmem-1 is the frame ``num_maskmem - s`` steps back (6 = the
                previous frame). A slot selects ``maskmem_tpos_enc[num_maskmem - s - 1]``.
                Empty on an initial conditioning frame: then ``no_mem_embed`` is added.
            pointers: (signed frame distance, ``B x C`` object pointer) pairs.
            ptr_tpos_max: distance that maps to 1.0 in the pointers' temporal encoding
                (``min(num_frames, 16) - 1`` in Meta's predictor).
        """
        b, c = frame.features.shape[:2]
        if not spatial and not pointers:
            return frame.features + self.no_mem_embed.view(1, c, 1, 1)
        mem, mem_pos = self.memory_tokens(spatial, pointers, ptr_tpos_max, b)
        return self.attend_memory(frame, mem, mem_pos, len(pointers))

    def attend_memory(
        self,
        frame: FrameFeatures,
        memory: torch.Tensor,
        memory_pos: torch.Tensor,
        num_pointers: int,
        memory_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Memory attention on ready tokens (``B x M x Cm``, pointers last, ``num_pointers`` of
        them before splitting, padding included); ``memory_mask`` ``B x M`` bool marks real
        tokens of a padded memory. Returns memory-conditioned features ``B x C x h x w``."""
        b, c, h, w = frame.features.shape
        n_ptr_tokens = num_pointers * (c // self.mem_dim)
        curr = frame.features.flatten(2).transpose(1, 2)
        curr_pos = frame.pos.flatten(2).transpose(1, 2)
        out = self.memory_attention(
            curr, curr_pos, memory.to(curr.dtype), memory_pos.to(curr.dtype), n_ptr_tokens, memory_mask
        )
        return out.transpose(1, 2).reshape(b, c, h, w)

    def padded_memory_tokens(
        self,
        spatial: Sequence[tuple[int, SpatialMemory]],
        pointers: Sequence[tuple[int, torch.Tensor]],
        ptr_tpos_max: int,
        batch: int,
        slots: tuple[int, int],
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """:meth:`memory_tokens` padded to a fixed size, so that every frame has the same
        shapes (one compiled graph, one exported model, objects of any history in one batch).

        ``slots`` = (spatial memories, pointers) to pad to; the layout is
        ``[spatial slots x hw | pointer slots x C/Cm]`` tokens. Returns tokens and position
        encodings ``B x M x Cm`` (zeros in the padding) and the mask ``B x M`` (True = real).
        """
        n_sp, n_ptr = slots
        if len(spatial) > n_sp or len(pointers) > n_ptr:
            raise ValueError(f"{len(spatial)} spatial memories / {len(pointers)} pointers exceed the slots {slots}")
        if not spatial:
            raise ValueError("a padded memory needs at least one spatial memory")
        tok, pos = self.memory_tokens(spatial, pointers, ptr_tpos_max, batch)
        hw = spatial[0][1].features.shape[-2] * spatial[0][1].features.shape[-1]
        split = self.hidden_dim // self.mem_dim
        real_sp, real_ptr = len(spatial) * hw, len(pointers) * split
        size = n_sp * hw + n_ptr * split
        out_tok = tok.new_zeros(batch, size, tok.shape[-1])
        out_pos = pos.new_zeros(batch, size, pos.shape[-1])
        mask = torch.zeros(batch, size, dtype=torch.bool, device=tok.device)
        ptr0 = n_sp * hw
        for dst, n, src in ((0, real_sp, 0), (ptr0, real_ptr, real_sp)):
            out_tok[:, dst : dst + n] = tok[:, src : src + n]
            out_pos[:, dst : dst + n] = pos[:, src : src + n]
            mask[:, dst : dst + n] = True
        return out_tok, out_pos, mask

    def memory_tokens(
        self,
        spatial: Sequence[tuple[int, SpatialMemory]],
        pointers: Sequence[tuple[int, torch.Tensor]],
        ptr_tpos_max: int,
        batch: int,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Memory entries -> (tokens ``B x M x Cm``, their position encodings ``B x M x Cm``).

        Spatial memories come first (``h*w`` tokens each), then the object pointers, each
        split into ``C / Cm`` tokens.
        """
        toks, poss = [], []
        for slot, m in spatial:
            toks.append(m.features.flatten(2).transpose(1, 2).float())
            poss.append(self._spatial_pos(slot, m.pos))
        if pointers:
            c, cm = self.hidden_dim, self.mem_dim
            ptrs = torch.stack([p for _, p in pointers], dim=1)  # B x P x C
            toks.append(ptrs.reshape(batch, len(pointers) * (c // cm), cm))
            poss.append(self._pointer_pos([d for d, _ in pointers], ptr_tpos_max, batch, ptrs.dtype))
        return torch.cat(toks, dim=1), torch.cat(poss, dim=1)

    def memory_positions(
        self, slots: Sequence[int], pos: torch.Tensor, dists: Sequence[int], ptr_tpos_max: int
    ) -> torch.Tensor:
        """The position encodings :meth:`memory_tokens` gives one object (``1 x M x Cm``) whose
        spatial memories sit in temporal ``slots``, all with position encoding ``pos``
        (``1 x Cm x h x w``), and whose pointers lie at signed distances ``dists``. At inference
        the spatial part is read from a table of every slot's encoding, computed once
        (:class:`~.common.InferenceCache`; one entry, whatever the layouts)."""
        parts = []
        if slots:

            def table() -> torch.Tensor:  # num_maskmem x hw x Cm
                return torch.cat([self._spatial_pos(slot, pos) for slot in range(self.num_maskmem)])

            every = self._cache.get("spatial_pos", (pos, self.maskmem_tpos_enc), table)
            parts.append(every[list(slots)].reshape(1, -1, every.shape[-1]))
        if dists:
            parts.append(self._pointer_pos(list(dists), ptr_tpos_max, 1, torch.float32))
        return parts[0] if len(parts) == 1 else torch.cat(parts, dim=1)

    def _spatial_pos(self, slot: int, pos: torch.Tensor) -> torch.Tensor:
        """``B x hw x Cm`` positions of a spatial memory in temporal ``slot`` (``pos`` ``B x Cm x h x w``)."""
        tpos = self.maskmem_tpos_enc[self.num_maskmem - slot - 1].view(1, 1, -1)
        return pos.flatten(2).transpose(1, 2) + tpos

    def _pointer_pos(self, dists: list[int], ptr_tpos_max: int, batch: int, dtype: torch.dtype) -> torch.Tensor:
        """``B x (P * C/Cm) x Cm`` positions of P object pointers at signed distances ``dists``."""
        c, cm = self.hidden_dim, self.mem_dim
        if self.cfg.add_tpos_enc_to_obj_ptrs:
            tdim = c if self.cfg.proj_tpos_enc_in_obj_ptrs else cm
            t = torch.tensor(dists, device=self.device, dtype=torch.float32)
            pos = self.obj_ptr_tpos_proj(get_1d_sine_pe(t / ptr_tpos_max, tdim))  # P x Cm
            pos = pos.unsqueeze(0).expand(batch, -1, -1)
        else:
            pos = torch.zeros(batch, len(dists), cm, device=self.device, dtype=dtype)
        return pos.repeat_interleave(c // cm, dim=1)

    def encode_memory(
        self,
        features: torch.Tensor,
        high_res_masks: torch.Tensor,
        object_score_logits: torch.Tensor,
        binarize: bool = False,
    ) -> SpatialMemory:
        """Memory of a frame from its raw features ``B x C x h x w`` and predicted mask
        logits ``B x 1 x S x S`` (``binarize``: threshold instead of sigmoid, as Meta does
        for masks predicted from clicks at inference)."""
        m = (high_res_masks > 0).float() if binarize else torch.sigmoid(high_res_masks)
        if inference_fast_ops():  # the same arithmetic in place
            m = m.mul_(self.cfg.sigmoid_scale_for_mem_enc).add_(self.cfg.sigmoid_bias_for_mem_enc)
        else:
            m = m * self.cfg.sigmoid_scale_for_mem_enc + self.cfg.sigmoid_bias_for_mem_enc
        feats, pos = self.memory_encoder(features, m, skip_mask_sigmoid=True)
        if self.no_obj_embed_spatial is not None:
            absent = (object_score_logits <= 0).float()[..., None, None]  # B x 1 x 1 x 1
            feats = feats + absent * self.no_obj_embed_spatial.view(1, -1, 1, 1)
        return SpatialMemory(feats, pos)
