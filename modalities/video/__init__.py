"""Video modality: t x p x p tubelets of clips from video files, frame folders, arrays or generated digits.

Its ``tube`` and ``frame`` maskers register through the ``maskkit.maskers`` entry points.
"""

from .modality import PRESETS, VideoConfig, VideoModality, parse_frame_size
from .tokenizer import TubeletTokenizer, tubeletify, untubeletify

__all__ = ["PRESETS", "TubeletTokenizer", "VideoModality", "VideoConfig", "parse_frame_size", "tubeletify",
           "untubeletify"]
