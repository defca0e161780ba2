"""The streaming engine: a session that tracks objects frame by frame with bounded memory."""

from __future__ import annotations

from .._lazy import lazy_exports

# public name -> submodule (imported on first use, so importing the package does not load torch)
_EXPORTS = {
    "VideoSegmenter": ".session",
    "FrameResult": ".state",
    "ObjectState": ".state",
    "Prompt": ".offline",
    "segment_video": ".offline",
    "read_prompts": ".prompt_file",
    "read_prompt_file": ".prompt_file",
    "parse_object_spec": ".prompt_file",
}
__all__ = list(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
