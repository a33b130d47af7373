"""Where waveforms come from: a clip bank (npz), a folder of audio files, or generated tones.

A source only hands out ``(mono float32 samples, sample_rate)`` per index plus labels; framing,
augmentation and features live in :mod:`maskkit.modalities.audio.data`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from maskkit.modality import DataError, folder_labels, scan_files

from .io import AUDIO_EXTENSIONS, probe_audio, read_audio

DATA_DIR = Path(__file__).resolve().parent / "data"
SPOKEN_DIGITS = DATA_DIR / "spoken_digits.npz"
TONE_CLASSES = ["rising-chirp", "falling-chirp", "low-tone", "high-tone", "two-tone", "warble"]


class WaveSource:
    """Base: ``len``, ``load(i)``, ``labels`` (-1 when unknown), ``class_names``, ``source``."""

    labels: np.ndarray
    class_names: list[str] | None = None
    source: str = ""
    skipped: list[tuple[str, str]]

    def __len__(self) -> int:
        return len(self.labels)

    def load(self, index: int) -> tuple[np.ndarray, int]:
        raise NotImplementedError


class ClipBank(WaveSource):
    """Clips in one npz: ``audio`` (all clips concatenated) + ``offsets`` (N+1) + ``sample_rate``,
    or ``clips`` (N, S) + ``sample_rate``; optional ``labels`` and ``class_names``.

    int16 audio is scaled by 1/32768; float audio is taken as is.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.source = str(self.path)
        self.skipped = []
        try:
            with np.load(self.path, allow_pickle=False) as z:
                arrays = {k: z[k] for k in z.files}
        except (OSError, ValueError) as exc:
            raise DataError(f"{self.path}: not a readable npz file ({exc})") from None
        if "sample_rate" not in arrays:
            raise DataError(f"{self.path}: an audio npz needs a 'sample_rate' entry")
        self.sample_rate = int(arrays["sample_rate"])
        if "audio" in arrays and "offsets" in arrays:
            audio, offsets = arrays["audio"].reshape(-1), arrays["offsets"].astype(np.int64)
            if offsets[0] != 0 or offsets[-1] != len(audio) or np.any(np.diff(offsets) < 0):
                raise DataError(f"{self.path}: 'offsets' must rise from 0 to len(audio) = {len(audio)}")
        elif "clips" in arrays and arrays["clips"].ndim == 2:
            clips = arrays["clips"]
            audio = clips.reshape(-1)
            offsets = np.arange(clips.shape[0] + 1, dtype=np.int64) * clips.shape[1]
        else:
            raise DataError(f"{self.path}: expected 'audio' + 'offsets' or a 2-D 'clips' array")
        self.audio, self.offsets = audio, offsets
        self.scale = 1.0 / 32768.0 if audio.dtype == np.int16 else 1.0
        n = len(offsets) - 1
        if n == 0 or np.all(np.diff(offsets) == 0):
            raise DataError(f"{self.path}: the npz holds no audio clips")
        self.labels = arrays["labels"].astype(np.int64) if "labels" in arrays else np.full(n, -1, np.int64)
        if len(self.labels) != n:
            raise DataError(f"{self.path}: {len(self.labels)} labels for {n} clips")
        self.class_names = [str(c) for c in arrays["class_names"]] if "class_names" in arrays else None
        self.extras = {k: v for k, v in arrays.items() if k not in ("audio", "offsets", "clips")}

    def load(self, index: int) -> tuple[np.ndarray, int]:
        a, b = self.offsets[index], self.offsets[index + 1]
        return self.audio[a:b].astype(np.float32) * self.scale, self.sample_rate


def audio_length(path: Path) -> int:
    """Module-level (picklable) check for the cached, parallel scan: the header's sample count."""
    return probe_audio(path).num_samples


class AudioFiles(WaveSource):
    """A file or a folder (searched recursively) of WAV/FLAC/OGG; headers are checked on open."""

    def __init__(self, path: str | Path, on_bad_file: str = "error") -> None:
        root = Path(path)
        self.source = str(root)
        if root.is_file():
            files, base = [root], root.parent
        elif root.is_dir():
            files = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in AUDIO_EXTENSIONS)
            base = root
        else:
            raise DataError(f"{root}: no such file or folder")
        if not files:
            raise DataError(f"{root}: no audio files ({', '.join(sorted(AUDIO_EXTENSIONS))}) found")
        good, _, self.skipped = scan_files(files, audio_length, on_bad_file, str(root),
                                           index=(base, "audio-files"))
        self.files = good
        self.labels, self.class_names = folder_labels(good, base)

    def load(self, index: int) -> tuple[np.ndarray, int]:
        return read_audio(self.files[index])


def tone_clip(label: int, rng: np.random.Generator, sample_rate: int) -> np.ndarray:
    """One labelled synthetic sound (numpy only): chirps, steady tones, two tones, a warble."""
    duration = rng.uniform(0.3, 0.8)
    t = np.arange(int(duration * sample_rate)) / sample_rate
    top = 0.4 * sample_rate
    lo, hi = rng.uniform(0.03, 0.08) * top, rng.uniform(0.3, 0.9) * top
    name = TONE_CLASSES[label]
    if name in ("rising-chirp", "falling-chirp"):
        f0, f1 = (lo, hi) if name == "rising-chirp" else (hi, lo)
        phase = 2 * np.pi * (f0 * t + (f1 - f0) * t**2 / (2 * duration))
        x = np.sin(phase)
    elif name in ("low-tone", "high-tone"):
        f = lo * rng.uniform(1.0, 2.0) if name == "low-tone" else hi
        x = np.sin(2 * np.pi * f * t + rng.uniform(0, 2 * np.pi))
    elif name == "two-tone":
        half = t < duration / 2
        x = np.where(half, np.sin(2 * np.pi * lo * 2 * t), np.sin(2 * np.pi * hi * t))
    else:  # warble: frequency modulation around a centre
        centre, rate = rng.uniform(lo * 2, hi), rng.uniform(4, 12)
        phase = 2 * np.pi * centre * t + (0.3 * centre / rate) * np.sin(2 * np.pi * rate * t)
        x = np.sin(phase)
    envelope = np.minimum(1.0, np.minimum(t, duration - t) / 0.02)  # 20 ms fades
    return (0.5 * x * envelope).astype(np.float32)


class ToneSource(WaveSource):
    """``builtin:tones``: generated on demand from ``(seed, index)``, balanced over six classes."""

    def __init__(self, num_samples: int, sample_rate: int, seed: int = 0) -> None:
        self.sample_rate = sample_rate
        self.seed = seed
        self.labels = np.arange(num_samples, dtype=np.int64) % len(TONE_CLASSES)
        self.class_names = list(TONE_CLASSES)
        self.source = "builtin:tones"
        self.skipped = []

    def load(self, index: int) -> tuple[np.ndarray, int]:
        rng = np.random.default_rng([self.seed, 7919, index])
        return tone_clip(int(self.labels[index]), rng, self.sample_rate), self.sample_rate


__all__ = ["AudioFiles", "ClipBank", "SPOKEN_DIGITS", "TONE_CLASSES", "ToneSource", "WaveSource",
           "folder_labels", "tone_clip"]
