"""The streaming engine: a session that tracks objects frame by frame with bounded memory."""

from __future__ import annotations

from typing import TYPE_CHECKING

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
if TYPE_CHECKING:  # the same names, for type checkers and editors (tests/test_lazy_exports.py)
    from .session import VideoSegmenter as VideoSegmenter
    from .state import FrameResult as FrameResult, ObjectState as ObjectState
    from .offline import Prompt as Prompt, segment_video as segment_video
    from .prompt_file import (
        read_prompts as read_prompts,
        read_prompt_file as read_prompt_file,
        parse_object_spec as parse_object_spec,
    )

__all__ = list(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
