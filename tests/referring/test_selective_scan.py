"""The pure-PyTorch selective scan against a naive per-token recurrence, and kernel dispatch."""

from __future__ import annotations

import inspect

import pytest
import torch

import surgsam.referring.selective_scan as ss
from surgsam.referring.selective_scan import choose_backend, selective_scan_fn, selective_scan_ref


def naive_scan(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False):
    """Token-by-token Mamba S6 recurrence, written out (float64 in these tests)."""
    b, d, length = u.shape
    n = A.shape[1]
    if B.dim() == 3:
        B, C = B[:, None], C[:, None]
    per_group = d // B.shape[1]
    dt = delta + (delta_bias[:, None] if delta_bias is not None else 0)
    if delta_softplus:
        dt = torch.log1p(torch.exp(dt))
    h = u.new_zeros(b, d, n)
    ys = []
    for t in range(length):
        bt = B[..., t].repeat_interleave(per_group, dim=1)  # b x d x n
        ct = C[..., t].repeat_interleave(per_group, dim=1)
        h = torch.exp(dt[:, :, t, None] * A) * h + dt[:, :, t, None] * bt * u[:, :, t, None]
        y = (h * ct).sum(-1)
        if D is not None:
            y = y + D * u[:, :, t]
        if z is not None:
            y = y * z[:, :, t] * torch.sigmoid(z[:, :, t])
        ys.append(y)
    return torch.stack(ys, -1), h


def _inputs(b=2, d=6, n=4, length=29, groups=None, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    r = lambda *s: torch.randn(*s, generator=g, dtype=dtype)  # noqa: E731
    bc = (b, groups, n, length) if groups else (b, n, length)
    return dict(
        u=r(b, d, length),
        delta=r(b, d, length),
        A=-torch.rand(d, n, generator=g, dtype=dtype) * 4,
        B=r(*bc),
        C=r(*bc),
        D=r(d),
        z=r(b, d, length),
        delta_bias=r(d),
    )


@pytest.mark.parametrize("groups", [None, 3])
@pytest.mark.parametrize("chunk", [1, 7, 64])
@pytest.mark.parametrize("method", ["sequential", "doubling"])
def test_matches_naive_recurrence(groups, chunk, method):
    x = _inputs(groups=groups)
    want, want_state = naive_scan(**x, delta_softplus=True)
    y, state = selective_scan_ref(**x, delta_softplus=True, return_last_state=True, chunk=chunk, method=method)
    assert y.shape == want.shape and y.dtype == torch.float64
    torch.testing.assert_close(y, want, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(state, want_state, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize(
    "use_d,use_z,bias,softplus", [(False, False, False, False), (True, False, True, False), (False, True, False, True)]
)
def test_optional_terms(use_d, use_z, bias, softplus):
    x = _inputs(seed=1, length=11)
    x["delta"] = x["delta"].abs()  # a positive step without softplus
    if not use_d:
        x["D"] = None
    if not use_z:
        x["z"] = None
    if not bias:
        x["delta_bias"] = None
    want, _ = naive_scan(**x, delta_softplus=softplus)
    torch.testing.assert_close(selective_scan_ref(**x, delta_softplus=softplus), want, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("method", ["sequential", "doubling"])
def test_gradients_match_naive(method):
    x = _inputs(b=1, d=4, n=3, length=13, groups=2, seed=2)
    leaves = ["u", "delta", "A", "B", "C", "D", "z", "delta_bias"]
    x1 = {k: v.clone().requires_grad_(k in leaves) for k, v in x.items()}
    x2 = {k: v.clone().requires_grad_(k in leaves) for k, v in x.items()}
    w = torch.randn(1, 4, 13, dtype=torch.float64)
    (selective_scan_ref(**x1, delta_softplus=True, chunk=4, method=method) * w).sum().backward()
    (naive_scan(**x2, delta_softplus=True)[0] * w).sum().backward()
    for k in leaves:
        torch.testing.assert_close(x1[k].grad, x2[k].grad, rtol=1e-9, atol=1e-9, msg=k)


def test_float32_and_layouts():
    x = {k: v.float() for k, v in _inputs(seed=3).items()}
    want, _ = naive_scan(**{k: v.double() for k, v in x.items()}, delta_softplus=True)
    # token-major memory seen through transposed views (how the CSTMamba mixer calls it)
    token_major = lambda t: t.transpose(1, 2).contiguous().transpose(1, 2)  # noqa: E731
    xt = dict(x, u=token_major(x["u"]), z=token_major(x["z"]))
    y = selective_scan_ref(**xt, delta_softplus=True)
    assert y.dtype == torch.float32
    torch.testing.assert_close(y.double(), want, rtol=1e-4, atol=1e-4)


def test_bad_shapes_are_refused():
    x = _inputs()
    with pytest.raises(ValueError, match="A must be"):
        selective_scan_ref(**dict(x, A=x["A"][:4]))
    with pytest.raises(ValueError, match="groups"):
        selective_scan_ref(
            **dict(x, B=x["B"].unsqueeze(1).repeat(1, 4, 1, 1), C=x["C"].unsqueeze(1).repeat(1, 4, 1, 1))
        )
    with pytest.raises(ValueError, match="scan method"):
        selective_scan_ref(**x, method="parallel")  # type: ignore[arg-type]


# ------------------------------------------------------------------ dispatch
def test_choose_backend():
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert choose_backend(cpu, kernel_ok=True) == "torch"
    assert choose_backend(cuda, kernel_ok=True) == "kernel"
    assert choose_backend(cuda, kernel_ok=False) == "torch"
    assert choose_backend(cuda, kernel_ok=True, requested="torch") == "torch"
    with pytest.raises(RuntimeError, match="mamba_ssm"):
        choose_backend(cuda, kernel_ok=False, requested="kernel")
    with pytest.raises(RuntimeError, match="CUDA"):
        choose_backend(cpu, kernel_ok=True, requested="kernel")
    with pytest.raises(ValueError, match="unknown"):
        choose_backend(cpu, kernel_ok=True, requested="triton")  # type: ignore[arg-type]


def test_kernel_absent_here_and_auto_falls_back():
    assert ss.kernel_available() is False  # mamba_ssm is not installed in this environment
    x = _inputs(seed=4)
    torch.testing.assert_close(
        selective_scan_fn(**x, delta_softplus=True), selective_scan_ref(**x, delta_softplus=True)
    )
    with pytest.raises(RuntimeError, match="mamba_ssm"):
        selective_scan_fn(**x, backend="kernel")


def test_kernel_receives_the_same_arguments(monkeypatch):
    calls = []

    def fake_kernel(*args):
        calls.append(args)
        return "kernel-output"

    monkeypatch.setattr(ss, "_kernel", lambda: fake_kernel)
    monkeypatch.setattr(ss, "choose_backend", lambda device, ok, requested: "kernel" if ok else "torch")
    x = _inputs(seed=5)
    out = selective_scan_fn(x["u"], x["delta"], x["A"], x["B"], x["C"], x["D"], x["z"], x["delta_bias"], True, False)
    assert out == "kernel-output"
    (args,) = calls
    want = (x["u"], x["delta"], x["A"], x["B"], x["C"], x["D"], x["z"], x["delta_bias"], True, False)
    assert len(args) == len(want) and all(a is b for a, b in zip(args, want))


def test_signature_matches_mamba_ssm():
    names = ["u", "delta", "A", "B", "C", "D", "z", "delta_bias", "delta_softplus", "return_last_state"]
    fn = [p for p in inspect.signature(selective_scan_fn).parameters.values() if p.kind != p.KEYWORD_ONLY]
    ref = list(inspect.signature(selective_scan_ref).parameters)
    assert [p.name for p in fn] == names
    assert ref[: len(names)] == names
    defaults = {p.name: p.default for p in fn if p.default is not inspect.Parameter.empty}
    assert defaults == {"D": None, "z": None, "delta_bias": None, "delta_softplus": False, "return_last_state": False}
