"""Mamba's selective scan (S6): a pure-PyTorch implementation and the CUDA-kernel dispatch.

The recurrence, per batch ``b``, channel ``d`` and state ``n`` (time ``t = 0 .. L-1``)::

    dt[t] = softplus(delta[t] + delta_bias)            (each step optional)
    h[t]  = exp(dt[t] * A[d, n]) * h[t-1] + dt[t] * B[n, t] * u[t]      (h[-1] = 0)
    y[t]  = sum_n C[n, t] * h[t, n] + D[d] * u[t]
    y[t]  = y[t] * silu(z[t])                           (when z is given)

:func:`selective_scan_ref` computes it on any device; :func:`selective_scan_fn` uses
``mamba_ssm``'s fused CUDA kernel when it is importable and the inputs are on CUDA, and the
pure-PyTorch scan otherwise. Both take exactly the arguments of
``mamba_ssm.ops.selective_scan_interface.selective_scan_fn``, so they are interchangeable.

``B`` and ``C`` may be ``batch x N x L`` (shared by all channels) or grouped,
``batch x G x N x L``: channel ``d`` then uses group ``d // (D / G)``. The CSTMamba mixer
uses groups to run its three scan branches in one call.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Literal

import torch
import torch.nn.functional as F
from torch.autograd.function import once_differentiable

Backend = Literal["auto", "kernel", "torch"]
ScanMethod = Literal["auto", "sequential", "doubling"]

# Time steps handled per block of the pure-PyTorch scan: bounds the ``chunk x B x D x N``
# temporaries (a few MB at CSTMamba's sizes) so they stay in cache.
DEFAULT_CHUNK = 64


def selective_scan_ref(
    u: torch.Tensor,
    delta: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor | None = None,
    z: torch.Tensor | None = None,
    delta_bias: torch.Tensor | None = None,
    delta_softplus: bool = False,
    return_last_state: bool = False,
    chunk: int = DEFAULT_CHUNK,
    method: ScanMethod = "auto",
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Selective scan in plain PyTorch (differentiable, any device).

    Args:
        u: ``Bt x D x L`` input; delta: ``Bt x D x L`` step sizes (before bias/softplus).
        A: ``D x N`` real state matrix (negative for a stable scan).
        B, C: ``Bt x N x L`` or ``Bt x G x N x L`` input-dependent projections.
        D: ``D`` skip weights; z: ``Bt x D x L`` gate; delta_bias: ``D``.
        return_last_state: also return the final state ``Bt x D x N``.
        chunk: time steps per block (memory/speed trade-off only; results do not depend on it).
        method: how a block is scanned: ``"sequential"`` (one in-place op per step, best on
            CPU), ``"doubling"`` (log-depth, best on GPUs) or ``"auto"`` (by device).

    Returns:
        ``Bt x D x L`` output in ``u``'s dtype (and the last state when asked). Computed in
        float32, or float64 for float64 inputs.
    """
    if A.is_complex():
        raise NotImplementedError("complex A is not supported")
    if u.dim() != 3 or delta.shape != u.shape:
        raise ValueError(f"u and delta must both be batch x D x L, got {tuple(u.shape)} and {tuple(delta.shape)}")
    bt, d, length = u.shape
    n = A.shape[1]
    if A.shape != (d, n):
        raise ValueError(f"A must be D x N = {d} x N, got {tuple(A.shape)}")
    ct = torch.promote_types(u.dtype, torch.float32)
    Bg, Cg = _grouped(B, bt, n, length), _grouped(C, bt, n, length)
    g = Bg.shape[1]
    if Cg.shape[1] != g or d % g:
        raise ValueError(f"B/C groups ({Bg.shape[1]}, {Cg.shape[1]}) must be equal and divide D={d}")
    h = d // g

    # Everything runs time-major (L x Bt x D) so that one time step is one contiguous slice.
    # Inputs that are transposed views of token-major ``Bt x L x D`` memory (as the CSTMamba
    # mixer passes them) need no copy for this.
    u_t = u.permute(2, 0, 1).to(ct)
    dt = delta.permute(2, 0, 1).to(ct)
    if delta_bias is not None:
        dt = dt + delta_bias.to(ct)
    if delta_softplus:
        dt = F.softplus(dt)
    shape5 = (length, bt, g, h, 1)
    a = A.to(ct).reshape(1, 1, g, h, n)
    b_t = Bg.to(ct).permute(3, 0, 1, 2).unsqueeze(3).contiguous()  # L x Bt x G x 1 x N
    c_t = Cg.to(ct).permute(3, 0, 1, 2).unsqueeze(3).contiguous()
    if method == "auto":
        method = "sequential" if u.device.type == "cpu" else "doubling"
    elif method not in ("sequential", "doubling"):
        raise ValueError(f"unknown scan method {method!r}; choose auto, sequential or doubling")
    y, state = _ScanCore.apply(dt.reshape(shape5), u_t.reshape(shape5), a, b_t, c_t, max(1, int(chunk)), method)
    y = y.view(length, bt, d)
    if torch.is_grad_enabled() and (y.requires_grad or any(t is not None and t.requires_grad for t in (D, z))):
        if D is not None:
            y = y + u_t * D.to(ct)
        if z is not None:
            y = y * F.silu(z.permute(2, 0, 1).to(ct))
    else:  # inference: update in place
        if D is not None:
            y.addcmul_(u_t, D.to(ct))
        if z is not None:
            y.mul_(F.silu(z.permute(2, 0, 1).to(ct)))
    y = y.permute(1, 2, 0).to(u.dtype)  # Bt x D x L (a view of the time-major result)
    if return_last_state:
        return y, state.reshape(bt, d, n)
    return y


def _grouped(t: torch.Tensor, bt: int, n: int, length: int) -> torch.Tensor:
    """``Bt x N x L`` -> ``Bt x 1 x N x L``; checks a grouped ``Bt x G x N x L``."""
    if t.dim() == 3:
        t = t.unsqueeze(1)
    if t.dim() != 4 or t.shape[0] != bt or t.shape[2:] != (n, length):
        raise ValueError(f"B/C must be batch x N x L or batch x G x N x L with N={n}, L={length}; got {tuple(t.shape)}")
    return t


def _scan(decay: torch.Tensor, inp: torch.Tensor, state: torch.Tensor, method: str) -> torch.Tensor:
    """All states of ``h[k] = decay[k] * h[k-1] + inp[k]`` (``h[-1] = state``), ``K x ...``.

    ``"sequential"``: a loop of one fused in-place op per step, written over ``inp`` (CPU);
    ``"doubling"``: recursive doubling (Hillis-Steele), ``log2(K)`` whole-block steps, few
    kernel launches (GPU). Never tracked by autograd (:class:`_ScanCore` has its own backward).
    """
    if method == "sequential":
        steps, decays = inp.unbind(0), decay.unbind(0)
        steps[0].addcmul_(decays[0], state)
        for i in range(1, len(steps)):
            steps[i].addcmul_(decays[i], steps[i - 1])
        return inp
    acc, x = decay, inp
    step = 1
    while step < x.shape[0]:
        x = torch.cat([x[:step], x[step:] + acc[step:] * x[:-step]], 0)
        acc = torch.cat([acc[:step], acc[step:] * acc[:-step]], 0)
        step *= 2
    return x + acc * state  # acc[k] is now the product of decays 0..k: carry the block's input state


class _ScanCore(torch.autograd.Function):
    """``y[t] = sum_n C[t, n] h[t, n]`` with ``h[t] = exp(dt[t] A) h[t-1] + dt[t] u[t] B[t]``.

    Time-major shapes: dt, u ``L x Bt x G x H x 1``; a (= A) ``1 x 1 x G x H x N``; b, c
    ``L x Bt x G x 1 x N``. Returns (``y`` ``L x Bt x G x H x 1``, last state ``Bt x G x H x N``).

    The scan runs in blocks of ``chunk`` steps. Only the state entering each block is kept;
    the backward pass recomputes a block's states from it and runs the adjoint recurrence
    ``lam[t] = C[t] gy[t] + exp(dt[t+1] A) lam[t+1]`` backwards in time, so training memory
    is O(L x D) rather than O(L x D x N).
    """

    @staticmethod
    def forward(ctx, dt, u, a, b, c, chunk, method):
        length, bt, g, h = dt.shape[:4]
        n = a.shape[-1]
        k_max = min(chunk, length)
        cpu = method == "sequential"
        # Buffers reused by every block: fresh multi-MB temporaries would cost a page fault each.
        decay_buf = dt.new_empty((k_max, bt, g, h, n)) if cpu else None
        hs_buf = dt.new_empty((k_max, bt, g, h, n)) if cpu else None
        y = dt.new_empty((length, bt, g, h, 1))
        state = dt.new_zeros((bt, g, h, n))
        starts = []
        for s in range(0, length, k_max):
            k = min(k_max, length - s)
            starts.append(state.clone())
            if cpu:
                dec, hk = decay_buf[:k], hs_buf[:k]
                torch.mul(dt[s : s + k], a, out=dec).exp_()
                torch.mul(dt[s : s + k] * u[s : s + k], b[s : s + k], out=hk)
                state.copy_(_scan(dec, hk, state, method)[k - 1])
            else:
                hk = _scan(torch.exp(dt[s : s + k] * a), dt[s : s + k] * u[s : s + k] * b[s : s + k], state, method)
                state = hk[k - 1]
            rows = k * bt * g
            torch.matmul(hk.view(rows, h, n), c[s : s + k].reshape(rows, n, 1), out=y[s : s + k].view(rows, h, 1))
        ctx.chunk, ctx.method = k_max, method
        ctx.save_for_backward(dt, u, a, b, c, torch.stack(starts))
        ctx.mark_non_differentiable(state)
        return y, state

    @staticmethod
    @once_differentiable
    def backward(ctx, gy, _gstate):
        dt, u, a, b, c, starts = ctx.saved_tensors
        length, k_max = dt.shape[0], ctx.chunk
        gdt, gu, gb, gc = (torch.zeros_like(t) for t in (dt, u, b, c))
        ga = torch.zeros_like(a)
        carry = torch.zeros_like(starts[0])  # dL/dh flowing back from the next block
        for i, s in reversed(list(enumerate(range(0, length, k_max)))):
            e = min(s + k_max, length)
            dt_c, u_c, b_c, c_c, gy_c = dt[s:e], u[s:e], b[s:e], c[s:e], gy[s:e]
            dec = torch.exp(dt_c * a)
            du = dt_c * u_c
            hs = _scan(dec, du * b_c, starts[i], ctx.method)  # this block's states, recomputed
            # adjoint, newest step first: lam[t] = C[t] gy[t] + dec[t+1] lam[t+1]
            dec_rev = torch.cat([torch.ones_like(dec[:1]), dec[1:].flip(0)])
            lam = _scan(dec_rev, (c_c * gy_c).flip(0), carry, ctx.method).flip(0)
            carry = dec[0] * lam[0]
            h_prev = torch.cat([starts[i][None], hs[:-1]])
            g_arg = lam * h_prev * dec  # d loss / d (dt * A)
            gdt[s:e] = (g_arg * a).sum(-1, keepdim=True) + (lam * b_c).sum(-1, keepdim=True) * u_c
            gu[s:e] = (lam * b_c).sum(-1, keepdim=True) * dt_c
            ga += (g_arg * dt_c).sum(dim=(0, 1), keepdim=True)
            gb[s:e] = (lam * du).sum(dim=3, keepdim=True)
            gc[s:e] = (hs * gy_c).sum(dim=3, keepdim=True)
        return gdt, gu, ga, gb, gc, None, None


# ------------------------------------------------------------------ kernel dispatch
@functools.lru_cache(maxsize=1)
def _kernel() -> Callable[..., torch.Tensor] | None:
    """``mamba_ssm``'s CUDA ``selective_scan_fn`` if it can be imported, else None."""
    try:
        from mamba_ssm.ops.selective_scan_interface import selective_scan_fn as fn
    except Exception:  # ImportError, or a build without its CUDA extension
        return None
    return fn


def kernel_available() -> bool:
    """True when ``mamba_ssm``'s fused selective-scan kernel can be imported."""
    return _kernel() is not None


def choose_backend(device: torch.device, kernel_ok: bool, requested: Backend = "auto") -> str:
    """Which implementation runs: ``"kernel"`` or ``"torch"``.

    ``"auto"`` takes the kernel only for CUDA tensors when it is importable; ``"kernel"``
    insists on it (and fails clearly where it cannot run); ``"torch"`` forces the fallback.
    """
    if requested == "torch":
        return "torch"
    if requested == "kernel":
        if not kernel_ok:
            raise RuntimeError(
                "the mamba_ssm selective-scan kernel is not importable; install mamba_ssm "
                "(CUDA builds only) or use backend='torch'"
            )
        if device.type != "cuda":
            raise RuntimeError(f"the mamba_ssm kernel needs CUDA tensors, got device {device}")
        return "kernel"
    if requested != "auto":
        raise ValueError(f"unknown selective-scan backend {requested!r}; choose auto, kernel or torch")
    return "kernel" if kernel_ok and device.type == "cuda" else "torch"


def selective_scan_fn(
    u: torch.Tensor,
    delta: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor | None = None,
    z: torch.Tensor | None = None,
    delta_bias: torch.Tensor | None = None,
    delta_softplus: bool = False,
    return_last_state: bool = False,
    *,
    backend: Backend = "auto",
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Selective scan on the best available implementation (see :func:`choose_backend`).

    Same arguments and result as ``mamba_ssm``'s ``selective_scan_fn`` and
    :func:`selective_scan_ref`.
    """
    if choose_backend(u.device, kernel_available(), backend) == "kernel":
        fn = _kernel()
        assert fn is not None
        return fn(u, delta, A, B, C, D, z, delta_bias, delta_softplus, return_last_state)
    return selective_scan_ref(u, delta, A, B, C, D, z, delta_bias, delta_softplus, return_last_state)


__all__ = ["selective_scan_fn", "selective_scan_ref", "kernel_available", "choose_backend", "DEFAULT_CHUNK"]
