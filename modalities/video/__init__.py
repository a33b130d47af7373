"""Video modality: t x p x p tubelets of clips from video files, frame folders, arrays or generated digits.

Importing it registers the ``tube`` and ``frame`` maskers.
"""

from . import maskers as _maskers  # noqa: F401  (registers tube/frame)
from .modality import PRESETS, VideoModality, VideoOptions, parse_frame_size
from .tokenizer import TubeletTokenizer, tubeletify, untubeletify

__all__ = ["PRESETS", "TubeletTokenizer", "VideoModality", "VideoOptions", "parse_frame_size", "tubeletify",
           "untubeletify"]
