"""Audio dataset: waveform -> (augment) -> fixed window -> log-mel -> dataset-level normalisation.

Samples are ``(1, num_frames, n_mels)`` float tensors (time first), labels as the source gives them.
Training augmentation (drawn from ``rng_for(index)``, so reproducible per seed/epoch/index):
random time shift inside the window, random gain, and background noise (white or pink) at a random
signal-to-noise ratio. Evaluation centres the clip and adds nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from maskkit.modality import MaskkitDataset

from .features import LogMel, resample, single_thread
from .sources import WaveSource

NORM_MAX_CLIPS = 2000  # clips used to estimate the normalisation statistics


@dataclass(frozen=True)
class Augmentation:
    time_shift: bool = True
    gain_db: float = 6.0  # uniform in [-gain_db, +gain_db]
    noise_prob: float = 0.8
    noise_snr_db: tuple[float, float] = (5.0, 30.0)


def pink_noise(n: int, rng: np.random.Generator) -> np.ndarray:
    """1/f noise by shaping white noise in the frequency domain (unit RMS)."""
    spec = np.fft.rfft(rng.standard_normal(n))
    f = np.arange(len(spec), dtype=np.float64)
    f[0] = 1.0
    x = np.fft.irfft(spec / np.sqrt(f), n=n)
    return x / max(1e-12, float(np.sqrt(np.mean(x**2))))


def place_in_window(x: np.ndarray, length: int, rng: np.random.Generator | None) -> np.ndarray:
    """Crop or zero-pad to ``length`` samples: centred, or at a random offset when ``rng`` is given."""
    n = len(x)
    if n >= length:
        start = (n - length) // 2 if rng is None else int(rng.integers(0, n - length + 1))
        return x[start:start + length]
    offset = (length - n) // 2 if rng is None else int(rng.integers(0, length - n + 1))
    out = np.zeros(length, dtype=np.float32)
    out[offset:offset + n] = x
    return out


class AudioDataset(MaskkitDataset):
    def __init__(self, source: WaveSource, logmel: LogMel, num_frames: int, augment: bool,
                 augmentation: Augmentation | None = None, mean: float = 0.0, std: float = 1.0,
                 seed: int = 0) -> None:
        self.wave_source = source
        self.logmel = logmel
        self.num_frames = num_frames
        self.window = logmel.num_samples(num_frames)
        self.augment = augment
        self.augmentation = augmentation or Augmentation()
        self.mean, self.std = float(mean), float(std)
        self.seed = seed
        self.labels = source.labels
        self.class_names = source.class_names
        self.source = source.source
        self.skipped = list(source.skipped)

    def __len__(self) -> int:
        return len(self.wave_source)

    def waveform(self, index: int, rng: np.random.Generator | None) -> np.ndarray:
        """The window of samples fed to the filterbank (augmented when ``rng`` is given)."""
        x, sr = self.wave_source.load(index)
        if sr != self.logmel.sample_rate:
            with single_thread():
                x = resample(x, sr, self.logmel.sample_rate).numpy()
        x = x - float(np.mean(x)) if len(x) else x  # DC offset would leak into the lowest mel bin
        aug = self.augmentation
        x = place_in_window(x.astype(np.float32), self.window, rng if aug.time_shift else None)
        if rng is None:
            return x
        if aug.gain_db > 0:
            x = x * np.float32(10.0 ** (rng.uniform(-aug.gain_db, aug.gain_db) / 20.0))
        if rng.uniform() < aug.noise_prob:
            rms = float(np.sqrt(np.mean(x**2)))
            snr = rng.uniform(*aug.noise_snr_db)
            noise = pink_noise(len(x), rng) if rng.uniform() < 0.5 else rng.standard_normal(len(x))
            x = x + (rms / 10.0 ** (snr / 20.0) * noise).astype(np.float32)
        return x.astype(np.float32)

    def features(self, index: int, rng: np.random.Generator | None = None) -> Tensor:
        """Unnormalised log-mel (num_frames, n_mels)."""
        wave = torch.from_numpy(self.waveform(index, rng))
        with torch.no_grad(), single_thread():
            return self.logmel(wave)

    def __getitem__(self, index: int) -> tuple[Tensor, int]:
        rng = self.rng_for(index) if self.augment else None
        spec = (self.features(index, rng) - self.mean) / self.std
        return spec.unsqueeze(0), int(self.labels[index])


def normalisation_stats(dataset: AudioDataset) -> tuple[float, float]:
    """Mean and std of clean log-mel values over (up to ``NORM_MAX_CLIPS`` evenly spaced) clips."""
    n = len(dataset)
    picks = np.unique(np.linspace(0, n - 1, min(n, NORM_MAX_CLIPS)).round().astype(int))
    total = total_sq = 0.0
    count = 0
    for chunk in np.array_split(picks, max(1, len(picks) // 256)):
        waves = torch.from_numpy(np.stack([dataset.waveform(int(i), None) for i in chunk]))
        with torch.no_grad():
            f = dataset.logmel(waves).double()  # one batched transform per chunk
        total += float(f.sum())
        total_sq += float(f.square().sum())
        count += f.numel()
    mean = total / count
    std = max(1e-6, (total_sq / count - mean * mean) ** 0.5)
    return mean, std


__all__ = ["AudioDataset", "Augmentation", "normalisation_stats", "pink_noise", "place_in_window"]
