"""Reading clips: video files through PyAV (optional ``maskkit[video]``), folders of frame images,
and ``.npy``/``.npz`` arrays. Readers return frames as (T, H, W, C) uint8 or float arrays.

Problems raise :class:`~maskkit.modality.DataError` naming the file and the reason.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
from PIL import Image, UnidentifiedImageError

from maskkit.modality import ARRAY_LABEL_KEYS, DataError

VIDEO_EXTENSIONS = {".mp4", ".avi", ".webm", ".mkv", ".mov", ".m4v"}
FRAME_EXTENSIONS = {".png", ".jpg", ".jpeg", ".bmp", ".webp"}
ARRAY_EXTENSIONS = {".npy", ".npz"}
ARRAY_KEYS = ("videos", "clips", "x", "X", "data", "arr_0")
LABEL_KEYS = ARRAY_LABEL_KEYS


def _av(path: Path) -> Any:
    try:
        import av
    except ImportError:
        raise DataError(f"{path}: reading video files needs PyAV; "
                        "install it with: pip install 'maskkit[video]'") from None
    return av


def probe_video(path: str | Path | BinaryIO, name: str | None = None) -> int:
    """Frame count of a video file (header value or estimate from duration); decodes the first frame
    so corrupt streams fail here, when the dataset opens, rather than in a DataLoader worker.
    ``path`` may be an open binary file (a record's bytes) called ``name`` in errors."""
    label = name or str(path)
    av = _av(Path(label))
    source = path if hasattr(path, "read") else str(path)
    path = Path(label)
    try:
        with av.open(source) as container:
            if not container.streams.video:
                raise DataError(f"{path}: the file has no video stream")
            stream = container.streams.video[0]
            count = int(stream.frames or 0)
            if count <= 0 and stream.duration and stream.time_base and stream.average_rate:
                count = int(round(float(stream.duration * stream.time_base * stream.average_rate)))
            if count <= 0 and container.duration and stream.average_rate:
                count = int(round(container.duration / 1_000_000 * float(stream.average_rate)))
            try:
                first = next(iter(container.decode(stream)), None)
            except EOFError:  # PyAV's end-of-file error is an EOFError too
                first = None
            if first is None:
                raise DataError(f"{path}: the video has no decodable frames")
            if count <= 0:  # no usable header: count by decoding (rare)
                count = 1 + sum(1 for _ in container.decode(stream))
    except DataError:
        raise
    except Exception as exc:  # PyAV raises many error types (InvalidDataError, OSError, ...)
        raise DataError(f"{path}: not a readable video ({type(exc).__name__}: {exc})") from None
    return count


def read_video(path: str | Path | BinaryIO, indices: np.ndarray, name: str | None = None) -> np.ndarray:
    """Frames ``indices`` as (len, H, W, 3) uint8; indices past the end repeat the last frame.

    Seeks to the keyframe before the first wanted frame (PyAV ``seek``) and decodes from there, so a
    clip late in a long video costs a GOP of decoding, not the whole file up to it. ``path`` may be
    an open binary file (a record's bytes); ``name`` is then what errors call it.
    """
    label = name or str(path)
    av = _av(Path(label))
    try:
        with av.open(path if not isinstance(path, Path) else str(path)) as container:
            frames, _ = decode_frames(container, indices)
    except DataError as exc:
        raise DataError(f"{label}: {exc}") from None
    except Exception as exc:
        raise DataError(f"{label}: cannot decode video ({type(exc).__name__}: {exc})") from None
    return frames


def decode_frames(container: Any, indices: np.ndarray) -> tuple[np.ndarray, int]:
    """(frames, frames decoded). Frame numbers come from timestamps after a seek (exact for constant
    frame rate); without usable timestamps, or when the seek overshoots, decoding restarts at 0."""
    stream = container.streams.video[0]
    wanted = {int(i) for i in indices}
    first, last = min(wanted), max(wanted)
    rate, base = stream.average_rate, stream.time_base
    start = stream.start_time or 0
    seekable = first > 0 and rate and base
    if seekable:
        container.seek(start + int(first / rate / base), stream=stream, backward=True, any_frame=False)
    got: dict[int, np.ndarray] = {}
    latest = None
    decoded = 0
    for i, frame in enumerate(container.decode(stream)):
        decoded += 1
        if seekable:
            if frame.pts is None or (i == 0 and round((frame.pts - start) * base * rate) > first):
                container.seek(start, stream=stream, backward=True, any_frame=False)  # fall back: from 0
                frames, more = _decode_from_start(container, stream, wanted, last)
                return frames_for(frames, indices), decoded + more
            index = round((frame.pts - start) * base * rate)
        else:
            index = i
        if index in wanted:
            got[index] = frame.to_ndarray(format="rgb24")
        latest = (index, frame)
        if index >= last:
            break
    if latest is None:
        raise DataError("the video has no decodable frames")
    end_i, end_frame = latest
    got.setdefault(end_i, end_frame.to_ndarray(format="rgb24"))
    return frames_for((got, end_i), indices), decoded


def _decode_from_start(container: Any, stream: Any, wanted: set[int], last: int
                       ) -> tuple[tuple[dict[int, np.ndarray], int], int]:
    got: dict[int, np.ndarray] = {}
    latest = None
    count = 0
    for i, frame in enumerate(container.decode(stream)):
        count += 1
        if i in wanted:
            got[i] = frame.to_ndarray(format="rgb24")
        latest = (i, frame)
        if i >= last:
            break
    if latest is None:
        raise DataError("the video has no decodable frames")
    got.setdefault(latest[0], latest[1].to_ndarray(format="rgb24"))
    return (got, latest[0]), count


def frames_for(found: tuple[dict[int, np.ndarray], int], indices: np.ndarray) -> np.ndarray:
    """Stack the wanted frames; any past the last decoded one repeat it."""
    got, end = found
    tail = got[end]
    return np.stack([got.get(int(i), tail) if int(i) <= end else tail for i in indices])


def list_frames(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in FRAME_EXTENSIONS)


def probe_frames(folder: Path) -> int:
    """Frame count of a folder of frame images; opens the first one to catch unreadable files early."""
    frames = list_frames(folder)
    if not frames:
        raise DataError(f"{folder}: the frame folder holds no images ({', '.join(sorted(FRAME_EXTENSIONS))})")
    _read_image(frames[0])
    return len(frames)


def _read_image(path: Path) -> np.ndarray:
    try:
        with Image.open(path) as img:
            return np.asarray(img.convert("RGB"))
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise DataError(f"{path}: not a readable image ({exc})") from None


def read_frames(folder: Path, indices: np.ndarray) -> np.ndarray:
    """(len, H, W, 3) uint8 from a frame folder, frames in file-name order."""
    frames = list_frames(folder)
    if not frames:
        raise DataError(f"{folder}: the frame folder holds no images")
    cache: dict[int, np.ndarray] = {}
    out = []
    for i in indices:
        j = min(int(i), len(frames) - 1)
        if j not in cache:
            cache[j] = _read_image(frames[j])
        out.append(cache[j])
    shapes = {a.shape for a in out}
    if len(shapes) > 1:
        raise DataError(f"{folder}: frames differ in size ({sorted(shapes)})")
    return np.stack(out)


def load_clip_array(path: Path) -> tuple[np.ndarray, np.ndarray | None]:
    """Clips as (N, T, H, W, C) (lazily for .npy) and labels if stored.

    Accepted: (N, T, H, W) grey, (N, T, H, W, C) with C in {1, 3}, or one clip (T, H, W, C).
    """
    try:
        if path.suffix.lower() == ".npy":
            arr, labels = np.load(path, mmap_mode="r", allow_pickle=False), None
        else:
            with np.load(path, allow_pickle=False) as z:
                key = next((k for k in ARRAY_KEYS if k in z.files), None)
                if key is None and len(z.files) == 1:
                    key = z.files[0]
                if key is None:
                    raise DataError(f"{path}: no clip array found; name it one of {', '.join(ARRAY_KEYS)}")
                arr = z[key]
                lk = next((k for k in LABEL_KEYS if k in z.files), None)
                labels = np.asarray(z[lk]).astype(np.int64).reshape(-1) if lk else None
    except DataError:
        raise
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: not a readable array file ({exc})") from None
    if arr.ndim == 4 and arr.shape[-1] in (1, 3):
        arr = arr[None]  # one clip (T, H, W, C)
    elif arr.ndim == 4:
        arr = arr[..., None]  # grey clips (N, T, H, W)
    if arr.ndim != 5 or arr.shape[-1] not in (1, 3):
        raise DataError(f"{path}: expected clips shaped (N, T, H, W[, C]) or (T, H, W, C) with C in 1 or 3, "
                        f"got {tuple(arr.shape)}")
    if 0 in arr.shape:
        raise DataError(f"{path}: the array is empty, shape {tuple(arr.shape)}")
    if labels is not None and len(labels) != arr.shape[0]:
        raise DataError(f"{path}: {len(labels)} labels for {arr.shape[0]} clips")
    return arr, labels


def write_video(path: str | Path, frames: np.ndarray, fps: int = 8, codec: str = "libx264") -> None:
    """(T, H, W, 3) uint8 frames -> a video file (tests and examples); H and W should be even."""
    av = _av(Path(path))
    frames = np.asarray(frames, dtype=np.uint8)
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream(codec, rate=fps)
        stream.width, stream.height = frames.shape[2], frames.shape[1]
        stream.pix_fmt = "yuv420p"
        for img in frames:
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(img), format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


__all__ = ["ARRAY_EXTENSIONS", "FRAME_EXTENSIONS", "VIDEO_EXTENSIONS", "list_frames", "load_clip_array",
           "probe_frames", "probe_video", "read_frames", "read_video", "write_video"]
