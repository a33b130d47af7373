"""``builtin:moving-digits``: one handwritten digit (scikit-learn's 8x8 digits, upscaled) moving in a
dark frame. The label is the motion, not the digit, so a probe must read time, not just shape.

Every clip is a pure function of ``(data_seed, index)``: generated on demand in ``__getitem__``
(about 0.2 ms a clip), nothing is stored.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F

MOTIONS = ["right", "left", "down", "up", "static", "rotate"]


@lru_cache(maxsize=1)
def digit_images() -> np.ndarray:
    """(1797, 8, 8) float32 in [0, 1]."""
    from sklearn.datasets import load_digits

    return (load_digits().images / 16.0).astype(np.float32)


@lru_cache(maxsize=4)
def _scaled_digits(side: int) -> np.ndarray:
    """All digits resized (bilinear) to side x side."""
    x = torch.from_numpy(digit_images()).unsqueeze(1)
    y = F.interpolate(x, size=(side, side), mode="bilinear", align_corners=False)
    return y.squeeze(1).clamp(0, 1).numpy()


def digit_side(size: tuple[int, int]) -> int:
    return max(4, min(size) // 2)


def moving_digit_clip(index: int, num_frames: int, size: tuple[int, int], data_seed: int = 0
                      ) -> tuple[np.ndarray, int]:
    """(T, H, W) float32 clip in [0, 1] and its motion label (``index % 6``, so classes are balanced)."""
    rng = np.random.default_rng([data_seed, 104729, index])
    label = index % len(MOTIONS)
    motion = MOTIONS[label]
    h, w = size
    d = digit_side(size)
    digits = _scaled_digits(d)
    digit = digits[rng.integers(len(digits))] * np.float32(rng.uniform(0.6, 1.0))
    room_y, room_x = h - d, w - d
    steps = max(1, num_frames - 1)
    frac = rng.uniform(0.5, 1.0)  # share of the free room the digit travels
    travel_x, travel_y = frac * room_x, frac * room_y
    t = np.arange(num_frames) / steps
    y0 = rng.uniform(0, room_y + 1e-9)
    x0 = rng.uniform(0, room_x + 1e-9)
    ys, xs = np.full(num_frames, y0), np.full(num_frames, x0)
    if motion in ("right", "left"):
        start = rng.uniform(0, room_x - travel_x + 1e-9)
        xs = start + travel_x * (t if motion == "right" else 1.0 - t)
    elif motion in ("down", "up"):
        start = rng.uniform(0, room_y - travel_y + 1e-9)
        ys = start + travel_y * (t if motion == "down" else 1.0 - t)
    frames = np.zeros((num_frames, h, w), dtype=np.float32)
    if motion == "rotate":
        angle = rng.choice([-1.0, 1.0]) * rng.uniform(0.5, 1.0) * math.pi  # up to half a turn
        sprites = _rotated(digit, angle * t)
    else:
        sprites = np.repeat(digit[None], num_frames, axis=0)
    for k in range(num_frames):
        y, x = int(round(ys[k])), int(round(xs[k]))
        frames[k, y:y + d, x:x + d] = np.maximum(frames[k, y:y + d, x:x + d], sprites[k])
    return frames, label


def _rotated(sprite: np.ndarray, angles: np.ndarray) -> np.ndarray:
    """The sprite rotated about its centre by each angle (radians), bilinear, zero outside."""
    theta = torch.zeros(len(angles), 2, 3)
    a = torch.as_tensor(angles, dtype=torch.float32)
    theta[:, 0, 0], theta[:, 0, 1] = torch.cos(a), -torch.sin(a)
    theta[:, 1, 0], theta[:, 1, 1] = torch.sin(a), torch.cos(a)
    src = torch.from_numpy(sprite).expand(len(angles), 1, *sprite.shape)
    grid = F.affine_grid(theta, list(src.shape), align_corners=False)
    return F.grid_sample(src, grid, mode="bilinear", padding_mode="zeros", align_corners=False)[:, 0].numpy()


__all__ = ["MOTIONS", "digit_images", "moving_digit_clip"]
