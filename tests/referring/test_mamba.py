"""CSTMamba's three-branch mixer against a naive per-token recurrence; GRN, DW-conv MLP, layer."""

from __future__ import annotations

import math

import pytest
import torch

from surgsam.referring.mamba import (
    BRANCHES,
    GRN,
    CSTMambaMixer,
    DWMLP,
    MambaLayer,
    causal_depthwise_conv,
    from_branch_order,
    to_branch_order,
)

T, P = 3, 4  # frames, tokens per frame
L = T * P


def scan_order(branch: str) -> list[int]:
    """Frame-major token index visited at each scan step, written out by hand."""
    if branch == "forward":
        return list(range(L))
    if branch == "backward":
        return list(reversed(range(L)))
    return [t * P + p for p in range(P) for t in range(T)]  # the T tokens of each position together


def naive_branch(m: CSTMambaMixer, x: torch.Tensor, branch: str) -> torch.Tensor:
    """One branch, token by token: ``B x L x C`` -> gated output ``B x L x E`` in frame-major order."""
    sfx = {"forward": "", "backward": "_b", "temporal": "_s"}[branch]
    conv, xp, dtp = getattr(m, f"conv1d{sfx}"), getattr(m, f"x_proj{sfx}"), getattr(m, f"dt_proj{sfx}")
    a = -torch.exp(getattr(m, f"A{sfx}_log" if sfx else "A_log"))
    dskip = getattr(m, f"D{sfx}")
    e, n, r, k = m.d_inner, m.d_state, m.dt_rank, m.d_conv
    order = scan_order(branch)
    out = torch.zeros(x.shape[0], L, e, dtype=x.dtype)
    for b in range(x.shape[0]):
        xz = [m.in_proj(x[b, i]) for i in order]  # the sequence in scan order
        h = torch.zeros(e, n, dtype=x.dtype)
        for s, tok in enumerate(order):
            # causal depthwise conv over the previous k-1 steps of THIS order
            acc = conv.bias.clone()
            for j in range(k):
                src = s - (k - 1) + j
                if src >= 0:
                    acc = acc + conv.weight[:, 0, j] * xz[src][:e]
            u = acc * torch.sigmoid(acc)
            proj = xp.weight @ u
            dt = torch.nn.functional.softplus(dtp.weight @ proj[:r] + dtp.bias)
            bvec, cvec = proj[r : r + n], proj[r + n :]
            h = torch.exp(dt[:, None] * a) * h + dt[:, None] * bvec[None, :] * u[:, None]
            y = h @ cvec + dskip * u
            z = xz[s][e:]
            out[b, tok] = y * z * torch.sigmoid(z)
    return out


@pytest.fixture(scope="module")
def mixer():
    torch.manual_seed(0)
    m = CSTMambaMixer(d_model=6, d_state=3, d_conv=3, expand=2, dt_rank=2).double()
    with torch.no_grad():  # non-default values everywhere, so every parameter matters
        for p in m.parameters():
            p.add_(0.3 * torch.randn_like(p))
    return m


def test_branch_orders_by_hand():
    x = torch.arange(L).view(1, L, 1)
    assert to_branch_order(x, "temporal", T).flatten().tolist() == [0, 4, 8, 1, 5, 9, 2, 6, 10, 3, 7, 11]
    assert to_branch_order(x, "backward", T).flatten().tolist() == list(range(L))[::-1]
    for br in BRANCHES:
        assert to_branch_order(x, br, T).flatten().tolist() == scan_order(br)
        assert torch.equal(from_branch_order(to_branch_order(x, br, T), br, T), x)


@pytest.mark.parametrize("branch", BRANCHES)
def test_each_branch_matches_naive_recurrence(mixer, branch):
    x = torch.randn(2, L, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    got = mixer.branch_outputs(x, T)[BRANCHES.index(branch)]
    torch.testing.assert_close(got, naive_branch(mixer, x, branch), rtol=1e-10, atol=1e-10)


def test_mixer_is_out_proj_of_branch_mean(mixer):
    x = torch.randn(2, L, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    want = mixer.out_proj(sum(naive_branch(mixer, x, br) for br in BRANCHES) / 3)
    torch.testing.assert_close(mixer(x, T), want, rtol=1e-10, atol=1e-10)
    # the branches differ, so the mean is not one of them
    outs = mixer.branch_outputs(x, T)
    assert (outs[0] - outs[1]).abs().max() > 1e-3 and (outs[0] - outs[2]).abs().max() > 1e-3


def test_mixer_gradients_reach_all_branches(mixer):
    x = torch.randn(1, L, 6, dtype=torch.float64, requires_grad=True)
    mixer.zero_grad()
    mixer(x, T).square().sum().backward()
    for name, p in mixer.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    mixer.zero_grad()


def test_causal_conv_is_conv1d():
    x, w, b = torch.randn(2, 9, 5), torch.randn(5, 1, 4), torch.randn(5)
    want = torch.nn.functional.conv1d(x.transpose(1, 2), w, b, padding=3, groups=5)[..., :9].transpose(1, 2)
    torch.testing.assert_close(causal_depthwise_conv(x, w, b), want)


def test_grn_formula():
    g = GRN(4)
    with torch.no_grad():
        g.gamma.copy_(torch.tensor([0.5, -1.0, 2.0, 0.0]).view(1, 1, 4))
        g.beta.copy_(torch.tensor([0.1, 0.2, 0.3, 0.4]).view(1, 1, 4))
    x = torch.randn(2, 7, 4, dtype=torch.float32)
    gx = x.pow(2).sum(dim=(1, 2), keepdim=True).sqrt()  # over tokens AND channels (ReSurgSAM2)
    want = g.gamma * x * (gx / (gx + 1e-6)) + g.beta + x
    torch.testing.assert_close(g(x), want)


def test_dwmlp_convolves_each_frame_separately():
    torch.manual_seed(0)
    mlp = DWMLP(8, 16, kernel_size=3).eval()
    x = torch.randn(1, 2 * 9, 8)
    y = mlp(x, (2, 3, 3))
    x2 = x.clone()
    x2[:, 9:] += 1.0  # change frame 1 only
    y2 = mlp(x2, (2, 3, 3))
    # GRN's global norm couples frames only through G/(G+eps) ~ 1
    torch.testing.assert_close(y2[:, :9], y[:, :9], rtol=1e-5, atol=1e-5)
    assert (y2[:, 9:] - y[:, 9:]).abs().max() > 1e-3


def test_mamba_layer_residuals_and_drop_path():
    torch.manual_seed(0)
    layer = MambaLayer(8, d_state=2, d_conv=2, expand=1, dt_rank=1, mlp_ratio=2, kernel_size=3, drop_path=0.5)
    x = torch.randn(4, 2 * 4, 8)
    layer.eval()
    y = layer(x, (2, 2, 2))
    mid = x + layer.mamba(layer.norm1(x), 2)
    torch.testing.assert_close(y, mid + layer.mlp(layer.norm2(mid), (2, 2, 2)))
    layer.train()  # stochastic depth drops whole samples' branches (both here for ~1/4 of them)
    torch.manual_seed(3)
    xs = torch.randn(64, 2 * 4, 8)
    outs = layer(xs, (2, 2, 2))
    untouched = [bool(torch.equal(outs[i], xs[i])) for i in range(64)]
    assert 0 < sum(untouched) < 64
    assert math.isclose(layer.drop_path.drop_prob, 0.5)
