"""Audio from record sources (WebDataset shards, ``hf:`` datasets): WAV bytes through ``wave``,
FLAC/OGG (and odd WAVs) through soundfile, exactly as files are read."""

from __future__ import annotations

import io
import wave

import numpy as np

from maskkit.modality import DataError
from maskkit.records import RecordSource, open_records

from .io import pcm_to_float
from .sources import WaveSource

AUDIO_KEYS = ("wav", "flac", "ogg", "audio")


def decode_audio_bytes(data: bytes) -> tuple[np.ndarray, int]:
    """Mono float32 samples and the sample rate from an encoded file's bytes."""
    if not data:
        raise DataError("empty audio")
    if data[:4] == b"RIFF":
        try:
            with wave.open(io.BytesIO(data), "rb") as w:
                width, channels, rate = w.getsampwidth(), w.getnchannels(), w.getframerate()
                samples = pcm_to_float(w.readframes(w.getnframes()), width, channels)
        except (wave.Error, EOFError, ValueError):
            samples = None  # float or extensible WAV: soundfile below
        if samples is not None:
            if samples.shape[0] == 0:
                raise DataError("the audio holds no samples")
            return samples.mean(axis=1).astype(np.float32), int(rate)
    try:
        import soundfile
    except ImportError:
        raise DataError("decoding FLAC/OGG needs soundfile; install it with: pip install 'maskkit[audio]'"
                        ) from None
    try:
        samples, rate = soundfile.read(io.BytesIO(data), dtype="float32", always_2d=True)
    except Exception as exc:  # noqa: BLE001 - soundfile raises its own types
        raise DataError(f"not a readable audio file ({exc})") from None
    if samples.shape[0] == 0:
        raise DataError("the audio holds no samples")
    return samples.mean(axis=1).astype(np.float32), int(rate)


def check_audio_record(fields: dict[str, bytes]) -> int:
    """Decodes once when the shard is indexed (cached); returns the sample count."""
    return int(decode_audio_bytes(next(iter(fields.values())))[0].shape[0])


class RecordWaves(WaveSource):
    def __init__(self, records: RecordSource) -> None:
        self.records = records
        self.source = records.source
        self.labels = np.asarray(records.labels)
        self.class_names = records.class_names
        self.skipped = records.skipped

    def load(self, index: int) -> tuple[np.ndarray, int]:
        try:
            return decode_audio_bytes(next(iter(self.records.read(index).values())))
        except DataError as exc:
            raise DataError(f"{self.records.where(index)}: {exc}") from None


def record_waves(data: str, on_bad_file: str) -> RecordWaves:
    return RecordWaves(open_records(data, AUDIO_KEYS, check_audio_record, on_bad_file, kind="shards-audio"))


__all__ = ["AUDIO_KEYS", "RecordWaves", "check_audio_record", "decode_audio_bytes", "record_waves"]
