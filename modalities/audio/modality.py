"""The audio modality: options, datasets, spectrogram-patch tokenizer and spectrogram pictures."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch.nn.functional as F
from torch import Tensor

from maskkit.config_utils import ConfigError
from maskkit.modality import DataError, MaskkitDataset, Modality, VisualBatch
from maskkit.records import is_record_spec
from maskkit.registry import register_modality
from maskkit.tokenizer import Tokenizer

from .data import AudioDataset, Augmentation, normalisation_stats
from .draw import render_spectrogram_batch
from .features import LogMel
from .records import record_waves
from .sources import SPOKEN_DIGITS, AudioFiles, ClipBank, ToneSource, WaveSource
from .tokenizer import SpectrogramPatchTokenizer

PRESETS: dict[str, dict[str, int]] = {
    # CPU-sized: 8 kHz, 64 mels, 96 frames (0.975 s), 8x8 patches -> a (12, 8) grid of 96 tokens
    "small": dict(sample_rate=8000, n_mels=64, num_frames=96, patch_size=8),
    # Audio-MAE (AudioSet): 16 kHz, 128 mels, 1024 frames (10.24 s), 16x16 patches -> (64, 8) = 512 tokens
    "audiomae": dict(sample_rate=16000, n_mels=128, num_frames=1024, patch_size=16),
}
BUILTIN = {
    "spoken-digits": "1000 spoken digits zero..nine (espeak-ng, 100 voices, 8 kHz); label = digit",
    "tones": "generated chirps, tones, two-tones and warbles (6 classes); numpy only",
}


def parse_patch(value: object) -> tuple[int, int]:
    """``8``, ``"16x8"`` (time x freq), ``"16,8"`` or ``(16, 8)`` -> (time, freq)."""
    try:
        if isinstance(value, (tuple, list)) and len(value) == 2:
            pt, pf = int(value[0]), int(value[1])
        elif isinstance(value, int) and not isinstance(value, bool):
            pt = pf = value
        elif isinstance(value, str):
            parts = value.lower().strip("[]() ").replace(",", "x").split("x")
            if len(parts) not in (1, 2):
                raise ValueError
            pt, pf = int(parts[0]), int(parts[-1])
        else:
            raise ValueError
    except (TypeError, ValueError):
        raise ConfigError(f"`patch_size` expects N or TxF (time x freq, e.g. 16 or 16x8), got {value!r}"
                          ) from None
    if pt < 1 or pf < 1:
        raise ConfigError(f"`patch_size` must be positive, got {value!r}")
    return pt, pf


@dataclass
class AudioConfig:
    """Audio options (settings ``sample_rate``, ``num_frames``, ``patch_size``; others through ``modality_options``).

    Unset sizes come from ``preset``: ``small`` (CPU: 8 kHz, 64 mels, 96 frames, 8x8 patches) or
    ``audiomae`` (16 kHz, 128 mels, 1024 frames, 16x16 patches).
    """

    preset: Literal["small", "audiomae"] = "small"
    sample_rate: int | None = None
    n_mels: int | None = None
    #: spectrogram frames per sample (the waveform is cropped or zero-padded to fit)
    num_frames: int | None = None
    #: N or "TxF": patch height in frames x width in mel bins
    patch_size: int | str | None = None
    win_ms: float = 25.0
    hop_ms: float = 10.0
    #: None: the smallest power of two >= the window that leaves no mel filter empty
    n_fft: int | None = None
    f_min: float = 0.0
    f_max: float | None = None
    mel_scale: Literal["htk", "slaney"] = "htk"
    #: dataset-level normalisation of log-mel values; None: estimated from the training data
    norm_mean: float | None = None
    norm_std: float | None = None
    norm_pix_loss: bool = True
    #: training augmentation: time shift, gain and background noise (evaluation: none)
    augment: bool = True
    time_shift: bool = True
    gain_db: float = 6.0
    noise_prob: float = 0.8
    noise_snr_db: tuple[float, float] = (5.0, 30.0)
    #: clips in builtin:tones
    builtin_samples: int = 1000
    #: seed of generated sounds (fixed across training seeds so studies see the same data)
    data_seed: int = 0

    def __post_init__(self) -> None:
        if self.preset not in PRESETS:
            raise ConfigError(f"audio option preset must be one of {', '.join(PRESETS)}, got {self.preset!r}")
        for key, value in PRESETS[self.preset].items():
            if getattr(self, key) is None:
                setattr(self, key, value)
        pt, pf = parse_patch(self.patch_size)
        self.patch_size = pt if pt == pf else f"{pt}x{pf}"
        for key in ("sample_rate", "n_mels", "num_frames", "builtin_samples"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"`{key}` must be a positive integer, got {value!r}")
        if self.num_frames % pt or self.n_mels % pf:  # type: ignore[operator]
            raise ConfigError(f"spectrogram {self.num_frames} frames x {self.n_mels} mels is not divisible "
                              f"by `patch_size` {self.patch_size} (time x freq)")
        if self.win_ms <= 0 or self.hop_ms <= 0:
            raise ConfigError(f"`win_ms` and `hop_ms` must be > 0, got {self.win_ms} and {self.hop_ms}")
        nyquist = self.sample_rate / 2  # type: ignore[operator]
        f_max = nyquist if self.f_max is None else self.f_max
        if not 0 <= self.f_min < f_max <= nyquist:
            raise ConfigError(f"need 0 <= `f_min` < `f_max` <= {nyquist:g} Hz (Nyquist), "
                              f"got {self.f_min} and {f_max}")
        if self.norm_std is not None and self.norm_std <= 0:
            raise ConfigError(f"`norm_std` must be > 0, got {self.norm_std}")
        if (self.norm_mean is None) != (self.norm_std is None):
            raise ConfigError("`norm_mean` and `norm_std` must be given together")
        snr = tuple(float(v) for v in self.noise_snr_db)
        if len(snr) != 2 or snr[1] < snr[0]:
            raise ConfigError(f"`noise_snr_db` expects min,max in dB, got {self.noise_snr_db}")
        self.noise_snr_db = snr  # type: ignore[assignment]
        if not 0 <= self.noise_prob <= 1 or self.gain_db < 0:
            raise ConfigError(f"`noise_prob` must be in [0, 1] and `gain_db` >= 0, "
                              f"got {self.noise_prob}, {self.gain_db}")

    @property
    def patch(self) -> tuple[int, int]:
        return parse_patch(self.patch_size)

    def logmel(self) -> LogMel:
        return LogMel(int(self.sample_rate), int(self.n_mels), self.win_ms, self.hop_ms,  # type: ignore[arg-type]
                      n_fft=self.n_fft, f_min=self.f_min, f_max=self.f_max, scale=self.mel_scale)


@register_modality
class AudioModality(Modality):
    name = "audio"
    description = "Log-mel spectrograms as (time x freq) patches (Audio-MAE); WAV/FLAC/OGG folders, clip npz."
    Config = AudioConfig
    default_mask_ratio = 0.8
    default_data = "builtin:spoken-digits"
    default_model = "micro"
    builtin_datasets = dict(BUILTIN)

    config: AudioConfig

    def __init__(self, options: AudioConfig | None = None) -> None:
        super().__init__(options if options is not None else AudioConfig())

    def open_source(self, data: str, on_bad_file: str = "error") -> WaveSource:
        o = self.config
        if data == "builtin:spoken-digits":
            if not SPOKEN_DIGITS.is_file():
                raise DataError(f"{SPOKEN_DIGITS}: the embedded spoken digits are missing; regenerate them "
                                "with scripts/make_spoken_digits.py")
            source: WaveSource = ClipBank(SPOKEN_DIGITS)
            source.source = data
            return source
        if data == "builtin:tones":
            return ToneSource(o.builtin_samples, int(o.sample_rate), o.data_seed)  # type: ignore[arg-type]
        if data.startswith("builtin:"):
            known = ", ".join(f"builtin:{k}" for k in BUILTIN)
            raise DataError(f"`data` {data}: unknown embedded audio dataset; known: {known}")
        if is_record_spec(data):
            return record_waves(data, on_bad_file)
        path = Path(data).expanduser()
        if path.is_file() and path.suffix.lower() == ".npz":
            return ClipBank(path)
        return AudioFiles(path, on_bad_file=on_bad_file)

    def build_dataset(self, data: str | None, train: bool, seed: int = 0,
                      on_bad_file: str = "error") -> AudioDataset:
        """``data``: ``builtin:spoken-digits`` / ``builtin:tones``, a WAV/FLAC/OGG file or folder
        (``root/class/file.wav`` gives labels), or a clip npz (``audio`` + ``offsets`` + ``sample_rate``)."""
        o = self.config
        aug = Augmentation(time_shift=o.time_shift, gain_db=o.gain_db, noise_prob=o.noise_prob,
                           noise_snr_db=o.noise_snr_db)  # type: ignore[arg-type]
        ds = AudioDataset(self.open_source(data or self.default_data, on_bad_file), o.logmel(),
                          int(o.num_frames), augment=train and o.augment, augmentation=aug, seed=seed)  # type: ignore[arg-type]
        if o.norm_mean is None or o.norm_std is None:
            mean, std = normalisation_stats(ds)
            ds.mean, ds.std = round(mean, 6), round(std, 6)
        else:
            ds.mean, ds.std = float(o.norm_mean), float(o.norm_std)
        return ds

    def adapt_to_dataset(self, dataset: MaskkitDataset) -> None:
        """Record the normalisation statistics so evaluation datasets and checkpoints reuse them."""
        if not isinstance(dataset, AudioDataset):
            raise DataError(f"audio modality cannot use dataset {type(dataset).__name__}")
        self.config.norm_mean, self.config.norm_std = dataset.mean, dataset.std

    def build_tokenizer(self, embed_dim: int) -> Tokenizer:
        o = self.config
        return SpectrogramPatchTokenizer(int(o.num_frames), int(o.n_mels), o.patch, embed_dim)  # type: ignore[arg-type]

    def raw_features(self, x: Tensor) -> Tensor:
        """The normalised log-mel pooled 4x4 (time x mel): a raw baseline of a few hundred dims."""
        return F.avg_pool2d(x.float(), kernel_size=4, ceil_mode=True).reshape(x.shape[0], -1)

    def render(self, batch: VisualBatch, path: Path, title: str | None = None) -> Path:
        return render_spectrogram_batch(batch, path, title)


__all__ = ["AudioModality", "AudioConfig", "PRESETS", "parse_patch"]
