"""Time-series datasets: the embedded ``builtin:signals`` or a folder of ``.npy`` 1-D signals.

Augmentation draws from ``rng_for(index)`` (maskkit's rule), so a seed and an epoch fix every
sample whichever worker loads it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from maskkit.modality import DataError, MaskkitDataset, scan_files

from .signals import generate_signals


class SignalDataset(MaskkitDataset):
    """Items are ``((length,) float32, label)``; with augmentation: random crop, gain and noise."""

    def __init__(self, signals: list[np.ndarray], labels: np.ndarray, class_names: list[str] | None,
                 length: int, augment: bool, seed: int, source: str) -> None:
        self.signals = signals
        self.labels = np.asarray(labels, dtype=np.int64)
        self.class_names = class_names
        self.length = length
        self.augment = augment
        self.seed = seed
        self.source = source

    def __len__(self) -> int:
        return len(self.signals)

    def __getitem__(self, index: int) -> tuple[Tensor, int]:
        x = self.signals[index]
        extra = len(x) - self.length
        if self.augment:
            rng = self.rng_for(index)
            start = int(rng.integers(0, extra + 1))
            x = x[start:start + self.length] * rng.uniform(0.8, 1.2) + rng.normal(0, 0.02, self.length)
        else:
            x = x[extra // 2: extra // 2 + self.length]
        return torch.as_tensor(np.asarray(x, dtype=np.float32)), int(self.labels[index])


def builtin_signals(length: int, train: bool, seed: int, augment: bool) -> SignalDataset:
    """800 training / 200 test signals (8 classes), a quarter longer than ``length`` so augmentation
    can crop at random; the data do not depend on the run seed."""
    per_class = 100 if train else 25
    signals, labels, names = generate_signals(per_class, length + length // 4, seed=0 if train else 1)
    return SignalDataset(list(signals), labels, names, length, augment, seed,
                         "builtin:signals" + ("" if train else " (test split)"))


def signal_folder(root: str | Path, length: int, augment: bool, seed: int,
                  on_bad_file: str = "error") -> SignalDataset:
    """``.npy`` files holding 1-D arrays of at least ``length`` samples; class sub-folders = labels."""
    base = Path(root).expanduser()
    if not base.is_dir():
        raise DataError(f"{base}: not a folder (expected .npy signal files, or builtin:signals)")
    files = sorted(base.rglob("*.npy"))
    if not files:
        raise DataError(f"{base}: no .npy files found")
    class_names = sorted({f.relative_to(base).parts[0] for f in files if len(f.relative_to(base).parts) > 1})
    index = {c: i for i, c in enumerate(class_names)}
    good, signals, _ = scan_files(files, lambda f: _load_signal(f, length), on_bad_file, str(base))
    labels = [index[f.relative_to(base).parts[0]] if len(f.relative_to(base).parts) > 1 else -1 for f in good]
    return SignalDataset(signals, np.asarray(labels), class_names or None, length, augment, seed, str(base))


def _load_signal(path: Path, length: int) -> np.ndarray:
    try:
        x = np.load(path, allow_pickle=False)
    except Exception as exc:
        raise DataError(f"{path}: cannot read .npy ({exc})") from None
    if x.ndim != 1 or not np.issubdtype(x.dtype, np.number):
        raise DataError(f"{path}: expected a 1-D numeric array, got shape {x.shape} dtype {x.dtype}")
    if len(x) < length:
        raise DataError(f"{path}: {len(x)} samples, shorter than length {length}")
    if not np.isfinite(x).all():
        raise DataError(f"{path}: contains NaN or inf")
    return x.astype(np.float32)


__all__ = ["SignalDataset", "builtin_signals", "signal_folder"]
