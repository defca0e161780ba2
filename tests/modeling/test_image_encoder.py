"""Image encoder (Hiera trunk + FPN neck) and position encodings against Meta's SAM 2."""

from __future__ import annotations

import pytest
import torch

from oracle import build_reference, needs_oracle
from surgsam.modeling.neck import ImageFeatures, build_image_encoder
from surgsam.modeling.position_encoding import PositionEmbeddingRandom, PositionEmbeddingSine
from surgsam.modeling.presets import get_preset

TOL = 1e-4


def _encoder_state(ref: torch.nn.Module) -> dict[str, torch.Tensor]:
    prefix = "image_encoder."
    return {k[len(prefix) :]: v for k, v in ref.state_dict().items() if k.startswith(prefix)}


def _maxdiff(a: torch.Tensor, b: torch.Tensor) -> float:
    assert a.shape == b.shape, (a.shape, b.shape)
    return (a.float() - b.float()).abs().max().item()


@needs_oracle
@pytest.mark.oracle
@pytest.mark.parametrize("image_size", [512, 1024])
@pytest.mark.parametrize("preset", ["sam2.1_hiera_tiny", "sam2_hiera_tiny"])
def test_matches_reference(preset: str, image_size: int) -> None:
    ref = build_reference(preset, image_size)
    ours = build_image_encoder(get_preset(preset, image_size)).eval()
    ours.load_state_dict(_encoder_state(ref), strict=True)

    x = torch.randn(1, 3, image_size, image_size, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        want = ref.image_encoder(x)
        got = ours(x)
    assert isinstance(got, ImageFeatures)
    assert len(got.backbone_fpn) == len(want["backbone_fpn"]) == 3
    assert len(got.vision_pos_enc) == len(want["vision_pos_enc"]) == 3

    diffs = {"vision_features": _maxdiff(got.vision_features, want["vision_features"])}
    for i, (g, w) in enumerate(zip(got.backbone_fpn, want["backbone_fpn"])):
        diffs[f"backbone_fpn[{i}]"] = _maxdiff(g, w)
    for i, (g, w) in enumerate(zip(got.vision_pos_enc, want["vision_pos_enc"])):
        diffs[f"vision_pos_enc[{i}]"] = _maxdiff(g, w)
    print(f"{preset} @ {image_size}: " + ", ".join(f"{k}={v:.3g}" for k, v in diffs.items()))
    assert max(diffs.values()) <= TOL, diffs


@needs_oracle
@pytest.mark.oracle
def test_nano_levels_and_strides() -> None:
    cfg = get_preset("nano")
    assert cfg.image_size == 256
    enc = build_image_encoder(cfg).eval()
    with torch.no_grad():
        out = enc(torch.randn(2, 3, 256, 256))
    assert len(out.backbone_fpn) == len(out.vision_pos_enc) == 3
    for level, stride in zip(out.backbone_fpn, (4, 8, 16)):
        assert level.shape == (2, cfg.d_model, 256 // stride, 256 // stride)
        assert torch.isfinite(level).all()
    for pos, level in zip(out.vision_pos_enc, out.backbone_fpn):
        assert pos.shape == level.shape
    assert out.vision_features is out.backbone_fpn[-1]
    assert out.vision_features.shape[-1] == cfg.feat_size


def test_non_square_input() -> None:
    enc = build_image_encoder(get_preset("nano")).eval()
    with torch.no_grad():
        out = enc(torch.randn(1, 3, 192, 320))
    assert [tuple(f.shape[-2:]) for f in out.backbone_fpn] == [(48, 80), (24, 40), (12, 20)]


def test_sine_cache_follows_batch_and_dtype() -> None:
    pe = PositionEmbeddingSine(64)
    a = pe(torch.zeros(1, 8, 6, 10))
    b = pe(torch.zeros(3, 8, 6, 10, dtype=torch.bfloat16))
    assert a.shape == (1, 64, 6, 10) and b.shape == (3, 64, 6, 10)
    assert a.dtype == b.dtype == torch.float32
    b.add_(1.0)  # callers own the returned tensor; the cache must not change
    assert torch.equal(pe(torch.zeros(1, 8, 6, 10)), a)


@needs_oracle
@pytest.mark.oracle
def test_position_encodings_match_reference() -> None:
    from sam2.modeling.position_encoding import PositionEmbeddingRandom as RefRandom
    from sam2.modeling.position_encoding import PositionEmbeddingSine as RefSine

    x = torch.zeros(2, 256, 24, 40)
    assert _maxdiff(PositionEmbeddingSine(256)(x), RefSine(256, warmup_cache=False)(x)) <= 1e-6

    ref = RefRandom(128)
    ours = PositionEmbeddingRandom(128)
    ours.load_state_dict(ref.state_dict(), strict=True)
    assert _maxdiff(ours((24, 40)), ref((24, 40))) <= 1e-5
    coords = torch.rand(2, 5, 2) * torch.tensor([640.0, 480.0])
    assert _maxdiff(ours.forward_with_coords(coords, (480, 640)), ref.forward_with_coords(coords, (480, 640))) <= 1e-5
