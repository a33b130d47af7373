"""Video clips from record sources (WebDataset shards, ``hf:`` datasets): bytes decoded by PyAV,
seeking to the clip's first frame as for files."""

from __future__ import annotations

import io

import numpy as np

from maskkit.modality import DataError
from maskkit.records import RecordSource, open_records

from .data import VideoDataset
from .io import probe_video, read_video

VIDEO_KEYS = ("mp4", "avi", "webm", "mkv", "mov", "video")


def check_video_record(fields: dict[str, bytes]) -> int:
    """Frame count (decodes the first frame, as for files); raises DataError for unreadable bytes."""
    data = next(iter(fields.values()))
    if not data:
        raise DataError("empty video")
    try:
        return probe_video(io.BytesIO(data), name="record")
    except DataError as exc:
        raise DataError(str(exc).removeprefix("record: ")) from None


class RecordVideos(VideoDataset):
    def __init__(self, records: RecordSource, **kw: object) -> None:
        super().__init__(source=records.source, **kw)  # type: ignore[arg-type]
        self.records = records
        self.counts = [int(c) for c in records.results]
        self.labels = np.asarray(records.labels)
        self.class_names = records.class_names
        self.skipped = records.skipped

    def frame_count(self, index: int) -> int:
        return self.counts[index]

    def read(self, index: int, indices: np.ndarray) -> np.ndarray:
        data = next(iter(self.records.read(index).values()))
        return read_video(io.BytesIO(data), indices, name=self.records.where(index))


def record_videos(data: str, on_bad_file: str, **kw: object) -> RecordVideos:
    records = open_records(data, VIDEO_KEYS, check_video_record, on_bad_file, kind="shards-video")
    return RecordVideos(records, **kw)


__all__ = ["RecordVideos", "VIDEO_KEYS", "check_video_record", "record_videos"]
