"""The one strict checkpoint loader, and our own checkpoint format.

Accepted files (always read with ``torch.load(..., map_location="cpu", weights_only=True)``):

* Meta's official format ``{"model": state_dict}`` (``sam2.1_hiera_small.pt`` ...),
* a bare state dict (SurgSAM2's ``sam2_hiera_s_endo18.pth``),
* ours: ``{"format": "surgsam", "config": SAM2Config.to_dict(), "model": state_dict, ...}``,
  so a file says which network it belongs to,
* ``.safetensors`` files (our config, if any, in the metadata under ``"surgsam_config"``),
* the name of a model bundled with the package (``surgsam-nano-synth``; see ``embedded.py``).

``torch.compile`` (``_orig_mod.``) and DDP (``module.``) prefixes are stripped. Loading is
strict: any missing or unexpected key, any shape mismatch, a tensor holding NaN or inf, an
integer or bool tensor where the model has a float one, and half-precision (fp16/bf16) weights
unless ``allow_half=True`` raise :class:`CheckpointError` naming the tensors.
"""

from __future__ import annotations

import errno
import json
import os
import pickle
import stat
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import nn

from .._optional import require

FORMAT_TAG = "surgsam"
_PREFIXES = ("_orig_mod.", "module.")


class CheckpointError(ValueError):
    """A checkpoint file that cannot be used with the requested model."""


@dataclass
class LoadedCheckpoint:
    """The tensors of a checkpoint file and, for our own format, the config it was saved with."""

    state_dict: dict[str, torch.Tensor]
    config: dict[str, Any] | None
    path: Path
    meta: dict[str, Any]


def strip_prefixes(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Remove ``_orig_mod.`` / ``module.`` wrappers from every key."""
    out = {}
    for k, v in sd.items():
        changed = True
        while changed:
            changed = False
            for p in _PREFIXES:
                if k.startswith(p):
                    k, changed = k[len(p) :], True
            k = k.replace("._orig_mod.", ".")
        out[k] = v
    return out


#: Floating dtypes a checkpoint may store without ``allow_half``.
FULL_PRECISION = (torch.float32, torch.float64)
#: Accepted only with ``allow_half=True`` (they lose precision against the fp32 model).
HALF_PRECISION = (torch.float16, torch.bfloat16)


def read_checkpoint(path: str | Path, *, allow_half: bool = False) -> LoadedCheckpoint:
    """Read a checkpoint file safely; see the module docstring for the accepted layouts.

    ``path`` may also name an embedded model (``surgsam.modeling.embedded``), e.g.
    ``"surgsam-nano-synth"``. Tensors holding NaN/inf, and fp16/bf16 tensors unless
    ``allow_half``, are refused (:func:`check_tensor_values`).
    """
    from .embedded import resolve_checkpoint

    path = resolve_checkpoint(path)
    _check_is_file(path)
    if path.suffix == ".safetensors":
        ck = _read_safetensors(path)
        check_tensor_values(ck.state_dict, str(path), allow_half=allow_half)
        return ck
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        if _is_weights_only_refusal(e):
            raise CheckpointError(
                f"refused to load {path}: it is not a plain tensor checkpoint (unpickling it would "
                f"need to run code, which weights_only=True forbids). Re-save only the tensors, e.g. "
                f"torch.save({{'model': model.state_dict()}}, path). Detail: {_refusal_detail(e)}"
            ) from None
        raise CheckpointError(f"cannot read {path}: the file is truncated or not a PyTorch checkpoint ({e})") from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError) as e:
        raise CheckpointError(f"cannot read {path}: the file is truncated or not a PyTorch checkpoint ({e})") from None
    except Exception as e:  # a corrupt legacy (non-zip) file can make the unpickler fail in any way
        raise CheckpointError(
            f"cannot read {path}: the file is truncated or not a PyTorch checkpoint "
            f"({type(e).__name__}: {str(e)[:200]})"
        ) from None
    if not isinstance(obj, dict):
        raise CheckpointError(f"{path}: expected a dict of tensors, found {type(obj).__name__}")
    if "optimizer" in obj and "schedule" in obj and "model" not in obj:
        weights = path.name.replace(".state.pt", ".pt") if path.name.endswith(".state.pt") else "step_N.pt"
        raise CheckpointError(
            f"{path} is a trainer state file (optimizer, schedule and RNG state, which `surgsam train "
            f"--resume` reads), not model weights: pass the checkpoint beside it, {weights}"
        )
    config, meta = None, {}
    if obj.get("format") == FORMAT_TAG:
        config, sd = obj.get("config"), obj.get("model")
        if not isinstance(config, dict):
            raise CheckpointError(f"{path}: a surgsam checkpoint without its config dict")
        meta = {k: v for k, v in obj.items() if k not in ("model", "config", "format")}
    elif "model" in obj and isinstance(obj["model"], dict):
        sd = obj["model"]
    else:
        sd = obj
    if not isinstance(sd, dict) or not sd:
        raise CheckpointError(f"{path}: no state dict found")
    bad = [k for k, v in sd.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise CheckpointError(f"{path}: entries that are not tensors: {bad[:5]}")
    sd = strip_prefixes(sd)
    check_tensor_values(sd, str(path), allow_half=allow_half)
    return LoadedCheckpoint(sd, config, path, meta)


def _check_is_file(path: Path) -> None:
    """A readable, non-empty regular file, or an error that says what the path is instead."""
    try:
        st = path.stat()
    except FileNotFoundError:
        if path.is_symlink():
            raise FileNotFoundError(
                f"checkpoint {path} is a broken symbolic link (its target does not exist)"
            ) from None
        raise FileNotFoundError(f"checkpoint not found: {path}") from None
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise CheckpointError(
                f"checkpoint {path} is a symbolic link loop (links that point at each other)"
            ) from None
        raise CheckpointError(f"cannot read checkpoint {path}: {e.strerror or e}") from None
    if stat.S_ISDIR(st.st_mode):
        raise CheckpointError(f"checkpoint {path} is a folder, not a file: give the weights file inside it")
    if not stat.S_ISREG(st.st_mode):
        raise CheckpointError(
            f"checkpoint {path} is not a regular file (a device, pipe or socket): give a weights file"
        )
    if st.st_size == 0:
        raise CheckpointError(f"checkpoint {path} is empty (0 bytes)")
    if not os.access(path, os.R_OK):
        raise CheckpointError(f"checkpoint {path} is not readable (permission denied)")


def check_tensor_values(sd: dict[str, torch.Tensor], source: str = "checkpoint", *, allow_half: bool = False) -> None:
    """Refuse weights no model should load: NaN or inf values, reduced-precision floats
    (fp16/bf16 unless ``allow_half``; fp8 always). Raises :class:`CheckpointError` naming them."""
    nonfinite, half, other = [], [], []
    for k, v in sd.items():
        if not (v.is_floating_point() or v.is_complex()):
            continue
        if v.dtype in HALF_PRECISION:
            if not allow_half:
                half.append(f"{k} ({str(v.dtype).removeprefix('torch.')})")
        elif v.dtype not in FULL_PRECISION:
            other.append(f"{k} ({str(v.dtype).removeprefix('torch.')})")
            continue
        if v.numel() and not bool(torch.isfinite(v).all()):
            n = int((~torch.isfinite(v)).sum())
            nonfinite.append(f"{k} ({n} of {v.numel()} values)")
    lines = []
    if nonfinite:
        lines.append(f"  {len(nonfinite)} tensors hold NaN or inf (corrupt or diverged weights): {_head(nonfinite)}")
    if other:
        lines.append(f"  {len(other)} tensors have an unsupported float type: {_head(other)}")
    if half:
        lines.append(
            f"  {len(half)} tensors are stored in half precision: {_head(half)}; pass allow_half=True "
            "(--allow-half-weights) to accept them (they are converted to the model's float32)"
        )
    if lines:
        raise CheckpointError("\n".join([f"refused to load {source}:", *lines]))


def _is_weights_only_refusal(e: Exception) -> bool:
    """True when torch refused a pickle because it references code (not a corrupt file)."""
    msg = str(e)
    return "Weights only load failed" in msg or "Unsupported global" in msg or "weights_only" in msg


def _refusal_detail(e: Exception) -> str:
    """The line of torch's long weights_only message that names the offending global."""
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    for ln in lines:
        if "Unsupported global" in ln or "Unsupported operand" in ln:
            return ln.split(" was not an allowed global")[0][:300]
    return (lines[0] if lines else type(e).__name__)[:300]


def _read_safetensors(path: Path) -> LoadedCheckpoint:
    safe_open = require("safetensors", "train", "reading .safetensors checkpoints").safe_open
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            sd = {k: f.get_tensor(k) for k in f.keys()}
            md = f.metadata() or {}
    except Exception as e:  # safetensors raises its own error types
        raise CheckpointError(f"cannot read {path}: truncated or not a safetensors file ({e})") from None
    config = json.loads(md["surgsam_config"]) if "surgsam_config" in md else None
    return LoadedCheckpoint(strip_prefixes(sd), config, path, {})


class HasStateDict(Protocol):
    """A module, or a view of one under other key names (ReSurgSAM2's), for :func:`check_state_dict`."""

    def state_dict(self) -> dict[str, Any]: ...


def check_state_dict(model: HasStateDict, sd: dict[str, torch.Tensor], source: str = "checkpoint") -> None:
    """Raise :class:`CheckpointError` unless ``sd`` matches ``model`` key for key and shape."""
    own = model.state_dict()
    missing = sorted(set(own) - set(sd))
    unexpected = sorted(set(sd) - set(own))
    shapes = [(k, tuple(sd[k].shape), tuple(own[k].shape)) for k in own if k in sd and sd[k].shape != own[k].shape]
    # an integer/bool tensor where the model keeps floats: copying would silently cast it
    dtypes = [
        f"{k} ({str(sd[k].dtype).removeprefix('torch.')}, model {str(own[k].dtype).removeprefix('torch.')})"
        for k in own
        if k in sd and own[k].is_floating_point() and not sd[k].is_floating_point()
    ]
    if not (missing or unexpected or shapes or dtypes):
        return
    lines = [f"{source} does not match the model{_preset_hint(model, sd)}:"]
    if missing:
        lines.append(f"  {len(missing)} missing keys: {_head(missing)}")
    if unexpected:
        lines.append(f"  {len(unexpected)} unexpected keys: {_head(unexpected)}")
    if shapes:
        lines.append(
            f"  {len(shapes)} shape mismatches (key: file vs model): "
            + "; ".join(f"{k}: {a} vs {b}" for k, a, b in shapes[:8])
            + (" ..." if len(shapes) > 8 else "")
        )
    if dtypes:
        lines.append(f"  {len(dtypes)} tensors are not floating point where the model expects floats: {_head(dtypes)}")
    raise CheckpointError("\n".join(lines))


def load_state_dict_strict(model: nn.Module, sd: dict[str, torch.Tensor], source: str = "checkpoint") -> None:
    """Check, then copy ``sd`` into ``model`` (dtype converted to the model's)."""
    check_state_dict(model, sd, source)
    model.load_state_dict(sd, strict=True)


def save_checkpoint(model: nn.Module, path: str | Path, config: dict[str, Any], **meta: Any) -> Path:
    """Save in our format: weights plus the config needed to rebuild the network.

    ``meta`` values must be plain Python data (numbers, strings, lists, dicts).
    """
    return save_state_dict(model.state_dict(), path, config, **meta)


def save_state_dict(state_dict: dict[str, torch.Tensor], path: str | Path, config: dict[str, Any], **meta: Any) -> Path:
    """:func:`save_checkpoint` for tensors already detached from a model (e.g. re-packaging a file)."""
    from ..io.atomic import atomic_path

    path = Path(path)
    sd = {k: v.detach().cpu().contiguous() for k, v in state_dict.items()}
    with atomic_path(path, what="checkpoint") as tmp:  # a failed save keeps an earlier file intact
        torch.save({"format": FORMAT_TAG, "config": config, "model": sd, **meta}, tmp)
    return path


def _head(keys: list[str], n: int = 8) -> str:
    return ", ".join(keys[:n]) + (f", ... (+{len(keys) - n} more)" if len(keys) > n else "")


def _preset_hint(model: HasStateDict, sd: dict[str, torch.Tensor]) -> str:
    """A guess of which preset the file was saved from, to make wrong-preset errors obvious."""
    guess = guess_preset(sd)
    name = getattr(getattr(model, "cfg", None), "name", None)
    if guess and name and guess != name:
        return f" (the model is {name!r}; the file looks like {guess!r})"
    return f" (model {name!r})" if name else ""


def guess_preset(sd: dict[str, torch.Tensor]) -> str | None:
    """Name the Meta preset whose trunk width/depth and version match ``sd``, if any."""
    from .presets import get_preset, list_presets

    w = sd.get("image_encoder.trunk.patch_embed.proj.weight")
    if w is None:
        return None
    blocks = {int(k.split(".")[3]) for k in sd if k.startswith("image_encoder.trunk.blocks.")}
    depth = max(blocks) + 1 if blocks else 0
    v21 = "no_obj_embed_spatial" in sd
    for name in list_presets():
        cfg = get_preset(name)
        if cfg.hiera.embed_dim == w.shape[0] and sum(cfg.hiera.stages) == depth and cfg.no_obj_embed_spatial == v21:
            return name
    return None
