"""Building a referring network as the commands and the app do, and reporting expressions.

Library code shared by ``surgsam refer``, ``surgsam live --text``, ``surgsam eval --segmenter
referring`` and the web app (command-line modules only parse arguments and call these).
"""

from __future__ import annotations

UNTRAINED_NOTE = (
    "untrained referring network (random weights: SAM {sam} + referring preset {ref}): its masks are not "
    "meaningful and expressions are rarely found; pass --checkpoint for real results (the embedded "
    "surgsam-ref-nano-synth, trained on synthetic videos, or ReSurgSAM2's weights)"
)
NEVER_FOUND = "never found"
#: What ``surgsam refer``, ``surgsam live --text`` and the app load when no checkpoint is given.
DEFAULT_REFERRING_MODEL = "surgsam-ref-nano-synth"


def default_referring_checkpoint(
    checkpoint: str | None = None, untrained: bool = False, model: str | None = None, referring: str | None = None
) -> str | None:
    """The referring checkpoint a command loads: ``checkpoint`` if given, else the embedded
    :data:`DEFAULT_REFERRING_MODEL` when installed; ``None`` means an untrained network
    (``untrained``, or the embedded file missing). A SAM or referring preset without a
    checkpoint describes an untrained network, so it needs ``untrained``."""
    from ..modeling.embedded import is_embedded_available

    if checkpoint is not None:
        if untrained:
            raise ValueError("--untrained and --checkpoint exclude each other")
        return str(checkpoint)
    if untrained or not is_embedded_available(DEFAULT_REFERRING_MODEL):
        return None
    if model is not None or referring is not None:
        raise ValueError(
            f"--model/--referring without --checkpoint describe an untrained network: add --untrained "
            f"(or drop them to run the embedded {DEFAULT_REFERRING_MODEL})"
        )
    return DEFAULT_REFERRING_MODEL


def build_referring(
    checkpoint=None,
    model=None,
    referring=None,
    image_size=None,
    text_encoder=None,
    device="cpu",
    seed=0,
    allow_half=False,
):
    """(model, text encoder, untrained?) as ``surgsam refer`` builds them (also used by the app and
    ``surgsam live --text``): without ``checkpoint`` an untrained ``nano`` + ``tiny`` referring
    network with MiniLM (random weights from ``seed``), else the checkpoint's network (a path or
    an embedded model's name; :func:`default_referring_checkpoint` picks it for the commands)."""
    import torch

    from .checkpoint import build_referring_model
    from .config import get_referring_preset, pooled_scale_for
    from .text import build_text_encoder

    if checkpoint is None:
        enc = build_text_encoder(text_encoder or "minilm", device=device)
        # random weights: the token projection takes whatever width the chosen encoder gives
        name = text_encoder or "minilm"
        ref = get_referring_preset(
            referring or "tiny", text_dim=enc.dim, text_encoder=str(name), pooled_scale=pooled_scale_for(str(name))
        )
        torch.manual_seed(seed)
        net = build_referring_model(model or "nano", image_size=image_size, referring=ref, device=device)
        return net, enc, True
    enc = build_text_encoder(text_encoder, device=device) if text_encoder else None
    net = build_referring_model(
        model,
        image_size=image_size,
        referring=referring or "resurgsam2",
        checkpoint=checkpoint,
        text_encoder=enc,
        device=device,
        allow_half=allow_half,
    )
    if enc is None:
        enc = build_text_encoder(net.cfg.text_encoder, device=device)
    return net, enc, False


def never_found_masks(shown: int) -> str:
    """What the masks of an expression never credibly found hold (``shown``: frames whose
    detection was emitted while searching)."""
    if shown == 0:
        return "its masks are empty"
    return f"it was never tracked; {shown} frame(s) show its detections from the search"


def expression_statuses(seg) -> list[dict]:
    """Each expression of a ``ReferringSegmenter`` as the JSON summary reports it."""
    return [
        {
            "obj_id": s.obj_id,
            "text": s.text,
            "tracking_from": NEVER_FOUND if s.tracking_from is None else s.tracking_from,
            "credible_frame": s.credible_frame,
            "found_frame": s.found_frame,
            "detections_shown": s.frames_shown,
        }
        for s in seg.statuses()
    ]
