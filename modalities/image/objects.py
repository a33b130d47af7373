"""``builtin:objects``: procedural objects on natural-photo backgrounds, with per-pixel object masks.

Every picture is one filled shape (disc, square, triangle or cross; the label is the shape) in a
random saturated colour, half of them striped, pasted on a crop of one of scikit-learn's two
CC BY sample photos. Because the object's pixels are known exactly, the dataset can say which
share of the object a masker hides (``object_sample``), which turns "masks cover the main
object" into a number. Content is drawn from a fixed seed, so every run and seed of a study
sees the same pictures; nothing is downloaded.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import torch
from torch import Tensor

from .data import ImageDataset, sample_photos
from .transforms import match_channels, resize, to_size

OBJECT_CLASSES = ("disc", "square", "triangle", "cross")
OBJECT_COUNT = 1200
SOURCE_SIDE = 64  # pictures are drawn at 64 x 64, then resized to --image-size
RADIUS = (0.2, 0.34)  # object half-size as a fraction of the side
_SEED = 0x0B1EC7


def _shape_mask(kind: int, side: int, cy: float, cx: float, r: float, angle: float) -> np.ndarray:
    """(side, side) float mask in [0, 1] of one shape, 2x supersampled then averaged (soft edges)."""
    s = 2 * side
    yy, xx = np.mgrid[0:s, 0:s].astype(np.float32) / 2.0 + 0.25
    dy, dx = yy - cy, xx - cx
    ca, sa = math.cos(angle), math.sin(angle)
    u, v = ca * dx + sa * dy, -sa * dx + ca * dy  # rotated frame
    name = OBJECT_CLASSES[kind]
    if name == "disc":
        inside = dx * dx + dy * dy <= r * r
    elif name == "square":
        inside = (np.abs(u) <= 0.8 * r) & (np.abs(v) <= 0.8 * r)
    elif name == "triangle":  # equilateral, circumradius r, rotated by angle
        inside = np.ones_like(u, dtype=bool)
        for k in range(3):
            t = angle + 2 * math.pi * k / 3
            inside &= (math.cos(t) * dx + math.sin(t) * dy) >= -0.5 * r
    elif name == "cross":
        arm = 0.33 * r
        inside = ((np.abs(u) <= r) & (np.abs(v) <= arm)) | ((np.abs(v) <= r) & (np.abs(u) <= arm))
    else:
        raise ValueError(f"unknown object class {kind}")
    return inside.reshape(side, 2, side, 2).mean(axis=(1, 3)).astype(np.float32)


@functools.lru_cache(maxsize=1)
def object_specs() -> np.ndarray:
    """(OBJECT_COUNT, 12) float table: class, photo, crop box (top, left, side), centre (y, x),
    radius, angle, colour (r, g, b), stripe period (0 = plain). Drawn once from a fixed seed."""
    photos = sample_photos()
    rng = np.random.default_rng(_SEED)
    rows = []
    for i in range(OBJECT_COUNT):
        kind = i % len(OBJECT_CLASSES)
        k = int(rng.integers(0, len(photos)))
        _, h, w = photos[k][1].shape
        side = int(rng.uniform(0.25, 0.6) * min(h, w))
        top, left = int(rng.integers(0, h - side + 1)), int(rng.integers(0, w - side + 1))
        r = rng.uniform(*RADIUS) * SOURCE_SIDE
        cy, cx = rng.uniform(r, SOURCE_SIDE - r, size=2)
        hue = rng.uniform(0, 1)
        colour = _hue_to_rgb(hue)
        stripes = float(rng.choice([0.0, rng.uniform(4, 8)]))
        rows.append([kind, k, top, left, side, cy, cx, r, rng.uniform(0, math.pi), *colour, stripes])
    return np.asarray(rows, dtype=np.float64)


def _hue_to_rgb(hue: float) -> tuple[float, float, float]:
    """A fully saturated, bright colour of the given hue in [0, 1)."""
    h6 = hue * 6.0
    x = 1 - abs(h6 % 2 - 1)
    table = [(1, x, 0), (x, 1, 0), (0, 1, x), (0, x, 1), (x, 0, 1), (1, 0, x)]
    return tuple(float(c) for c in table[int(h6) % 6])  # type: ignore[return-value]


@functools.cache
def _drawn(index: int) -> tuple[Tensor, Tensor]:
    """One picture and its mask as uint8 (about 16 kB each; content is fixed, so all datasets share them)."""
    kind, k, top, left, side, cy, cx, r, angle, red, green, blue, stripes = object_specs()[index]
    top, left, side = int(top), int(left), int(side)
    crop = sample_photos()[int(k)][1][:, top:top + side, left:left + side].float().div(255.0)
    background = resize(crop, (SOURCE_SIDE, SOURCE_SIDE))
    mask = torch.from_numpy(_shape_mask(int(kind), SOURCE_SIDE, cy, cx, r, angle))
    colour = torch.tensor([red, green, blue], dtype=torch.float32).view(3, 1, 1)
    fill = colour.expand(3, SOURCE_SIDE, SOURCE_SIDE)
    if stripes > 0:  # darker stripes across the object, in the object's own orientation
        yy, xx = torch.meshgrid(torch.arange(SOURCE_SIDE, dtype=torch.float32),
                                torch.arange(SOURCE_SIDE, dtype=torch.float32), indexing="ij")
        phase = (math.cos(angle) * xx + math.sin(angle) * yy) * (2 * math.pi / stripes)
        fill = fill * (0.65 + 0.35 * (torch.sin(phase) > 0).float())
    img = (background * (1 - mask) + fill * mask).clamp(0, 1)
    return (img * 255).round().to(torch.uint8), (mask * 255).round().to(torch.uint8)


class ObjectImages(ImageDataset):
    """One shape per picture on a photo crop; ``object_sample`` gives the picture and its object mask."""

    has_object_masks = True
    stats_samples = 64  # pixel statistics from 64 evenly spaced pictures

    def __init__(self, **kwargs: object) -> None:
        self.specs = object_specs()
        super().__init__(natural_channels=3, labels=self.specs[:, 0].astype(np.int64),
                         class_names=list(OBJECT_CLASSES), keep_aspect=True, source="builtin:objects",
                         **kwargs)  # type: ignore[arg-type]

    def _draw(self, index: int) -> tuple[Tensor, Tensor]:
        """(3, 64, 64) picture and (64, 64) mask in [0, 1] (drawn once per index, kept as uint8)."""
        img, mask = _drawn(int(index))
        return img.float().div(255.0), mask.float().div(255.0)

    def load(self, index: int) -> Tensor:
        return self._draw(index)[0]

    def object_sample(self, index: int) -> tuple[Tensor, Tensor]:
        """(standardised un-augmented picture (C, H, W), object mask (H, W) in [0, 1])."""
        img, mask = self._draw(index)
        img = match_channels(img, self.channels, self.source)
        both = to_size(torch.cat([img, mask[None]]), self.size, self.keep_aspect, self.policy, None)
        img = (both[:-1] - self.mean) / self.std  # the same crop and resize as raw(index)
        return img.float().contiguous(), both[-1].clamp(0, 1)


__all__ = ["OBJECT_CLASSES", "OBJECT_COUNT", "ObjectImages", "object_specs"]
