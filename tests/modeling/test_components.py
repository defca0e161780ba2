"""SAM2Model takes its networks from the caller when given, and builds them from the config otherwise."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from surgsam.modeling import SAM2Model, get_preset
from surgsam.modeling.mask_decoder import MaskDecoder
from surgsam.modeling.neck import build_image_encoder
from surgsam.modeling.two_way_transformer import TwoWayTransformer
from surgsam.predictor import ImagePredictor


def _state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def test_from_preset_is_the_config_built_model():
    torch.manual_seed(0)
    a = SAM2Model.from_preset("nano", image_size=128)
    torch.manual_seed(0)
    b = SAM2Model(get_preset("nano", 128))
    assert a.image_size == b.image_size == 128
    sa, sb = _state(a), _state(b)
    assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_a_shared_image_encoder_is_used_as_given():
    cfg = get_preset("nano", 128)
    encoder = build_image_encoder(cfg)
    a, b = SAM2Model(cfg, image_encoder=encoder), SAM2Model(cfg, image_encoder=encoder)
    assert a.image_encoder is encoder and b.image_encoder is encoder
    assert a.state_dict().keys() == SAM2Model(cfg).state_dict().keys()  # checkpoints load the same
    x = torch.rand(1, 3, 128, 128)
    with torch.no_grad():
        torch.testing.assert_close(a.encode_image(x).features, b.encode_image(x).features, rtol=0, atol=0)


def test_an_injected_decoder_subclass_runs_the_predictions():
    class CountingDecoder(MaskDecoder):
        calls = 0

        def forward(self, *args, **kwargs):
            CountingDecoder.calls += 1
            return super().forward(*args, **kwargs)

    torch.manual_seed(0)
    plain = SAM2Model.from_preset("nano", image_size=128).eval()
    cfg, dec = plain.cfg, plain.sam_mask_decoder
    counting = CountingDecoder(
        cfg.d_model,
        dec.transformer,
        num_multimask_outputs=cfg.num_multimask_outputs,
        iou_head_depth=cfg.iou_head_depth,
        iou_head_hidden_dim=cfg.iou_head_hidden_dim,
        dynamic_multimask_via_stability=cfg.dynamic_multimask_via_stability,
        dynamic_multimask_stability_delta=cfg.dynamic_multimask_stability_delta,
        dynamic_multimask_stability_thresh=cfg.dynamic_multimask_stability_thresh,
    )
    counting.load_state_dict(dec.state_dict())
    model = SAM2Model(plain.cfg, mask_decoder=counting).eval()
    model.load_state_dict(plain.state_dict())
    image = np.random.default_rng(0).integers(0, 256, (96, 128, 3), dtype=np.uint8)
    outs = []
    for m in (plain, model):
        pred = ImagePredictor(m)
        pred.set_image(image)
        outs.append(pred.predict(points=[[40, 30]], labels=[1]))
    assert CountingDecoder.calls == 1
    np.testing.assert_array_equal(outs[0].low_res_logits, outs[1].low_res_logits)


def test_a_component_of_another_width_is_refused():
    other = MaskDecoder(256, TwoWayTransformer(2, 256, 8, 2048))  # SAM 2's width, not the nano's 64
    with pytest.raises(ValueError, match="mask_decoder does not match config 'nano'"):
        SAM2Model(get_preset("nano"), mask_decoder=other)
    with pytest.raises(TypeError, match="memory_encoder must be an nn.Module"):
        SAM2Model(get_preset("nano"), memory_encoder="fifo")  # type: ignore[arg-type]
