"""Models that ship inside the package, addressed by name wherever a checkpoint path is accepted.

``build_model(checkpoint="surgsam-nano-synth")``, ``surgsam segment --checkpoint
surgsam-nano-synth`` and ``surgsam eval --checkpoint surgsam-nano-synth`` all load the bundled
file ``surgsam/assets/nano_synth.pt``. It is in our checkpoint format, so it carries its
config and the record of how it was trained (``read_checkpoint(...).meta``). A name is only
resolved when no file of that name exists in the working directory.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path


@dataclass(frozen=True)
class EmbeddedModel:
    """A bundled checkpoint: its file under ``surgsam/assets``, one line on what it is, and its
    model card (data, training, held-out numbers, limits) in the repository."""

    name: str
    file: str
    summary: str
    card: str = ""


EMBEDDED_MODELS: dict[str, EmbeddedModel] = {
    m.name: m
    for m in (
        EmbeddedModel(
            "surgsam-nano-synth",
            "nano_synth.pt",
            "nano preset at 256 px, trained by `surgsam train --recipe nano-synth` on synthetic "
            "surgical videos only (the demo's default; not a model for real endoscopy)",
            "docs/models/surgsam-nano-synth.md",
        ),
        EmbeddedModel(
            "surgsam-ref-nano-synth",
            "ref_nano_synth.pt",
            "text-referred (ReSurgSAM2): nano + the tiny referring branch at 256 px with the embedded "
            "MiniLM text encoder, trained by `surgsam train --recipe ref-nano-synth` on synthetic "
            "videos only (for `surgsam refer --checkpoint`; finds tissue far better than instruments)",
            "docs/models/surgsam-ref-nano-synth.md",
        ),
    )
}


def embedded_path(name: str) -> Path:
    """The bundled file of embedded model ``name``.

    Raises:
        KeyError: ``name`` is not an embedded model.
        FileNotFoundError: the model is known but its file is not in this installation.
    """
    if name not in EMBEDDED_MODELS:
        raise KeyError(f"unknown embedded model {name!r}; known: {', '.join(sorted(EMBEDDED_MODELS))}")
    path = Path(str(resources.files("surgsam").joinpath("assets").joinpath(EMBEDDED_MODELS[name].file)))
    if not path.is_file():
        raise FileNotFoundError(f"the embedded model {name!r} is not part of this installation (expected {path})")
    return path


def is_embedded_available(name: str) -> bool:
    """Whether embedded model ``name`` is known and its file is installed."""
    try:
        embedded_path(name)
    except (KeyError, FileNotFoundError):
        return False
    return True


def resolve_checkpoint(ref: str | Path) -> Path:
    """A checkpoint argument -> a file path: an existing file as is, else an embedded model name."""
    path = Path(ref)
    if not path.exists() and str(ref) in EMBEDDED_MODELS:
        return embedded_path(str(ref))
    return path


#: The embedded model the demo, ``segment``, ``live`` and the app run when no checkpoint is given.
DEMO_MODEL_NAME = "surgsam-nano-synth"
UNTRAINED_NOTE = "untrained network (random weights): its masks are not meaningful"


def demo_checkpoint(checkpoint: str | Path | None = None, untrained: bool = False) -> str | None:
    """The checkpoint the demo (and the commands without ``--checkpoint``) load: ``checkpoint``
    if given, else the embedded ``surgsam-nano-synth`` when installed; ``None`` means random
    weights (``untrained``, or the embedded file missing)."""
    if checkpoint is not None:
        return str(checkpoint)
    if untrained or not is_embedded_available(DEMO_MODEL_NAME):
        return None
    return DEMO_MODEL_NAME


def build_demo_model(checkpoint: str | Path | None = None, seed: int = 0, device: str = "cpu", untrained: bool = False):
    """The demo's network: :func:`demo_checkpoint` loaded (our checkpoints carry their config),
    or the ``nano`` preset with random weights drawn from ``seed`` (see :data:`UNTRAINED_NOTE`)."""
    import torch

    from .build import build_model

    ckpt = demo_checkpoint(checkpoint, untrained)
    if ckpt is not None:
        return build_model(checkpoint=ckpt, device=device)
    torch.manual_seed(seed)
    return build_model("nano", device=device)
