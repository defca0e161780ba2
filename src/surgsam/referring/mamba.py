"""CSTMamba's spatial-temporal Mamba: the three-branch mixer, the DW-conv MLP and the layer.

The visual tokens of ``T`` frames arrive frame-major (``B x T*h*w x C``: all tokens of the
current frame, then of each reference frame, each in raster order). The mixer shares its
input/output projections between three selective-scan branches that read the sequence in
different orders:

* forward: the frame-major raster as is;
* backward: the same, reversed (flip, scan, flip back);
* temporal-interleaved: the ``T`` tokens of each spatial position made contiguous
  (token ``t*h*w + p`` goes to ``p*T + t``), scanned, and put back.

Each branch has its own causal depthwise conv, ``x_proj``, ``dt_proj``, ``A`` and ``D``, and
is gated by ``SiLU(z)``; the output is ``out_proj`` of the mean of the three. Parameter names
follow ReSurgSAM2's checkpoints (``A_log``, ``conv1d``, ``x_proj_b``, ``dt_proj_s`` ...).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..modeling.common import DropPath
from .selective_scan import Backend, selective_scan_fn

BRANCHES = ("forward", "backward", "temporal")
_SUFFIX = {"forward": "", "backward": "_b", "temporal": "_s"}


def to_branch_order(x: torch.Tensor, branch: str, frames: int) -> torch.Tensor:
    """Reorder frame-major tokens ``B x L x C`` into a branch's scan order."""
    if branch == "forward":
        return x
    if branch == "backward":
        return x.flip(1)
    if branch == "temporal":
        b, length, c = x.shape
        return x.reshape(b, frames, length // frames, c).transpose(1, 2).reshape(b, length, c)
    raise ValueError(f"unknown scan branch {branch!r}; choose one of {BRANCHES}")


def from_branch_order(x: torch.Tensor, branch: str, frames: int) -> torch.Tensor:
    """Inverse of :func:`to_branch_order`."""
    if branch == "temporal":
        b, length, c = x.shape
        return x.reshape(b, length // frames, frames, c).transpose(1, 2).reshape(b, length, c)
    return to_branch_order(x, branch, frames)


def causal_depthwise_conv(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """Causal depthwise conv1d on token-major ``B x L x C`` (``weight`` ``C x 1 x K``):
    ``y[t] = bias + sum_k weight[k] * x[t - (K-1) + k]`` with zeros before the start, i.e.
    ``conv1d(padding=K-1)[..., :L]`` without leaving the token-major layout."""
    k = weight.shape[-1]
    length = x.shape[1]
    w = weight[:, 0, :].to(x.dtype)  # C x K
    y = x * w[:, k - 1] if bias is None else torch.addcmul(bias.to(x.dtype), x, w[:, k - 1])
    if k > 1:
        xp = F.pad(x, (0, 0, k - 1, 0))
        for j in range(k - 1):
            y = y.addcmul_(xp[:, j : j + length], w[:, j])
    return y


def _at_least_fp32(t: torch.Tensor) -> torch.Tensor:
    """SSM parameters stay in float32 (or float64) whatever the autocast/model dtype."""
    return t if t.dtype in (torch.float32, torch.float64) else t.float()


class CSTMambaMixer(nn.Module):
    """Mamba mixer with forward, backward and temporal-interleaved scans (see module doc).

    Args:
        d_model: token width C; d_state: SSM state size N; d_conv: causal conv width;
        expand: inner width ``E = expand * C``; dt_rank: rank of the step-size projection
            (``ceil(C / 16)`` when None).
        scan_backend: selective-scan implementation (``"auto"`` uses ``mamba_ssm`` on CUDA).
    """

    # registered by name in __init__: log(-A) ``E x N`` and skip ``D`` ``E`` of each branch
    A_log: nn.Parameter
    A_b_log: nn.Parameter
    A_s_log: nn.Parameter
    D: nn.Parameter
    D_b: nn.Parameter
    D_s: nn.Parameter

    def __init__(
        self,
        d_model: int,
        d_state: int = 16,
        d_conv: int = 4,
        expand: int = 2,
        dt_rank: int | None = None,
        dt_min: float = 0.001,
        dt_max: float = 0.1,
        dt_init_floor: float = 1e-4,
        scan_backend: Backend = "auto",
    ) -> None:
        super().__init__()
        self.d_model, self.d_state, self.d_conv = d_model, d_state, d_conv
        self.d_inner = e = expand * d_model
        self.dt_rank = r = dt_rank if dt_rank is not None else math.ceil(d_model / 16)
        self.scan_backend: Backend = scan_backend
        # Own parameters first, in the order of the released state dicts.
        a_init = torch.log(torch.arange(1, d_state + 1, dtype=torch.float32)).repeat(e, 1)  # S4D-real: A = -(1..N)
        for sfx in _SUFFIX.values():
            self.register_parameter(f"A{sfx}_log" if sfx else "A_log", nn.Parameter(a_init.clone()))
            self.register_parameter(f"D{sfx}", nn.Parameter(torch.ones(e)))
        self.in_proj = nn.Linear(d_model, 2 * e, bias=False)
        for sfx in _SUFFIX.values():
            conv = nn.Conv1d(e, e, d_conv, groups=e, padding=d_conv - 1)
            x_proj = nn.Linear(e, r + 2 * d_state, bias=False)
            dt_proj = nn.Linear(r, e)
            self.add_module(f"conv1d{sfx}", conv)
            self.add_module(f"x_proj{sfx}", x_proj)
            self.add_module(f"dt_proj{sfx}", dt_proj)
        self.out_proj = nn.Linear(e, d_model, bias=False)
        self._init_weights(dt_min, dt_max, dt_init_floor)

    def _init_weights(self, dt_min: float, dt_max: float, floor: float) -> None:
        """Linear layers trunc-normal(0.02) as in ReSurgSAM2; step-size projections as in Mamba
        (so that ``softplus(dt_bias)`` is log-uniform in ``[dt_min, dt_max]``)."""
        for name, m in self.named_children():
            if isinstance(m, nn.Linear) and not name.startswith("dt_proj"):
                nn.init.trunc_normal_(m.weight, std=0.02)
        std = self.dt_rank**-0.5
        for sfx in _SUFFIX.values():
            proj: nn.Linear = getattr(self, f"dt_proj{sfx}")
            nn.init.uniform_(proj.weight, -std, std)
            dt = torch.exp(torch.rand(self.d_inner) * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min))
            dt = dt.clamp(min=floor)
            with torch.no_grad():
                proj.bias.copy_(dt + torch.log(-torch.expm1(-dt)))  # inverse softplus

    def _branch_params(self) -> tuple[torch.Tensor, ...]:
        """The three branches' parameters stacked: conv weight ``3E x 1 x K``, conv bias ``3E``,
        x_proj ``3 x (R+2N) x E``, dt_proj ``3 x E x R``, dt bias ``3E``, A ``3E x N``, D ``3E``."""
        sfx = list(_SUFFIX.values())
        get = lambda stem: [getattr(self, f"{stem}{s}") for s in sfx]  # noqa: E731
        convs, xps, dts = get("conv1d"), get("x_proj"), get("dt_proj")
        a_logs: list[torch.Tensor] = [self.A_log, self.A_b_log, self.A_s_log]
        ds: list[torch.Tensor] = [self.D, self.D_b, self.D_s]
        return (
            torch.cat([c.weight for c in convs]),
            torch.cat([c.bias for c in convs]),
            torch.stack([p.weight for p in xps]),
            torch.stack([p.weight for p in dts]),
            _at_least_fp32(torch.cat([p.bias for p in dts])),
            -torch.exp(_at_least_fp32(torch.cat(a_logs))),
            _at_least_fp32(torch.cat(ds)),
        )

    def branch_outputs(self, x: torch.Tensor, frames: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Gated scan output of each branch, back in frame-major order: 3 x ``B x L x E``.

        ``x``: ``B x L x C`` frame-major tokens of ``frames`` frames (``L`` divisible by it).
        """
        b, length, _ = x.shape
        if length % frames:
            raise ValueError(f"{length} tokens do not split into {frames} frames")
        e, n, r = self.d_inner, self.d_state, self.dt_rank
        xz = self.in_proj(x)  # B x L x 2E
        seqs = [to_branch_order(xz, br, frames) for br in BRANCHES]
        xs = torch.cat([s[..., :e] for s in seqs], -1)  # B x L x 3E, branches side by side
        zs = torch.cat([s[..., e:] for s in seqs], -1)
        conv_w, conv_b, xp_w, dt_w, dt_b, a, d = self._branch_params()
        u = F.silu(causal_depthwise_conv(xs, conv_w, conv_b))  # each branch in its own order
        x_dbl = torch.einsum("blge,gre->blgr", u.reshape(b, length, 3, e), xp_w)  # B x L x 3 x (R+2N)
        dt = torch.einsum("blgr,ger->blge", x_dbl[..., :r], dt_w).reshape(b, length, 3 * e)
        bm = x_dbl[..., r : r + n].permute(0, 2, 3, 1)  # B x 3 x N x L: one group per branch
        cm = x_dbl[..., r + n :].permute(0, 2, 3, 1)
        # Transposed views of token-major memory: the scan reads them without copies.
        y = selective_scan_fn(
            u.transpose(1, 2),
            dt.transpose(1, 2),
            a,
            bm,
            cm,
            d,
            zs.transpose(1, 2),
            delta_bias=dt_b,
            delta_softplus=True,
            backend=self.scan_backend,
        )
        assert isinstance(y, torch.Tensor)  # no last state was asked for
        y = y.transpose(1, 2)  # B x L x 3E
        yf, yb, ys = (from_branch_order(y[..., i * e : (i + 1) * e], br, frames) for i, br in enumerate(BRANCHES))
        return yf, yb, ys

    def forward(self, x: torch.Tensor, frames: int) -> torch.Tensor:
        """``B x L x C`` frame-major tokens of ``frames`` frames -> ``B x L x C``."""
        yf, yb, ys = self.branch_outputs(x, frames)
        return self.out_proj((yf + yb + ys) / 3)


class GRN(nn.Module):
    """Global Response Normalisation as ReSurgSAM2 applies it to ``B x N x C`` tokens.

    ``G`` is the L2 norm over tokens AND channels (ConvNeXt-V2's spatial norm applied to a
    3-D tensor), so ``G / mean(G)`` is ~1 and the layer is ~``(1 + gamma) x + beta``. Kept
    exactly so released weights behave as they were trained.
    """

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.gamma = nn.Parameter(torch.zeros(1, 1, dim))
        self.beta = nn.Parameter(torch.zeros(1, 1, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        g = torch.linalg.vector_norm(x, ord=2, dim=(1, 2), keepdim=True)
        nx = g / (g.mean(dim=-1, keepdim=True) + 1e-6)
        return self.gamma * (x * nx) + self.beta + x


class DWConv(nn.Module):
    """Per-frame depthwise ``k x k`` conv of frame-major tokens ``B x T*h*w x C``."""

    def __init__(self, dim: int, kernel_size: int = 7) -> None:
        super().__init__()
        self.dwconv = nn.Conv2d(dim, dim, kernel_size, padding=kernel_size // 2, groups=dim)

    def forward(self, x: torch.Tensor, vol: tuple[int, int, int]) -> torch.Tensor:
        t, h, w = vol
        b, _, c = x.shape
        y = self.dwconv(x.reshape(b * t, h, w, c).permute(0, 3, 1, 2))
        return y.permute(0, 2, 3, 1).reshape(b, t * h * w, c)


class DWMLP(nn.Module):
    """Depthwise conv -> LayerNorm -> Linear C->hC -> GELU -> GRN -> Linear hC->C."""

    def __init__(self, dim: int, hidden: int, kernel_size: int = 7) -> None:
        super().__init__()
        self.dwconv = DWConv(dim, kernel_size)
        self.norm = nn.LayerNorm(dim)
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.grn = GRN(hidden)
        self.fc2 = nn.Linear(hidden, dim)
        for m in (self.fc1, self.fc2, self.dwconv.dwconv):
            nn.init.trunc_normal_(m.weight, std=0.02)
            if m.bias is not None:  # all three have one
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor, vol: tuple[int, int, int]) -> torch.Tensor:
        """``B x T*h*w x C`` with ``vol = (T, h, w)`` -> same shape."""
        return self.fc2(self.grn(self.act(self.fc1(self.norm(self.dwconv(x, vol))))))


class MambaLayer(nn.Module):
    """``x += DropPath(Mamba(LN(x))); x += DropPath(DWMLP(LN(x)))`` over frame-major tokens."""

    def __init__(
        self,
        dim: int,
        d_state: int = 16,
        d_conv: int = 4,
        expand: int = 2,
        dt_rank: int | None = None,
        mlp_ratio: int = 4,
        kernel_size: int = 7,
        drop_path: float = 0.0,
        scan_backend: Backend = "auto",
    ) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.mamba = CSTMambaMixer(dim, d_state, d_conv, expand, dt_rank, scan_backend=scan_backend)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = DWMLP(dim, dim * mlp_ratio, kernel_size)
        self.drop_path = DropPath(drop_path)

    def forward(self, x: torch.Tensor, vol: tuple[int, int, int]) -> torch.Tensor:
        """``B x T*h*w x C`` tokens, ``vol = (T, h, w)`` -> same shape."""
        x = x + self.drop_path(self.mamba(self.norm1(x), vol[0]))
        return x + self.drop_path(self.mlp(self.norm2(x), vol))


__all__ = [
    "BRANCHES",
    "to_branch_order",
    "from_branch_order",
    "CSTMambaMixer",
    "GRN",
    "DWConv",
    "DWMLP",
    "MambaLayer",
]
