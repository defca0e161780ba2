"""The streaming engine: a session that tracks objects frame by frame with bounded memory."""

from .offline import Prompt, segment_video
from .session import VideoSegmenter
from .state import FrameResult, ObjectState

__all__ = ["VideoSegmenter", "FrameResult", "ObjectState", "Prompt", "segment_video"]
