"""Frame sources (video files, image folders, cameras and streams) and mask/video writers.

Frames are ``H x W x 3`` uint8 RGB numpy arrays everywhere. PyAV and OpenCV (the ``video``
extra) are imported only when a video file, camera or stream is actually used.
"""

from .base import FrameReadError, FrameSource, SourceOpenError, VideoDecodeError
from .image_folder import IMAGE_EXTENSIONS, ImageFolderSource, natural_sort_key
from .live import LiveSource, LiveStats
from .overlay import draw_overlay, overlay_color
from .sources import open_source
from .video_file import VIDEO_EXTENSIONS, VideoFileSource, VideoInfo
from .writers import (
    OverlayVideoWriter,
    PaletteMaskWriter,
    PerObjectMaskWriter,
    VideoWriter,
    davis_palette,
    masks_to_label_map,
    read_palette_png,
    write_palette_png,
    write_video,
)

__all__ = [
    "IMAGE_EXTENSIONS",
    "VIDEO_EXTENSIONS",
    "FrameReadError",
    "FrameSource",
    "ImageFolderSource",
    "LiveSource",
    "LiveStats",
    "OverlayVideoWriter",
    "PaletteMaskWriter",
    "PerObjectMaskWriter",
    "SourceOpenError",
    "VideoDecodeError",
    "VideoFileSource",
    "VideoInfo",
    "VideoWriter",
    "davis_palette",
    "draw_overlay",
    "masks_to_label_map",
    "natural_sort_key",
    "open_source",
    "overlay_color",
    "read_palette_png",
    "write_palette_png",
    "write_video",
]
