"""ReferringSAM2: ReSurgSAM2 checkpoint layout, strict loading, detection wiring, gradients."""

from __future__ import annotations

import pytest
import torch

from surgsam.modeling import CheckpointError, SAM2Model, get_preset, save_checkpoint
from surgsam.modeling.sam2 import FrameFeatures
from surgsam.referring import (
    ReferringSAM2,
    TextFeatures,
    build_referring_model,
    from_resurgsam2_state_dict,
    get_referring_preset,
    load_referring_state_dict,
    read_referring_checkpoint,
    save_referring_checkpoint,
    to_resurgsam2_state_dict,
)
from surgsam.referring.fusion import temporal_slots

REFERRING_PREFIXES = ("token_projection.", "language_fusion_mlp.", "cross_modal_fusion.")


def tiny_model(seed: int = 0) -> ReferringSAM2:
    torch.manual_seed(seed)
    return ReferringSAM2(SAM2Model(get_preset("nano", 128)), get_referring_preset("tiny")).eval()


def tiny_inputs(model: ReferringSAM2, b: int = 2, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        frame = model.sam.encode_image(torch.randn(b, 3, 128, 128, generator=g))
    c, h = model.sam.hidden_dim, frame.features.shape[-1]
    previous = [torch.randn(b, c, h, h, generator=g) for _ in range(2)]
    pad = torch.zeros(b, 6, dtype=torch.bool)
    pad[0, 4:] = True
    text = TextFeatures(torch.randn(b, 6, 32, generator=g), pad, torch.randn(b, 32, generator=g))
    return frame, previous, text


@pytest.fixture(scope="module")
def tiny():
    return tiny_model()


# ------------------------------------------------------------------ checkpoint layout
def test_hiera_s_state_dict_is_resurgsam2_layout(resurgsam2_keys):
    with torch.device("meta"):
        model = ReferringSAM2(SAM2Model(get_preset("sam2.1_hiera_s", 512)), get_referring_preset("resurgsam2"))
    got = [(k, tuple(v.shape)) for k, v in to_resurgsam2_state_dict(model.state_dict()).items()]
    want = [(k, s) for k, s, text in resurgsam2_keys if not text]
    assert len(got) == 763 and got == want  # names, shapes and order
    assert model.cross_modal_fusion.drop_path_rates == pytest.approx([0.0, 0.2 / 3, 0.4 / 3, 0.2])


def test_random_resurgsam2_checkpoint_round_trips_strictly(tmp_path, resurgsam2_keys):
    g = torch.Generator().manual_seed(0)
    sd = {k: torch.randn(s, generator=g) for k, s, text in resurgsam2_keys if not text}
    path = tmp_path / "sam2.1_hiera_s_ref17.pth"
    torch.save({"model": sd}, path)  # the released files' container
    model = build_referring_model("sam2.1_hiera_s", image_size=512, checkpoint=path)
    back = to_resurgsam2_state_dict(model.state_dict())
    assert list(back) == list(sd)
    assert all(torch.equal(back[k], v) for k, v in sd.items())
    assert model.sam.image_size == 512 and not model.training


def test_missing_unexpected_and_misshaped_keys_are_named(tiny):
    sd = to_resurgsam2_state_dict(tiny.state_dict())
    missing = dict(sd)
    del missing["cross_modal_fusion.cls_token.weight"]
    with pytest.raises(CheckpointError, match=r"1 missing keys: cross_modal_fusion\.cls_token\.weight"):
        load_referring_state_dict(tiny_model(1), missing, "file.pth")
    extra = dict(sd, **{"cross_modal_fusion.transformer.extra_gate": torch.zeros(3)})
    with pytest.raises(CheckpointError, match=r"1 unexpected keys: cross_modal_fusion\.transformer\.extra_gate"):
        load_referring_state_dict(tiny_model(1), extra, "file.pth")
    bad = dict(sd, **{"sam_prompt_encoder.language_fusion_mlp.layers.0.weight": torch.zeros(3, 3)})
    with pytest.raises(CheckpointError, match=r"sam_prompt_encoder\.language_fusion_mlp\.layers\.0\.weight: \(3, 3\)"):
        load_referring_state_dict(tiny_model(1), bad, "file.pth")
    added = ("token_projection", "cross_modal", "sam_prompt_encoder.language")
    sam_only = {k: v for k, v in sd.items() if not k.startswith(added)}
    with pytest.raises(CheckpointError, match=r"(?s)244 missing keys: .*plain SAM 2 checkpoint"):
        load_referring_state_dict(tiny_model(1), sam_only, "file.pth")


def test_layout_remap_is_a_bijection(tiny):
    ours = tiny.state_dict()
    theirs = to_resurgsam2_state_dict(ours)
    assert "sam_prompt_encoder.language_fusion_mlp.layers.2.bias" in theirs and "sam.no_mem_embed" not in theirs
    back, language = from_resurgsam2_state_dict(theirs)
    assert language == {} and set(back) == set(ours) and all(back[k] is ours[k] for k in ours)


def test_language_model_entries_go_to_the_clip_encoder(tiny):
    pytest.importorskip("transformers")
    from surgsam.referring.text import CLIPTextEncoder

    source = CLIPTextEncoder.tiny(seed=1)
    sd = to_resurgsam2_state_dict(tiny.state_dict())
    sd.update({"language_model." + k: v for k, v in source.language_model().state_dict().items()})
    target = CLIPTextEncoder.tiny(seed=0)
    key = "embeddings.token_embedding.weight"
    assert not torch.equal(target.language_model().state_dict()[key], source.language_model().state_dict()[key])
    assert load_referring_state_dict(tiny_model(2), sd, "f", text_encoder=target) == {}
    assert torch.equal(target.language_model().state_dict()[key], source.language_model().state_dict()[key])
    left = load_referring_state_dict(tiny_model(2), sd, "f")  # no encoder: returned, not an error
    assert len(left) == len(source.language_model().state_dict())
    with pytest.raises(CheckpointError, match="not CLIP"):
        load_referring_state_dict(tiny_model(2), sd, "f", text_encoder=torch.nn.Linear(1, 1))


def test_own_format_round_trip_and_sam_only_init(tmp_path, tiny):
    path = save_referring_checkpoint(tiny, tmp_path / "ref.pt", step=7)
    ck = read_referring_checkpoint(path)
    assert ck.referring_config == tiny.cfg and ck.sam_config == tiny.sam.cfg and ck.meta == {"step": 7}
    assert "sam_prompt_encoder.language_fusion_mlp.layers.0.weight" in ck.state_dict
    rebuilt = build_referring_model(checkpoint=path)
    frame, previous, text = tiny_inputs(tiny)
    with torch.no_grad():
        a, b = tiny(frame, previous, text), rebuilt(frame, previous, text)
    assert torch.equal(a.masks.multimask_logits, b.masks.multimask_logits)
    # SAM weights only (training start): referring modules keep their initialisation
    sam_path = save_checkpoint(tiny.sam, tmp_path / "sam.pt", tiny.sam.cfg.to_dict())
    init = build_referring_model("nano", 128, referring="tiny", sam_checkpoint=sam_path)
    assert torch.equal(init.sam.no_mem_embed, tiny.sam.no_mem_embed)
    with pytest.raises(CheckpointError, match="plain SAM 2"):
        build_referring_model(checkpoint=sam_path)


# ------------------------------------------------------------------ detection
def test_detect_wiring(tiny):
    frame, previous, text = tiny_inputs(tiny)
    with torch.no_grad():
        det = tiny.detect(frame, previous, tiny.project_text(text))
        prompt = tiny.project_text(text)
        fused = tiny.cross_modal_fusion(frame.features, frame.pos, previous, prompt.tokens, prompt.padding_mask)
        sentence = tiny.language_fusion_mlp(tiny.token_projection(text.pooled)[:, None])
        pix = fused.features + tiny.sam.no_mem_embed.view(1, -1, 1, 1)
        extra = torch.cat([sentence, fused.cls], 1)  # [sentence token, fused CLS]
        want = tiny.sam.predict_masks(pix, frame.high_res, multimask_output=True, extra_sparse=extra)
        assert torch.equal(tiny.tracking_prompt(prompt), sentence)
    torch.testing.assert_close(det.masks.multimask_logits, want.multimask_logits)
    torch.testing.assert_close(det.masks.ious, want.ious)
    assert det.masks.multimask_logits.shape == (2, 3, 32, 32) and det.best_iou.shape == (2,)
    torch.testing.assert_close(det.best_iou, want.ious.max(-1).values)
    torch.testing.assert_close(det.object_score, torch.sigmoid(want.object_score_logits[:, 0]))


def test_fusion_padding_previous_frames_and_batching(tiny):
    frame, previous, text = tiny_inputs(tiny)
    with torch.no_grad():
        both = tiny.fuse(frame, previous, tiny.project_text(text))
        # object 0 alone, without its padding, gives the same result as inside the padded batch
        one = TextFeatures(text.tokens[:1, :4], text.padding_mask[:1, :4], text.pooled[:1])
        f0 = FrameFeatures(frame.features[:1], frame.pos[:1], tuple(x[:1] for x in frame.high_res))
        alone = tiny.fuse(f0, [p[:1] for p in previous], tiny.project_text(one))
        torch.testing.assert_close(alone.features, both.features[:1], rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(alone.cls, both.cls[:1], rtol=1e-5, atol=1e-5)
        # no previous frame = padding with the current frame twice
        none = tiny.fuse(frame, [], tiny.project_text(text))
        twice = tiny.fuse(frame, [frame.features, frame.features], tiny.project_text(text))
        torch.testing.assert_close(none.features, twice.features)
        assert (none.features - both.features).abs().max() > 1e-4  # previous frames matter
        swapped = tiny.fuse(frame, previous[::-1], tiny.project_text(text))
        assert (swapped.features - both.features).abs().max() > 1e-4  # and so does their order
    with pytest.raises(ValueError, match="at most 2 previous"):
        tiny.fuse(frame, previous * 2, tiny.project_text(text))
    with pytest.raises(ValueError, match="32"):
        tiny.project_text(
            TextFeatures(torch.zeros(1, 3, 384), torch.zeros(1, 3, dtype=torch.bool), torch.zeros(1, 384))
        )


def test_temporal_slots():
    assert temporal_slots(2, 3) == ([0, 1, 2], [0, 1, 2])
    assert temporal_slots(1, 3) == ([0, 0, 1], [0, 1, 1])  # ReSurgSAM2's padding order
    assert temporal_slots(0, 3) == ([0, 0, 0], [0, 1, 2])
    with pytest.raises(ValueError):
        temporal_slots(3, 3)


def test_every_referring_parameter_gets_a_gradient():
    model = tiny_model(3)
    frame, previous, text = tiny_inputs(model, seed=4)
    det = model(frame, previous, text)
    loss = det.masks.multimask_logits.sigmoid().mean() + det.masks.ious.sum() + det.masks.object_score_logits.sum()
    loss.backward()
    names = [n for n, p in model.named_parameters() if n.startswith(REFERRING_PREFIXES)]
    assert len(names) == len(list(model.referring_parameters())) > 100
    for n, p in model.named_parameters():
        if n.startswith(REFERRING_PREFIXES):
            assert p.grad is not None and p.grad.abs().sum() > 0, n


def test_pooled_scale_multiplies_the_sentence_embedding_only(tmp_path, tiny):
    from dataclasses import replace

    from surgsam.referring import ReferringConfig
    from surgsam.referring.config import pooled_scale_for

    scaled = ReferringSAM2(SAM2Model(tiny.sam.cfg), replace(tiny.cfg, pooled_scale=3.0)).eval()
    scaled.load_state_dict(tiny.state_dict())
    _, _, text = tiny_inputs(tiny)
    tripled = TextFeatures(text.tokens, text.padding_mask, text.pooled * 3.0)
    with torch.no_grad():
        a, b = scaled.project_text(text), tiny.project_text(tripled)
    assert torch.allclose(a.pooled, b.pooled, atol=1e-6) and torch.equal(a.tokens, tiny.project_text(text).tokens)
    # the scale travels with the checkpoint; configs saved before it existed load at 1
    path = save_referring_checkpoint(scaled, tmp_path / "scaled.pt")
    assert read_referring_checkpoint(path).referring_config.pooled_scale == 3.0
    old = tiny.cfg.to_dict()
    del old["pooled_scale"]
    assert ReferringConfig.from_dict(old).pooled_scale == 1.0
    with pytest.raises(ValueError, match="pooled_scale"):
        replace(tiny.cfg, pooled_scale=0.0)
    # MiniLM's unit-norm sentence embedding is brought to unit RMS per dimension
    assert pooled_scale_for("minilm") == pytest.approx(384**0.5) and pooled_scale_for("clip") == 1.0
    assert get_referring_preset("resurgsam2_minilm").pooled_scale == pytest.approx(384**0.5)
    assert get_referring_preset("resurgsam2").pooled_scale == 1.0
