"""Audio modality: log-mel spectrogram patches of WAV/FLAC/OGG files, clip arrays or the embedded
spoken digits. Its ``time-freq`` masker registers
through the ``maskkit.maskers`` entry points.
"""

from .features import LogMel, mel_filterbank, resample
from .modality import PRESETS, AudioConfig, AudioModality, parse_patch
from .tokenizer import SpectrogramPatchTokenizer, patchify_2d, unpatchify_2d

__all__ = ["PRESETS", "AudioModality", "AudioConfig", "LogMel", "SpectrogramPatchTokenizer",
           "mel_filterbank", "parse_patch", "patchify_2d", "resample", "unpatchify_2d"]
