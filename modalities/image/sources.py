"""Which image dataset a ``data`` string names: an embedded set, a folder or an array file.

Kept apart from ``data.py`` because the embedded object set builds on ``data.py`` itself.
"""

from __future__ import annotations

from pathlib import Path

from maskkit.errors import DataError

from .data import ARRAY_SUFFIXES, BUILTIN, ImageDataset, ImageFolder, PhotoCrops, array_dataset, digits_dataset
from .objects import ObjectImages
from .transforms import Policy


def open_dataset(data: str, *, size: tuple[int, int], channels: int | None, augment: bool,
                 policy: Policy, seed: int, on_bad_file: str = "error") -> ImageDataset:
    """``builtin:NAME``, a folder of PNG/JPEG or a .npy/.npz file -> dataset (not yet standardised)."""
    common = dict(size=size, channels=channels, augment=augment, policy=policy, seed=seed)
    if data.startswith("builtin:"):
        name = data.split(":", 1)[1]
        if name == "digits":
            return digits_dataset(**common)
        if name == "photos":
            return PhotoCrops(**common)  # type: ignore[arg-type]
        if name == "objects":
            return ObjectImages(**common)  # type: ignore[arg-type]
        raise DataError(f"`data` {data}: unknown built-in image dataset; choose from "
                        f"{', '.join('builtin:' + k for k in BUILTIN)}")
    path = Path(data).expanduser()
    if not path.exists():
        raise DataError(f"`data` {data}: does not exist")
    if path.is_dir():
        return ImageFolder(path, data, on_bad_file=on_bad_file, **common)  # type: ignore[arg-type]
    if path.suffix.lower() in ARRAY_SUFFIXES:
        return array_dataset(path, data, **common)
    raise DataError(f"`data` {data}: expected a folder of PNG/JPEG images, a .npy/.npz array file "
                    f"or builtin:NAME")


