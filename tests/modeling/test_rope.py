"""Real-valued RoPE (export path) == complex RoPE (eager path) == Meta's axial RoPE."""

from __future__ import annotations

import pytest
import torch

from oracle import HAVE_ORACLE
from surgsam.modeling.memory_attention import (
    RoPEAttention,
    apply_rope,
    apply_rope_complex,
    axial_rope_angles,
    rope_tables,
)


def test_real_and_complex_rope_agree():
    ang = axial_rope_angles(64, 8, 8)
    cos, sin = rope_tables(ang)
    rot = torch.polar(torch.ones_like(ang), ang)
    x = torch.randn(3, 2, 64, 64)
    torch.testing.assert_close(apply_rope(x, cos, sin), apply_rope_complex(x, rot), atol=1e-6, rtol=0)
    # a rotation keeps the norm of every channel pair
    pairs = apply_rope(x, cos, sin).unflatten(-1, (-1, 2)).norm(dim=-1)
    torch.testing.assert_close(pairs, x.unflatten(-1, (-1, 2)).norm(dim=-1))


@pytest.mark.skipif(not HAVE_ORACLE, reason="reference oracle not installed")
def test_rope_attention_matches_meta_with_repeated_keys_and_pointers():
    from sam2.modeling.sam.transformer import RoPEAttention as MetaRoPE

    torch.manual_seed(0)
    meta = MetaRoPE(
        embedding_dim=64,
        num_heads=1,
        downsample_rate=1,
        kv_in_dim=32,
        rope_theta=10000.0,
        rope_k_repeat=True,
        feat_sizes=(8, 8),
    )
    ours = RoPEAttention(64, 1, kv_in_dim=32, rope_k_repeat=True)
    ours.load_state_dict(meta.state_dict())
    q, k = torch.randn(2, 64, 64), torch.randn(2, 3 * 64 + 8, 32)
    with torch.no_grad():
        expected = meta(q, k, k, num_k_exclude_rope=8)
        torch.testing.assert_close(ours(q, k, k, num_k_exclude_rope=8), expected, atol=1e-5, rtol=0)
    # the real-valued path (used under export / torch.compile) gives the same numbers
    import surgsam.modeling.memory_attention as ma

    orig = ma._exporting
    ma._exporting = lambda: True
    try:
        with torch.no_grad():
            torch.testing.assert_close(ours(q, k, k, num_k_exclude_rope=8), expected, atol=1e-5, rtol=0)
    finally:
        ma._exporting = orig


def test_tables_built_under_inference_mode_can_be_used_for_training():
    attn = RoPEAttention(32, 1, rope_k_repeat=True)
    q = torch.randn(1, 16, 32)
    with torch.inference_mode():
        attn(q, q, q)  # fills the shared table cache inside inference mode
    x = torch.randn(1, 16, 32, requires_grad=True)
    attn(x, x, x).sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
