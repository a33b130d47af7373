"""Images from record sources (WebDataset shards, ``hf:`` datasets): bytes decoded with Pillow."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, UnidentifiedImageError
from torch import Tensor

from maskkit.modality import DataError
from maskkit.records import RecordSource, open_records

from .data import GREY_MODES, ImageDataset, _pil_to_tensor

IMAGE_KEYS = ("jpg", "jpeg", "png", "webp", "image", "img")


def check_image_record(fields: dict[str, bytes]) -> str:
    """The picture's colour mode; raises DataError for bytes Pillow cannot read (checked as on files)."""
    data = next(iter(fields.values()))
    if not data:
        raise DataError("empty image")
    try:
        with Image.open(io.BytesIO(data)) as im:
            mode, fmt = im.mode, im.format
            im.verify()
    except UnidentifiedImageError:
        raise DataError("not an image Pillow can read (cannot identify image file)") from None
    except Exception as exc:  # noqa: BLE001 - Pillow raises many types for damaged data
        raise DataError(f"damaged image ({type(exc).__name__}: {exc})") from None
    if fmt in ("JPEG", "MPO") and b"\xff\xd9" not in data[-4096:]:
        raise DataError("truncated JPEG (no end-of-image marker)")
    return mode


class RecordImages(ImageDataset):
    """Pictures from a record source; labels from ``cls``/``json`` members or a ClassLabel column."""

    stats_samples = 64

    def __init__(self, records: RecordSource, channels: int | None, **kwargs: object) -> None:
        self.records = records
        self.skipped = records.skipped
        modes = records.results
        if channels is None:
            self.mode = "L" if all(m in GREY_MODES for m in modes) else "RGB"
        else:
            self.mode = {1: "L", 3: "RGB", 4: "RGBA"}.get(channels, "RGB")
        natural = {"L": 1, "RGB": 3, "RGBA": 4}[self.mode]
        super().__init__(natural_channels=natural, channels=channels, labels=np.asarray(records.labels),
                         class_names=records.class_names, keep_aspect=True, source=records.source,
                         **kwargs)  # type: ignore[arg-type]

    def load(self, index: int) -> Tensor:
        data = next(iter(self.records.read(index).values()))
        try:
            with Image.open(io.BytesIO(data)) as im:
                if im.format == "JPEG":
                    h, w = self.size
                    im.draft("L" if self.mode == "L" else "RGB", (2 * w, 2 * h))
                return _pil_to_tensor(im, self.mode)
        except Exception as exc:  # noqa: BLE001 - decoding can fail in many ways
            raise DataError(f"{self.records.where(index)}: cannot decode image ({type(exc).__name__}: {exc})"
                            ) from None

    def describe(self) -> str:
        skipped = f", {len(self.skipped)} unreadable record(s) skipped" if self.skipped else ""
        return f"{len(self)} images from {self.source}{skipped}"


def record_images(data: str, on_bad_file: str, channels: int | None, **kwargs: object) -> RecordImages:
    records = open_records(data, IMAGE_KEYS, check_image_record, on_bad_file, kind="shards-image")
    return RecordImages(records, channels=channels, **kwargs)


__all__ = ["IMAGE_KEYS", "RecordImages", "check_image_record", "record_images"]
