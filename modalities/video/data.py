"""Video datasets: video files and frame folders (decoded in ``__getitem__``, so DataLoader workers
decode in parallel), ``.npy``/``.npz`` clip arrays and the generated ``builtin:moving-digits``.

Every dataset returns ``(float tensor (C, T, H, W) in [0, 1], label)``. One sample per video: a
clip of ``num_frames`` frames every ``frame_stride`` frames, starting at random in training and
centred in evaluation; a video that is too short repeats its last frame. Frames are resized
(training: random crop of 70-100% of the frame's side plus horizontal flip; evaluation: the
largest centred crop with the target's aspect ratio).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from maskkit.modality import DataError, MaskkitDataset, folder_labels, scan_files
from maskkit.threads import single_thread

from .io import (
    ARRAY_EXTENSIONS,
    FRAME_EXTENSIONS,
    VIDEO_EXTENSIONS,
    load_clip_array,
    probe_frames,
    probe_video,
    read_frames,
    read_video,
)
from .synthetic import MOTIONS, moving_digit_clip

CROP_SCALE = (0.7, 1.0)



def frame_indices(count: int, num_frames: int, stride: int, rng: np.random.Generator | None) -> np.ndarray:
    """Indices of one clip: random start (``rng``) or centred; clamped to the last frame."""
    span = (num_frames - 1) * stride + 1
    slack = count - span
    if slack <= 0:
        start = 0
    else:
        start = int(rng.integers(0, slack + 1)) if rng is not None else slack // 2
    return np.minimum(start + stride * np.arange(num_frames), max(0, count - 1))


def match_channels(frames: np.ndarray, channels: int, source: str) -> np.ndarray:
    """(T, H, W, c) -> (T, H, W, channels): grey<->RGB conversion (ITU-R 601 luma for RGB->grey)."""
    c = frames.shape[-1]
    if c == channels:
        return frames
    if c == 1 and channels == 3:
        return np.repeat(frames, 3, axis=-1)
    if c == 3 and channels == 1:
        luma = frames[..., 0] * 0.299 + frames[..., 1] * 0.587 + frames[..., 2] * 0.114
        return luma[..., None]
    raise DataError(f"{source}: cannot turn {c}-channel frames into {channels} channels")


def crop_box(h: int, w: int, size: tuple[int, int],
             rng: np.random.Generator | None) -> tuple[int, int, int, int]:
    """(top, left, height, width) of a crop with the target aspect ratio."""
    th, tw = size
    scale = min(h / th, w / tw)  # largest crop with the target aspect ratio
    if rng is not None:
        scale *= float(rng.uniform(*CROP_SCALE))
    ch, cw = max(1, min(h, round(th * scale))), max(1, min(w, round(tw * scale)))
    if rng is None:
        return (h - ch) // 2, (w - cw) // 2, ch, cw
    return int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1)), ch, cw


def to_clip_tensor(frames: np.ndarray, size: tuple[int, int], rng: np.random.Generator | None,
                   flip: bool) -> Tensor:
    """(T, H, W, C) uint8/float frames -> (C, T, h, w) float in [0, 1], one crop for every frame."""
    x = torch.from_numpy(np.ascontiguousarray(frames))
    x = x.float() / 255.0 if x.dtype == torch.uint8 else x.float()
    x = x.permute(0, 3, 1, 2)  # T, C, H, W
    top, left, ch, cw = crop_box(x.shape[2], x.shape[3], size, rng)
    x = x[:, :, top:top + ch, left:left + cw]
    if (ch, cw) != tuple(size):
        x = F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=True)
    if flip and rng is not None and rng.uniform() < 0.5:
        x = x.flip(-1)
    return x.permute(1, 0, 2, 3).contiguous()


class VideoDataset(MaskkitDataset):
    """Shared pipeline; subclasses implement ``natural_channels``, ``frame_count`` and ``read``."""

    natural_channels: int = 3

    def __init__(self, *, num_frames: int, frame_stride: int, size: tuple[int, int], channels: int | None,
                 augment: bool, seed: int, source: str) -> None:
        self.num_frames = num_frames
        self.frame_stride = frame_stride
        self.size = size
        self.channels = int(channels or self.natural_channels)
        self.augment = augment
        self.seed = seed
        self.source = source
        self.skipped: list[tuple[str, str]] = []
        if self.channels not in (1, 3):
            raise DataError(f"{source}: video clips need 1 or 3 channels, got {self.channels}")

    def __len__(self) -> int:
        return len(self.labels)  # type: ignore[arg-type]

    def frame_count(self, index: int) -> int:
        raise NotImplementedError

    def read(self, index: int, indices: np.ndarray) -> np.ndarray:
        """(len(indices), H, W, C) frames."""
        raise NotImplementedError

    def __getitem__(self, index: int) -> tuple[Tensor, int]:
        rng = self.rng_for(index) if self.augment else None
        idx = frame_indices(self.frame_count(index), self.num_frames, self.frame_stride, rng)
        frames = match_channels(self.read(index, idx), self.channels, self.source)
        with single_thread():
            clip = to_clip_tensor(frames, self.size, rng, flip=True)
        return clip, int(self.labels[index])  # type: ignore[index]


def find_clips(root: Path) -> list[Path]:
    """Video files and frame folders (folders that directly hold frame images) under ``root``."""
    found: list[Path] = []
    for p in sorted(root.rglob("*")):
        if p.is_file() and p.suffix.lower() in VIDEO_EXTENSIONS:
            found.append(p)
        elif p.is_dir() and any(c.is_file() and c.suffix.lower() in FRAME_EXTENSIONS for c in p.iterdir()):
            found.append(p)
    if any(c.is_file() and c.suffix.lower() in FRAME_EXTENSIONS for c in root.iterdir()):
        found.insert(0, root)  # the root itself is one clip of frames
    return found


def count_frames(item: Path) -> int:
    """Module-level (picklable) check for the cached, parallel scan: the clip's frame count."""
    count = probe_frames(item) if item.is_dir() else probe_video(item)
    if count <= 0:
        raise DataError(f"{item}: the video has no frames")
    return count


class VideoFolderDataset(VideoDataset):
    """Video files and/or frame folders under a folder (or one video file); scanned on open."""

    def __init__(self, path: Path, on_bad_file: str = "error", **kw: object) -> None:
        super().__init__(source=str(path), **kw)  # type: ignore[arg-type]
        if path.is_file():
            items, base = [path], path.parent
        else:
            items, base = find_clips(path), path
        if not items:
            kinds = ", ".join(sorted(VIDEO_EXTENSIONS))
            raise DataError(f"{path}: no videos ({kinds}) or frame folders found")
        good, counts, self.skipped = scan_files(items, count_frames, on_bad_file, str(path), noun="clips",
                                                index=(base, "video-clips"))
        self.items, self.counts = good, counts
        self.labels, self.class_names = folder_labels(good, base) if path.is_dir() else (np.full(1, -1), None)

    def frame_count(self, index: int) -> int:
        return self.counts[index]

    def read(self, index: int, indices: np.ndarray) -> np.ndarray:
        item = self.items[index]
        return read_frames(item, indices) if item.is_dir() else read_video(item, indices)


class VideoArrayDataset(VideoDataset):
    """Clips from one ``.npy``/``.npz`` array (uint8 0-255, or floats taken as [0, 1])."""

    def __init__(self, path: Path, **kw: object) -> None:
        self.array, labels = load_clip_array(path)
        self.natural_channels = int(self.array.shape[-1])
        super().__init__(source=str(path), **kw)  # type: ignore[arg-type]
        self.labels = labels if labels is not None else np.full(self.array.shape[0], -1, np.int64)

    def frame_count(self, index: int) -> int:
        return int(self.array.shape[1])

    def read(self, index: int, indices: np.ndarray) -> np.ndarray:
        return np.asarray(self.array[index][indices])


class MovingDigitsDataset(VideoDataset):
    """``builtin:moving-digits``: generated per index; augmentation only scales the brightness
    (flips and crops would change the motion label or cut the digit)."""

    natural_channels = 1

    def __init__(self, num_clips: int, data_seed: int = 0, **kw: object) -> None:
        super().__init__(source="builtin:moving-digits", **kw)  # type: ignore[arg-type]
        self.data_seed = data_seed
        self.labels = np.arange(num_clips, dtype=np.int64) % len(MOTIONS)
        self.class_names = list(MOTIONS)

    def __getitem__(self, index: int) -> tuple[Tensor, int]:
        with single_thread():
            frames, label = moving_digit_clip(index, self.num_frames, self.size, self.data_seed)
        if self.augment:
            frames = frames * np.float32(self.rng_for(index).uniform(0.7, 1.0))
        frames = match_channels(frames[..., None], self.channels, self.source)
        return torch.from_numpy(np.ascontiguousarray(frames)).permute(3, 0, 1, 2).contiguous(), label


def open_video_dataset(data: str, *, num_frames: int, frame_stride: int, size: tuple[int, int],
                       channels: int | None, augment: bool, seed: int, on_bad_file: str = "error",
                       builtin_clips: int = 1000, data_seed: int = 0) -> VideoDataset:
    common = dict(num_frames=num_frames, frame_stride=frame_stride, size=size, channels=channels,
                  augment=augment, seed=seed)
    if data.startswith("builtin:"):
        name = data.split(":", 1)[1]
        if name != "moving-digits":
            raise DataError(f"`data` {data}: unknown embedded video dataset; known: builtin:moving-digits")
        return MovingDigitsDataset(builtin_clips, data_seed=data_seed, **common)
    path = Path(data).expanduser()
    if not path.exists():
        raise DataError(f"`data` {path}: no such file or folder")
    if path.is_file() and path.suffix.lower() in ARRAY_EXTENSIONS:
        return VideoArrayDataset(path, **common)
    if path.is_file() and path.suffix.lower() not in VIDEO_EXTENSIONS:
        raise DataError(f"`data` {path}: not a video ({', '.join(sorted(VIDEO_EXTENSIONS))}) or clip array "
                        "(.npy/.npz)")
    return VideoFolderDataset(path, on_bad_file=on_bad_file, **common)


__all__ = ["MovingDigitsDataset", "VideoArrayDataset", "VideoDataset", "VideoFolderDataset", "crop_box",
           "find_clips", "frame_indices", "match_channels", "open_video_dataset", "to_clip_tensor"]
