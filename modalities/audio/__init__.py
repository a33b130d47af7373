"""Audio modality: log-mel spectrogram patches of WAV/FLAC/OGG files, clip arrays or the embedded
spoken digits. Importing it registers the ``time-freq`` masker.
"""

from . import maskers as _maskers  # noqa: F401  (registers time-freq)
from .features import LogMel, mel_filterbank, resample
from .modality import PRESETS, AudioModality, AudioOptions, parse_patch
from .tokenizer import SpectrogramPatchTokenizer, patchify_2d, unpatchify_2d

__all__ = ["PRESETS", "AudioModality", "AudioOptions", "LogMel", "SpectrogramPatchTokenizer",
           "mel_filterbank", "parse_patch", "patchify_2d", "resample", "unpatchify_2d"]
