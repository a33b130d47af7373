"""Reading audio files: PCM WAV with the stdlib ``wave`` module, FLAC/OGG (and odd WAVs) via soundfile.

Every reader returns mono float32 in [-1, 1] (channels averaged) and the file's sample rate.
Problems raise :class:`~maskkit.modality.DataError` naming the file and the reason.
"""

from __future__ import annotations

import wave
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from maskkit.modality import DataError

WAV_EXTENSIONS = {".wav", ".wave"}
SOUNDFILE_EXTENSIONS = {".flac", ".ogg", ".oga", ".aif", ".aiff"}
AUDIO_EXTENSIONS = WAV_EXTENSIONS | SOUNDFILE_EXTENSIONS


@dataclass(frozen=True)
class AudioInfo:
    path: Path
    sample_rate: int
    num_samples: int
    channels: int


def _soundfile(path: Path) -> Any:
    try:
        import soundfile
    except ImportError:
        raise DataError(f"{path}: reading {path.suffix or 'this'} audio needs soundfile; "
                        "install it with: pip install 'maskkit[audio]'") from None
    return soundfile


def pcm_to_float(raw: bytes, sample_width: int, channels: int) -> np.ndarray:
    """Interleaved little-endian PCM bytes -> (samples, channels) float32 in [-1, 1]."""
    if sample_width == 1:  # 8-bit WAV is unsigned
        data = (np.frombuffer(raw, dtype=np.uint8).astype(np.float32) - 128.0) / 128.0
    elif sample_width == 2:
        data = np.frombuffer(raw, dtype="<i2").astype(np.float32) / 32768.0
    elif sample_width == 3:
        b = np.frombuffer(raw, dtype=np.uint8).reshape(-1, 3).astype(np.int32)
        value = b[:, 0] | (b[:, 1] << 8) | (b[:, 2] << 16)
        value = np.where(value >= 1 << 23, value - (1 << 24), value)
        data = value.astype(np.float32) / float(1 << 23)
    elif sample_width == 4:
        data = (np.frombuffer(raw, dtype="<i4").astype(np.float64) / float(1 << 31)).astype(np.float32)
    else:
        raise ValueError(f"unsupported sample width {sample_width} bytes")
    usable = len(data) - len(data) % channels
    return data[:usable].reshape(-1, channels)


def _probe_wav(path: Path) -> AudioInfo | None:
    """Header of a PCM WAV, or None when ``wave`` cannot read it (float or extensible WAVs)."""
    try:
        with wave.open(str(path), "rb") as w:
            return AudioInfo(path, w.getframerate(), w.getnframes(), w.getnchannels())
    except (wave.Error, EOFError):
        return None


def probe_audio(path: str | Path) -> AudioInfo:
    """Cheap header check used when a dataset opens; raises DataError for unreadable or empty files."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    info = _probe_wav(path) if path.suffix.lower() in WAV_EXTENSIONS else None
    if info is None:
        sf = _soundfile(path)
        try:
            meta = sf.info(str(path))
        except Exception as exc:  # soundfile raises its own error types
            raise DataError(f"{path}: not a readable audio file ({exc})") from None
        info = AudioInfo(path, int(meta.samplerate), int(meta.frames), int(meta.channels))
    if info.num_samples <= 0:
        raise DataError(f"{path}: the file holds no audio samples")
    if info.sample_rate <= 0 or info.channels <= 0:
        raise DataError(f"{path}: invalid header (rate {info.sample_rate}, channels {info.channels})")
    return info


def read_audio(path: str | Path) -> tuple[np.ndarray, int]:
    """Mono float32 samples and the sample rate."""
    path = Path(path)
    if path.suffix.lower() in WAV_EXTENSIONS and _probe_wav(path) is not None:
        try:
            with wave.open(str(path), "rb") as w:
                width, channels, rate = w.getsampwidth(), w.getnchannels(), w.getframerate()
                raw = w.readframes(w.getnframes())
            data = pcm_to_float(raw, width, channels)
        except (wave.Error, EOFError, ValueError) as exc:
            raise DataError(f"{path}: cannot decode WAV ({exc})") from None
    else:
        sf = _soundfile(path)
        try:
            data, rate = sf.read(str(path), dtype="float32", always_2d=True)
        except Exception as exc:
            raise DataError(f"{path}: cannot decode audio ({exc})") from None
    if data.shape[0] == 0:
        raise DataError(f"{path}: the file holds no audio samples")
    return data.mean(axis=1).astype(np.float32), int(rate)


def write_wav(path: str | Path, samples: np.ndarray, sample_rate: int, sample_width: int = 2) -> None:
    """Write mono or (samples, channels) float audio as integer PCM (tests and examples)."""
    x = np.asarray(samples, dtype=np.float64)
    x = x.reshape(-1, 1) if x.ndim == 1 else x
    x = np.clip(x, -1.0, 1.0)
    if sample_width == 1:
        raw = np.round(x * 127.0 + 128.0).astype(np.uint8).tobytes()
    elif sample_width == 2:
        raw = np.round(x * 32767.0).astype("<i2").tobytes()
    elif sample_width == 3:
        v = np.round(x * (2**23 - 1)).astype(np.int32).reshape(-1)
        raw = np.stack([v & 255, (v >> 8) & 255, (v >> 16) & 255], axis=1).astype(np.uint8).tobytes()
    elif sample_width == 4:
        raw = np.round(x * (2**31 - 1)).astype("<i4").tobytes()
    else:
        raise ValueError(f"unsupported sample width {sample_width}")
    with wave.open(str(path), "wb") as w:
        w.setnchannels(x.shape[1])
        w.setsampwidth(sample_width)
        w.setframerate(int(sample_rate))
        w.writeframes(raw)


__all__ = ["AUDIO_EXTENSIONS", "AudioInfo", "pcm_to_float", "probe_audio", "read_audio", "write_wav"]
