"""Point clouds from record sources (WebDataset shards with ``npy``/``npz``/``ply`` members, ``hf:``
datasets with a ``points`` column): read per sample with the same parsers and checks as files."""

from __future__ import annotations

import functools
import zlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from maskkit.records import RecordSource, open_records

from .data import Augmentation, PointCloudDataset, normalised
from .io import geometry_from_bytes, points_of

POINT_KEYS = ("npy", "npz", "ply", "points")


def _points(fields: dict[str, bytes], name: str, cap: int) -> np.ndarray:
    key, data = next(iter(fields.items()))
    path = Path(name)
    return points_of(path, geometry_from_bytes(data, key, name), cap, seed=zlib.crc32(name.encode()))


def check_points_record(fields: dict[str, bytes], cap: int) -> int:
    return int(len(_points(fields, "record", cap)))


class RecordClouds(Sequence):
    """Normalised clouds decoded from records on access (nothing held in memory)."""

    def __init__(self, records: RecordSource, cap: int) -> None:
        self.records = records
        self.cap = cap

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index):  # type: ignore[override]
        return normalised(_points(self.records.read(index), self.records.where(index), self.cap))


def record_clouds(data: str, on_bad_file: str, num_points: int, augment: bool, seed: int,
                  augmentation: Augmentation | None) -> PointCloudDataset:
    cap = max(2 * num_points, 2048)
    records = open_records(data, POINT_KEYS, functools.partial(check_points_record, cap=cap), on_bad_file,
                           kind=f"shards-pointcloud-{cap}")
    return PointCloudDataset(RecordClouds(records, cap), np.asarray(records.labels), records.class_names,
                             num_points, augment, seed, source=records.source, augmentation=augmentation,
                             skipped=records.skipped)


__all__ = ["POINT_KEYS", "RecordClouds", "check_points_record", "record_clouds"]
