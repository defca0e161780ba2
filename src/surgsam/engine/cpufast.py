"""The CPU fast path's building blocks: bf16 matmuls, a bf16 attention kernel, cached memory
projections.

* :func:`fast_model` returns a copy of a :class:`SAM2Model` whose image-encoder trunk (when at
  least :data:`BF16_MIN_TRUNK_WIDTH` channels wide: not the nano's) and memory attention
  compute their linear layers in bf16 (weights converted once; residual streams,
  normalisations and softmax stay float32) and their attention products with
  :func:`bf16_attention`; the memory encoder's two widest mask convolutions run in bf16 too.
  The decoder and the rest of the memory encoder are the original float32 modules (their
  weights shared, not copied). On CPUs with bf16 dot-product instructions (AVX512-BF16, AMX)
  a bf16 matmul runs 2-4x faster than float32; elsewhere it is slower, which is why
  :mod:`surgsam.engine.fastpath` measures before choosing it.
* :class:`ProjectedMemory` keeps, for every stored spatial memory, its key part and values in
  every memory-attention layer, so a frame projects only memories it has not seen before
  (see :meth:`surgsam.modeling.memory_attention.RoPEAttention.project_memory`).
"""

from __future__ import annotations

import copy
import math
import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from typing import cast

import torch
import torch.nn.functional as F
from torch import nn

from ..modeling.hiera import Hiera, MultiScaleAttention, MultiScaleBlock
from ..modeling.sam2 import FrameFeatures, SAM2Model
from ..modeling.two_way_transformer import Attention

#: Largest attention-score block (elements) :func:`bf16_attention` materialises at once.
SCORE_BLOCK = 1 << 21


def bf16_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """``softmax(q k^T / sqrt(D)) v`` with bf16 matmuls (float32 accumulation) and a softmax
    computed in float32 on bf16 scores.

    q ``... x Nq x D``, k and v ``... x Nk x D`` (any float dtype, equal leading dims), mask
    bool broadcastable to ``... x Nq x Nk`` (True = attend) or None. Queries are processed in
    row blocks so that no more than :data:`SCORE_BLOCK` scores exist at once. Returns
    ``... x Nq x D`` in bf16. On a CPU with AVX512-BF16 this ran 2-3x faster than float32
    ``scaled_dot_product_attention`` (which gains nothing from bf16 inputs there).
    """
    bf = torch.bfloat16
    qb = (q.float() * q.shape[-1] ** -0.5).to(bf)
    kt = k.to(bf).transpose(-1, -2)  # a view: bf16 matmul reads it as it is (a copy cost 0.2 ms a call)
    vb = v.to(bf)
    nq, nk = q.shape[-2], k.shape[-2]
    rows = max(16, SCORE_BLOCK // max(1, math.prod(q.shape[:-2]) * nk))
    outs = []
    for i in range(0, nq, rows):
        s = torch.matmul(qb[..., i : i + rows, :], kt)
        if mask is not None:
            s = s.masked_fill(~(mask if mask.shape[-2] == 1 else mask[..., i : i + rows, :]), float("-inf"))
        outs.append(torch.matmul(torch.softmax(s, dim=-1), vb))
    return outs[0] if len(outs) == 1 else torch.cat(outs, dim=-2)


class LowPrecisionLinear(nn.Module):
    """A frozen ``nn.Linear`` computing in ``dtype`` (weights converted once): the input is
    cast, the output stays in ``dtype`` unless ``out_dtype`` is given."""

    weight: torch.Tensor
    bias: torch.Tensor | None

    def __init__(
        self, linear: nn.Linear, dtype: torch.dtype = torch.bfloat16, out_dtype: torch.dtype | None = None
    ) -> None:
        super().__init__()
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.register_buffer("weight", linear.weight.detach().to(dtype))
        self.register_buffer("bias", None if linear.bias is None else linear.bias.detach().to(dtype))
        self.out_dtype = out_dtype

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.linear(x.to(self.weight.dtype), self.weight, self.bias)
        return y if self.out_dtype is None else y.to(self.out_dtype)


class LowPrecisionConv2d(nn.Module):
    """A frozen ``nn.Conv2d`` computing in ``dtype`` (weights converted once) between float32
    maps: the input is cast to ``dtype``, the output back to float32."""

    weight: torch.Tensor
    bias: torch.Tensor | None

    def __init__(self, conv: nn.Conv2d, dtype: torch.dtype = torch.bfloat16) -> None:
        super().__init__()
        if conv.padding_mode != "zeros" or isinstance(conv.padding, str):
            raise ValueError("LowPrecisionConv2d takes zero-padded convolutions with numeric padding")
        self.stride, self.padding, self.dilation, self.groups = conv.stride, conv.padding, conv.dilation, conv.groups
        self.register_buffer("weight", conv.weight.detach().to(dtype))
        self.register_buffer("bias", None if conv.bias is None else conv.bias.detach().to(dtype))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.conv2d(
            x.to(self.weight.dtype), self.weight, self.bias, self.stride, self.padding, self.dilation, self.groups
        )
        return y.float()


#: The mask downsampler's convolutions computed in bf16 by the recipe: those reading at least
#: this many channels (the nano's and SAM 2's 16 -> 64 and 64 -> 256 stride-2 convolutions:
#: 1.1x and 1.6-1.7x faster in bf16 with the casts, AVX512-BF16; the narrower ones are not).
MASK_CONV_MIN_CHANNELS = 16


def _lowp_mask_convs(model: SAM2Model, dtype: torch.dtype) -> None:
    """The memory encoder's wide mask-downsampling convolutions as :class:`LowPrecisionConv2d`
    (in place, in the copy; the normalisations between them stay float32)."""
    layers = model.memory_encoder.mask_downsampler.encoder
    for i, layer in enumerate(layers):
        if isinstance(layer, nn.Conv2d) and layer.kernel_size != (1, 1) and layer.in_channels >= MASK_CONV_MIN_CHANNELS:
            layers[i] = LowPrecisionConv2d(layer, dtype)


def _lowp_linears(root: nn.Module, dtype: torch.dtype) -> None:
    """Replace every ``nn.Linear`` under ``root`` by a :class:`LowPrecisionLinear` (in place).
    A Hiera block's shortcut projection returns float32: it starts a residual stream."""
    for parent in list(root.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, nn.Linear):
                shortcut = isinstance(parent, MultiScaleBlock) and name == "proj"
                setattr(parent, name, LowPrecisionLinear(child, dtype, torch.float32 if shortcut else None))


#: Trunks whose first stage is narrower than this stay float32 in the recipe: the nano's
#: (16 wide) matmuls are too small for bf16 to pay for the casts around them (nano, 4 objects:
#: the same speed either way, masks against float32 at IoU 0.9982 min with a float32 trunk,
#: 0.9937 with a bf16 one).
BF16_MIN_TRUNK_WIDTH = 64


def fast_model(model: SAM2Model, matmul: str = "bf16") -> SAM2Model:
    """A copy of ``model`` for the CPU fast path (inference only; ``model`` is not changed).

    ``matmul="bf16"``: the image encoder's trunk (if :data:`BF16_MIN_TRUNK_WIDTH` channels wide
    or more) and the memory attention compute their linear layers and attention products in
    bf16 (:class:`LowPrecisionLinear`, :func:`bf16_attention`), and the memory encoder its wide
    mask-downsampling convolutions (:class:`LowPrecisionConv2d`). ``"fp32"``: the same modules
    as ``model``. Every module left in float32 shares its parameters with ``model`` (no copy);
    the bf16 weights are the only new memory (about half the trunk's and the memory
    attention's float32 size).
    """
    if matmul not in ("fp32", "bf16"):
        raise ValueError(f"matmul must be 'fp32' or 'bf16', got {matmul!r}")
    if matmul == "fp32":
        return model
    # share every tensor: the copy's converted layers are rebuilt below, the rest is reused
    memo: dict[int, object] = {id(t): t for t in (*model.parameters(), *model.buffers())}
    fast = copy.deepcopy(model, memo)
    fast.eval()
    trunk = cast(Hiera, fast.image_encoder.trunk)
    roots: list[nn.Module] = [fast.memory_attention]
    if trunk.patch_embed.proj.out_channels >= BF16_MIN_TRUNK_WIDTH:
        roots.append(trunk)
    for root in roots:
        _lowp_linears(root, torch.bfloat16)
        for m in root.modules():
            if isinstance(m, (Attention, MultiScaleAttention)):
                m.kernel = bf16_attention
    _lowp_mask_convs(fast, torch.bfloat16)
    _channels_last_convs(fast)
    return fast


def _channels_last_convs(model: SAM2Model) -> None:
    """Channels-last for the convolutions that meet ``B x H x W x C`` maps (in the copy only).

    The patch embedding gets channels-last weights, so its output, permuted to ``B x H x W x
    C`` at once, needs no copy. The neck's 1x1 laterals and the decoder's 1x1 high-res
    projections read the trunk's ``B x H x W x C`` maps seen as ``B x C x H x W``; torch took
    its slow convolution for those, so they become :class:`PointwiseConv` (a matmul over the
    channels, same float32 weights).
    """
    enc, dec = model.image_encoder, model.sam_mask_decoder
    trunk, neck = cast(Hiera, enc.trunk), enc.neck
    conv = trunk.patch_embed.proj
    conv.weight = nn.Parameter(conv.weight.detach().contiguous(memory_format=torch.channels_last), requires_grad=False)
    for lat in neck.convs:
        setattr(lat, "conv", PointwiseConv(cast(nn.Conv2d, lat.conv)))
    dec.conv_s0, dec.conv_s1 = PointwiseConv(dec.conv_s0), PointwiseConv(dec.conv_s1)  # type: ignore[assignment]


class PointwiseConv(nn.Module):
    """A 1x1 ``nn.Conv2d`` computed as a matmul over the channels of a ``B x C x H x W``
    tensor; channels-last input gives channels-last output without a copy."""

    def __init__(self, conv: nn.Conv2d) -> None:
        super().__init__()
        if conv.kernel_size != (1, 1) or conv.stride != (1, 1) or conv.groups != 1 or conv.padding not in ((0, 0), 0):
            raise ValueError("PointwiseConv replaces 1x1, stride-1, ungrouped, unpadded convolutions only")
        self.weight = conv.weight  # shared: Cout x Cin x 1 x 1
        self.bias = conv.bias

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.weight.flatten(1)
        return F.linear(
            x.permute(0, 2, 3, 1), w.to(x.dtype), None if self.bias is None else self.bias.to(x.dtype)
        ).permute(0, 3, 1, 2)


@dataclass
class _Projected:
    """One memory's projections: per layer (rotated key part, values) ``1 x heads x hw x D``."""

    ref: weakref.ref
    layers: list[tuple[torch.Tensor, torch.Tensor]]
    last_used: int

    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for kv in self.layers for t in kv)


class ProjectedMemory:
    """Cached memory-attention projections of a session's spatial memories.

    A memory is known by its stored feature tensor (``1 x Cm x h x w``; entries that share it,
    e.g. ``dlm``'s copies, share its projections). Projections not used on the previous or the
    current frame are dropped when the stream advances, so the cache holds about one frame's
    selection. The slot parts (one per temporal slot and layer) are computed once from the
    session's memory position encoding, as one table per layer.
    """

    def __init__(self, model: SAM2Model) -> None:
        self.model = model
        self.reset()

    def reset(self) -> None:
        self._items: dict[int, _Projected] = {}
        self._table: list[torch.Tensor] | None = None

    def advance(self, frame_idx: int) -> None:
        """Drop projections of memories that are gone or unused since before ``frame_idx - 1``."""
        for key in [k for k, it in self._items.items() if it.ref() is None or it.last_used < frame_idx - 1]:
            del self._items[key]

    def nbytes(self) -> int:
        """Bytes held by cached projections (slot parts included)."""
        slots = sum(t.numel() * t.element_size() for t in self._table or ())
        return slots + sum(it.nbytes() for it in self._items.values())

    def __len__(self) -> int:
        return len(self._items)

    def _memory(self, features: torch.Tensor, frame_idx: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
        it = self._items.get(id(features))
        if it is None or it.ref() is not features:
            n = features.shape[-2] * features.shape[-1]
            tokens = features.flatten(2).transpose(1, 2).float()
            it = _Projected(weakref.ref(features), self.model.memory_attention.project_memory(tokens, n), frame_idx)
            self._items[id(features)] = it
        it.last_used = frame_idx
        return it.layers

    def _slot_table(self, pos: torch.Tensor) -> list[torch.Tensor]:
        """Per layer, the slot parts of every temporal slot side by side, ``1 x heads x (S*hw)
        x D`` (slot ``s`` in rows ``s*hw`` to ``(s+1)*hw``), computed once per session."""
        if self._table is None:
            m = self.model
            grid = pos.flatten(2).transpose(1, 2).float()  # 1 x hw x Cm
            tpos = m.maskmem_tpos_enc.float().flip(0).reshape(m.num_maskmem, 1, -1)  # slot s: tpos[S - s - 1]
            tokens = (grid + tpos).reshape(1, -1, grid.shape[-1])
            self._table = m.memory_attention.project_memory_pos(tokens, grid.shape[1])
        return self._table

    def _slot_rows(self, slots: tuple[int, ...], pos: torch.Tensor, layer: int) -> torch.Tensor:
        """The slot parts of a sequence of temporal slots in one layer, ``1 x heads x (n*hw) x
        D``: a view of the table when the slots are consecutive (as ``fifo`` lays them out)."""
        table, hw = self._slot_table(pos)[layer], pos.shape[-2] * pos.shape[-1]
        first = slots[0]
        if slots == tuple(range(first, first + len(slots))):
            return table[:, :, first * hw : (first + len(slots)) * hw]
        return torch.cat([table[:, :, s * hw : (s + 1) * hw] for s in slots], dim=-2)

    def attend(
        self,
        frame: FrameFeatures,
        spatial: Sequence[Sequence[tuple[int, torch.Tensor]]],
        pointers: torch.Tensor | None,
        pointers_pos: torch.Tensor | None,
        pos: torch.Tensor,
        frame_idx: int,
    ) -> torch.Tensor:
        """Memory-conditioned features ``B x C x h x w`` of ``frame`` (batch B = objects).

        spatial: per object, (temporal slot, stored features ``1 x Cm x h x w``) pairs, the
            same count for every object; pointers, pointers_pos: ``B x P x Cm`` tokens from
            :meth:`SAM2Model.memory_tokens` (or None); pos: ``1 x Cm x h x w`` the memory
            position encoding.
        """
        m = self.model
        attn = m.memory_attention
        b, c, h, w = frame.features.shape
        if len(spatial) != b or len({len(s) for s in spatial}) != 1 or not spatial[0]:
            raise ValueError("every object needs the same, non-zero number of spatial memories")
        n_sp = len(spatial[0]) * h * w
        has_ptr = pointers is not None and pointers_pos is not None and pointers.shape[1] > 0
        projected = [[self._memory(feats, frame_idx) for _, feats in obj] for obj in spatial]
        seqs = [tuple(slot for slot, _ in obj) for obj in spatial]
        layers = []
        for li in range(len(attn.layers)):
            ptr_k = ptr_v = None
            if has_ptr:
                assert pointers is not None and pointers_pos is not None
                ptr_k, ptr_v = attn.project_pointers(li, pointers, pointers_pos)
            mk0, mv0 = projected[0][0][li]
            n = n_sp + (0 if ptr_k is None else ptr_k.shape[-2])
            k = mk0.new_empty(b, mk0.shape[1], n, mk0.shape[-1])
            v = mv0.new_empty(b, mv0.shape[1], n, mv0.shape[-1])
            # one copy per object and kind: the memories' rows side by side, then their slot parts
            for bi, mems in enumerate(projected):
                torch.cat([mem[li][0] for mem in mems], dim=-2, out=k[bi : bi + 1, :, :n_sp])
                torch.cat([mem[li][1] for mem in mems], dim=-2, out=v[bi : bi + 1, :, :n_sp])
            if len(set(seqs)) == 1:
                k[:, :, :n_sp] += self._slot_rows(seqs[0], pos, li)
            else:
                for bi, seq in enumerate(seqs):
                    k[bi : bi + 1, :, :n_sp] += self._slot_rows(seq, pos, li)
            if ptr_k is not None and ptr_v is not None:
                k[:, :, n_sp:] = ptr_k
                v[:, :, n_sp:] = ptr_v
            layers.append((k, v))
        curr = frame.features.flatten(2).transpose(1, 2)
        curr_pos = frame.pos.flatten(2).transpose(1, 2)
        out = attn.forward_projected(curr, curr_pos, layers)
        return out.transpose(1, 2).reshape(b, c, h, w)
