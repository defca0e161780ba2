"""Memory attention: the current frame's features attend to the memory bank, with 2-D RoPE.

RoPE is implemented with real cos/sin tables (no complex tensors) so that the graph exports to
ONNX and compiles cleanly; it is numerically the axial complex RoPE of SAM 2.
"""

from __future__ import annotations

import functools
import math
from typing import cast

import torch
import torch.nn.functional as F
from torch import nn

from .common import inference_fast_ops
from .two_way_transformer import Attention


def axial_rope_angles(head_dim: int, side_x: int, side_y: int, theta: float = 10000.0) -> torch.Tensor:
    """Rotation angles for a ``side_y x side_x`` raster: ``(side_x*side_y) x head_dim/2``.

    The first half of the rotated pairs encodes the column, the second half the row.
    """
    n = head_dim // 4
    freqs = 1.0 / theta ** (torch.arange(0, head_dim, 4)[:n].float() / head_dim)
    idx = torch.arange(side_x * side_y, dtype=torch.float32)
    col, row = idx % side_x, torch.div(idx, side_x, rounding_mode="floor")
    return torch.cat([torch.outer(col, freqs), torch.outer(row, freqs)], dim=-1)


def rope_tables(angles: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Angles ``N x D/2`` -> (cos, signed sin) tables ``N x D`` for :func:`apply_rope`.

    Channel pair (2i, 2i+1) rotates by ``angles[:, i]``; the sin table carries the sign of
    the rotation so that ``rot(x) = x * cos + swap(x) * sin``.
    """
    cos = angles.cos().repeat_interleave(2, dim=-1)
    sin = torch.stack([-angles.sin(), angles.sin()], dim=-1).flatten(-2)
    return cos, sin


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate consecutive channel pairs of ``x`` (``... x N x D``) with tables ``N x D``.

    Real arithmetic only (exportable to ONNX, friendly to torch.compile).
    """
    xf = x.float()
    pairs = xf.unflatten(-1, (-1, 2))
    swapped = torch.stack((pairs[..., 1], pairs[..., 0]), dim=-1).flatten(-2)  # (x1, x0) per pair
    return torch.addcmul(xf * cos, swapped, sin).type_as(x)


def apply_rope_complex(x: torch.Tensor, rot: torch.Tensor) -> torch.Tensor:
    """Same rotation as :func:`apply_rope` with a complex table ``N x D/2`` (faster in eager)."""
    xc = torch.view_as_complex(x.float().unflatten(-1, (-1, 2)))
    return torch.view_as_real(xc * rot).flatten(-2).type_as(x)


def _exporting() -> bool:
    return torch.onnx.is_in_onnx_export() or torch.compiler.is_compiling()


def _one_frame(curr: torch.Tensor, curr_pos: torch.Tensor) -> bool:
    """Whether a batch of current-frame tokens is one frame repeated as views (stride 0 over
    the batch, as :meth:`FrameFeatures.expand` makes them), where the inference shortcuts run."""
    return curr.shape[0] > 1 and curr.stride(0) == 0 and curr_pos.stride(0) == 0 and inference_fast_ops()


def _rope_tables(n: int, head_dim: int, theta: float, device: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(cos ``n x D``, signed sin ``n x D``, complex rotation ``n x D/2``) for an ``n``-token
    square grid."""
    side = int(math.isqrt(n))
    if side * side != n:
        raise ValueError(f"RoPE needs a square token grid, got {n} tokens")
    ang = axial_rope_angles(head_dim, side, side, theta)
    cos, sin = rope_tables(ang)
    rot = torch.polar(torch.ones_like(ang), ang)
    return cos.to(device), sin.to(device), rot.to(device)


@functools.lru_cache(maxsize=16)
def _rope_cache(n: int, head_dim: int, theta: float, device: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """:func:`_rope_tables` shared by every layer in eager mode (a few MB at 64 x 64 tokens)."""
    # normal tensors even when first built under inference_mode, so training can reuse them
    with torch.inference_mode(False):
        return _rope_tables(n, head_dim, theta, device)


def _cached_rope(n: int, head_dim: int, theta: float, device: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """:func:`_rope_cache` keyed on plain numbers: under ``torch.jit.trace`` (the engine's
    traced calls) sizes are tensors, which would miss the cache and record the tables'
    computation in the trace, to be redone at every replay."""
    return _rope_cache(int(n), int(head_dim), float(theta), device)


class RoPEAttention(Attention):
    """Attention with axial rotary position encoding on queries and (the first) keys.

    Keys may hold several frames of the same raster (``rope_k_repeat``): each frame's keys are
    rotated like the queries. The last ``num_k_exclude_rope`` keys (object pointers) are not.
    """

    def __init__(self, *args, rope_theta: float = 10000.0, rope_k_repeat: bool = False, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.rope_theta = rope_theta
        self.rope_k_repeat = rope_k_repeat

    def _rotate(self, x: torch.Tensor, n: int) -> torch.Tensor:
        """Rotate ``... x (r*n) x D`` as r frames of the ``n``-token grid (broadcast, no tiling)."""
        # traced graphs (export, compile) build the tables in-graph, where they fold to constants
        tables = _rope_tables if _exporting() else _cached_rope
        cos, sin, rot = tables(n, x.shape[-1], self.rope_theta, str(x.device))
        frames = x.unflatten(-2, (-1, n))
        if _exporting() or x.device.type not in ("cpu", "cuda"):
            out = apply_rope(frames, cos, sin)
        else:
            out = apply_rope_complex(frames, rot)
        return out.flatten(-3, -2)

    def _rotate_in_place(self, x: torch.Tensor, n: int) -> bool:
        """:meth:`_rotate` written into ``x`` itself (the same complex products), where that is
        possible: inference, float32 on the CPU or CUDA, channel pairs contiguous. Returns
        whether ``x`` was rotated."""
        if x.dtype != torch.float32 or x.device.type not in ("cpu", "cuda") or x.stride(-1) != 1:
            return False
        if _exporting() or not inference_fast_ops():
            return False
        rot = _cached_rope(n, x.shape[-1], self.rope_theta, str(x.device))[2]
        torch.view_as_complex(x.unflatten(-2, (-1, n)).unflatten(-1, (-1, 2))).mul_(rot)
        return True

    def forward(
        self,
        q: torch.Tensor,
        k: torch.Tensor,
        v: torch.Tensor,
        num_k_exclude_rope: int = 0,
        key_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """``B x Nq x C``, ``B x Nk x Ckv``, ``B x Nk x Ckv`` -> ``B x Nq x C``; ``key_mask``
        ``B x Nk`` bool marks the real keys (None: all). Queries of batch 1 serve every one of
        the keys' B batch entries (the same rows as repeating them)."""
        q, k, v = self._heads(self.q_proj(q)), self._heads(self.k_proj(k)), self._heads(self.v_proj(v))
        nq = q.shape[-2]
        if not self._rotate_in_place(q, nq):
            q = self._rotate(q, nq)
        if q.shape[0] != k.shape[0]:
            q = q.expand(k.shape[0], *q.shape[1:])
        n_rope = k.shape[-2] - num_k_exclude_rope
        if n_rope > 0:
            reps = n_rope // nq
            if reps * nq != n_rope or (reps > 1 and not self.rope_k_repeat):
                raise ValueError(f"{n_rope} rotated keys do not tile {nq} queries")
            if not self._rotate_in_place(k[..., :n_rope, :], nq):  # the pointers' keys stay as they are
                k_rot = self._rotate(k[..., :n_rope, :], nq)
                k = k_rot if n_rope == k.shape[-2] else torch.cat([k_rot, k[..., n_rope:, :]], dim=-2)
        return self._attend(q, k, v, key_mask)

    # ------------------------------------------------------------ cached memory projections
    # The keys of a spatial memory are k_proj(mem + pos + tpos[slot]) = W mem + (W (pos +
    # tpos[slot]) + b), rotated per position; RoPE is linear, so the rotated key splits into
    # a part of the memory alone and a part of its slot alone. Its value v_proj(mem) never
    # changes. Both can be computed once per memory instead of once per frame.
    def project_memory(self, mem: torch.Tensor, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Spatial memory tokens ``B x N x Ckv`` (frames of ``n`` tokens) -> their rotated key
        part ``R(W_k mem)`` (no bias) and their values, each ``B x heads x N x D`` in the
        projections' dtype."""
        w = self.k_proj.weight
        k = self._heads(F.linear(mem.to(w.dtype), w))
        v = self._heads(self.v_proj(mem.to(w.dtype)))
        return self._rotate(k, n), v

    def project_memory_pos(self, pos: torch.Tensor, n: int) -> torch.Tensor:
        """Position part of spatial keys: ``R(W_k pos + b_k)`` for ``B x N x Ckv`` position
        tokens (the frame's position encoding plus a slot's temporal encoding), float32."""
        w, b = self.k_proj.weight.float(), self.k_proj.bias
        return self._rotate(self._heads(F.linear(pos.float(), w, None if b is None else b.float())), n)

    def project_pointers(self, pointers: torch.Tensor, pointers_pos: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Keys and values of object-pointer tokens ``B x P x Ckv`` (not rotated), each ``B x
        heads x P x D``."""
        return self._heads(self.k_proj(pointers + pointers_pos)), self._heads(self.v_proj(pointers))

    def forward_projected(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """:meth:`forward` with keys and values already projected (spatial keys rotated):
        ``q`` ``B x Nq x C`` (or ``1 x Nq x C`` for every one of the keys' B entries); ``k``,
        ``v`` ``B x heads x Nk x D``. Returns ``B x Nq x C``."""
        qh = self._heads(self.q_proj(q))
        if not self._rotate_in_place(qh, q.shape[-2]):
            qh = self._rotate(qh, q.shape[-2])
        if qh.shape[0] != k.shape[0]:
            qh = qh.expand(k.shape[0], *qh.shape[1:])
        return self._attend(qh, k, v)


class MemoryAttentionLayer(nn.Module):
    """Pre-norm block: RoPE self-attention, RoPE cross-attention to memory, FFN."""

    def __init__(self, d_model: int, kv_dim: int, ffn_dim: int, dropout: float, rope_theta: float) -> None:
        super().__init__()
        self.self_attn = RoPEAttention(d_model, 1, dropout=dropout, rope_theta=rope_theta)
        self.cross_attn_image = RoPEAttention(
            d_model, 1, dropout=dropout, kv_in_dim=kv_dim, rope_theta=rope_theta, rope_k_repeat=True
        )
        self.linear1 = nn.Linear(d_model, ffn_dim)
        self.linear2 = nn.Linear(ffn_dim, d_model)
        self.norm1 = nn.LayerNorm(d_model)
        self.norm2 = nn.LayerNorm(d_model)
        self.norm3 = nn.LayerNorm(d_model)
        self.dropout = nn.Dropout(dropout)
        self.dropout1 = nn.Dropout(dropout)
        self.dropout2 = nn.Dropout(dropout)
        self.dropout3 = nn.Dropout(dropout)

    def forward(
        self,
        x: torch.Tensor,
        memory: torch.Tensor,
        memory_pos: torch.Tensor,
        num_k_exclude_rope: int = 0,
        memory_mask: torch.Tensor | None = None,
        memory_keys: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """x ``B x HW x C`` (or ``1 x HW x C``: one frame for the memories of B objects, which
        gives the rows of repeating it); memory and memory_pos ``B x M x Ckv``; memory_mask
        ``B x M`` bool; memory_keys: ``memory + memory_pos`` when already computed."""
        y = self.norm1(x)
        x = x + self.dropout1(self.self_attn(y, y, y))
        y = self.norm2(x)
        keys = memory + memory_pos if memory_keys is None else memory_keys
        x = x + self.dropout2(self.cross_attn_image(y, keys, memory, num_k_exclude_rope, memory_mask))
        y = self.linear2(self.dropout(F.relu(self.linear1(self.norm3(x)), inplace=inference_fast_ops())))
        return x + self.dropout3(y)

    def forward_projected(self, x: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """:meth:`forward` (inference) on projected memory keys and values, see
        :meth:`RoPEAttention.forward_projected`."""
        y = self.norm1(x)
        x = x + self.self_attn(y, y, y)
        y = self.norm2(x)
        x = x + self.cross_attn_image.forward_projected(y, k, v)
        return x + self.linear2(F.relu(self.linear1(self.norm3(x))))


class MemoryAttention(nn.Module):
    """Conditions the current frame's top-level features on the memory bank.

    Args:
        d_model: feature width C; kv_dim: memory width (64 in the released models).
    """

    def __init__(
        self,
        d_model: int,
        kv_dim: int,
        num_layers: int = 4,
        ffn_dim: int = 2048,
        dropout: float = 0.1,
        rope_theta: float = 10000.0,
    ) -> None:
        super().__init__()
        self.d_model = d_model
        self.layers = nn.ModuleList(
            MemoryAttentionLayer(d_model, kv_dim, ffn_dim, dropout, rope_theta) for _ in range(num_layers)
        )
        self.norm = nn.LayerNorm(d_model)

    def forward(
        self,
        curr: torch.Tensor,
        curr_pos: torch.Tensor,
        memory: torch.Tensor,
        memory_pos: torch.Tensor,
        num_obj_ptr_tokens: int = 0,
        memory_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """curr, curr_pos ``B x HW x C``; memory, memory_pos ``B x M x Ckv`` (object-pointer
        tokens last, ``num_obj_ptr_tokens`` of them); memory_mask ``B x M`` bool, False for
        padding tokens of a static-shape memory (None: every token is real).
        Returns ``B x HW x C``."""
        if _one_frame(curr, curr_pos):
            # one frame repeated for B objects (views): its rows are computed once, up to the
            # first cross-attention; the results are those of the repeated rows
            curr, curr_pos = curr[:1], curr_pos[:1]
        x = curr + 0.1 * curr_pos
        keys = memory + memory_pos  # the same in every layer
        for layer in self.layers:
            x = layer(x, memory, memory_pos, num_obj_ptr_tokens, memory_mask, memory_keys=keys)
        return self.norm(x)

    def _layer_list(self) -> list[MemoryAttentionLayer]:
        return [cast(MemoryAttentionLayer, layer) for layer in self.layers]

    def project_memory(self, mem: torch.Tensor, n: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Per layer, the position-free key part and the values of spatial memory tokens
        ``B x N x Ckv`` (see :meth:`RoPEAttention.project_memory`)."""
        return [layer.cross_attn_image.project_memory(mem, n) for layer in self._layer_list()]

    def project_memory_pos(self, pos: torch.Tensor, n: int) -> list[torch.Tensor]:
        """Per layer, the key part of position tokens ``B x N x Ckv`` (frame position encoding
        plus a slot's temporal encoding), see :meth:`RoPEAttention.project_memory_pos`."""
        return [layer.cross_attn_image.project_memory_pos(pos, n) for layer in self._layer_list()]

    def project_pointers(
        self, layer: int, pointers: torch.Tensor, pointers_pos: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Keys and values of object-pointer tokens ``B x P x Ckv`` in one layer's
        cross-attention (see :meth:`RoPEAttention.project_pointers`)."""
        return self._layer_list()[layer].cross_attn_image.project_pointers(pointers, pointers_pos)

    def forward_projected(
        self, curr: torch.Tensor, curr_pos: torch.Tensor, memory: list[tuple[torch.Tensor, torch.Tensor]]
    ) -> torch.Tensor:
        """:meth:`forward` at inference with the memory already projected: ``memory`` holds per
        layer (keys, values) ``B x heads x M x D``: spatial keys = memory part + slot part,
        then the pointers' keys (:meth:`project_pointers`). Equal to :meth:`forward` on the
        same memory up to float rounding. Returns ``B x HW x C``."""
        if self.training:
            raise RuntimeError("forward_projected is an inference path (no dropout); use forward() to train")
        if len(memory) != len(self.layers):
            raise ValueError(f"memory holds {len(memory)} layers' keys and values, the network has {len(self.layers)}")
        if _one_frame(curr, curr_pos):  # one frame for B objects: its rows once, as in forward()
            curr, curr_pos = curr[:1], curr_pos[:1]
        x = curr + 0.1 * curr_pos
        for layer, (k, v) in zip(self._layer_list(), memory):
            x = layer.forward_projected(x, k, v)
        return self.norm(x)
