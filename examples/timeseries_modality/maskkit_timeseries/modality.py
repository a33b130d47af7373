"""``TimeSeriesModality``: everything maskkit needs to pre-train on 1-D signals."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from torch import Tensor

from maskkit.config_utils import ConfigError
from maskkit.modality import DataError, MaskkitDataset, Modality, VisualBatch
from maskkit.tokenizer import Tokenizer

from .data import builtin_signals, signal_folder
from .tokenizer import PatchTokenizer1D


@dataclass
class TimeSeriesConfig:
    length: int = 256  # samples per signal
    patch_size: int = 16  # samples per token
    augment: bool = True  # random crop, gain and noise on training data
    norm_pix_loss: bool = True  # per-patch normalised targets (read by Modality.build_loss)

    def __post_init__(self) -> None:
        if self.patch_size < 1 or self.length < self.patch_size:
            raise ConfigError(f"`patch_size` must be in [1, length={self.length}], got {self.patch_size}")
        if self.length % self.patch_size:
            raise ConfigError(
                f"length ({self.length}) must be a multiple of `patch_size` ({self.patch_size})")


class TimeSeriesModality(Modality):
    name = "timeseries"
    description = "1-D signals as patches of consecutive samples (example external modality)."
    Config = TimeSeriesConfig
    default_mask_ratio = 0.75
    default_data = "builtin:signals"
    default_model = "nano"
    builtin_datasets = {"signals": "8 waveform classes (sine, square, sawtooth, triangle, chirp, burst, "
                                   "damped, steps); 800 train / 200 test signals"}

    config: TimeSeriesConfig

    def __init__(self, options: TimeSeriesConfig | None = None) -> None:
        super().__init__(options if options is not None else TimeSeriesConfig())

    def build_dataset(self, data: str | None, train: bool, seed: int = 0,
                      on_bad_file: str = "error") -> MaskkitDataset:
        data = data or self.default_data
        augment = train and self.config.augment
        if data.startswith("builtin:"):
            if data != "builtin:signals":
                raise DataError(f"unknown embedded dataset {data!r}; available: builtin:signals")
            return builtin_signals(self.config.length, train, seed, augment)
        return signal_folder(data, self.config.length, augment, seed, on_bad_file)

    def build_tokenizer(self, embed_dim: int) -> Tokenizer:
        return PatchTokenizer1D(self.config.length, self.config.patch_size, embed_dim)

    # build_loss: the base class's norm-pix MSE is what 1-D patches need

    def raw_features(self, x: Tensor) -> Tensor:
        """Magnitude spectrum: unlike raw samples it ignores where a waveform starts (phase)."""
        spec = torch.fft.rfft(x.float() - x.float().mean(dim=1, keepdim=True), dim=1).abs()
        return spec / spec.sum(dim=1, keepdim=True).clamp_min(1e-8)

    def render(self, batch: VisualBatch, path: Path, title: str | None = None) -> Path:
        """One row per sample: the signal with hidden patches shaded, and the reconstruction."""
        tok = batch.tokenizer
        original = tok.untokenize(batch.tokens.targets.float(), batch.tokens).cpu().numpy()
        pasted = tok.untokenize(batch.pasted_targets.float(), batch.tokens).detach().cpu().numpy()
        mask = batch.plan.mask.cpu().numpy()
        p = batch.tokens.targets.shape[-1]
        rows = original.shape[0]
        fig = Figure(figsize=(10, 1.6 * rows), dpi=90)
        FigureCanvasAgg(fig)
        t = np.arange(original.shape[1])
        for i in range(rows):
            ax = fig.add_subplot(rows, 1, i + 1)
            for j in np.nonzero(mask[i])[0]:
                ax.axvspan(j * p, (j + 1) * p, color="#eeeeee", linewidth=0)
            hidden = np.repeat(mask[i], p)
            ax.plot(t, original[i], color="#1f77b4", linewidth=0.8, label="signal")
            ax.plot(t, np.where(hidden, pasted[i], np.nan), color="#d62728", linewidth=0.8,
                    label="reconstruction (hidden patches)")
            ax.set_xlim(0, len(t))
            ax.tick_params(labelsize=6)
            if i == 0:
                ax.legend(fontsize=6, loc="upper right")
        if title:
            fig.suptitle(title, fontsize=9)
        fig.tight_layout()
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path)
        return path


__all__ = ["TimeSeriesModality", "TimeSeriesConfig"]
