"""``builtin:hierarchy``: pictures drawn from an explicit three-level latent-variable model.

The masked-autoencoder theory of a hierarchical latent-variable model of the data says the mask
ratio and patch size choose which level of latent variables the encoder recovers. Real data's
hierarchy is unknown, so this set builds one in, and records every latent with its level:

- level 1 (the whole picture): ``layout``, one of four arrangements of two parts (side by side,
  stacked, diagonal, anti-diagonal; the class label), and ``offset``, where the pair sits
  (a shift of the layout's centre, up to 25 % of the side in each direction, so
  no pixel says which layout a picture has);
- level 2 (the parts, drawn given level 1): ``shape_a`` and ``shape_b`` (disc, square or
  triangle; part a takes the layout's preferred shape with probability 0.6, part b repeats part a's
  shape with probability 0.5), and ``part_size`` (both parts' radius, whose range depends on the
  layout);
- level 3 (local appearance, drawn given level 2): ``tint_a`` and ``tint_b`` (each part's colour
  between blue and orange, centred on a value set by its shape) and ``stripes`` (contrast of the
  stripes across both parts).

Pixel noise (sd 0.04) on a dark background is added last; it is observation noise, not a latent.
Content comes from a fixed seed, so every run and seed of a study sees the same pictures.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import torch
from torch import Tensor

from maskkit.modality import Latent

from .data import ImageDataset

LAYOUTS = ("row", "column", "diagonal", "anti-diagonal")
PART_SHAPES = ("disc", "square", "triangle")
HIERARCHY_COUNT = 1200
SIDE = 64  # drawn at 64 x 64, then resized to --image-size
_SEED = 0x41E2A
#: centre of part a and part b relative to the layout's centre, in units of the side
_PART_OFFSETS = {
    "row": ((0.0, -0.13), (0.0, 0.13)),
    "column": ((-0.13, 0.0), (0.13, 0.0)),
    "diagonal": ((-0.1, -0.1), (0.1, 0.1)),
    "anti-diagonal": ((-0.1, 0.1), (0.1, -0.1)),
}
#: per layout: the shape part a prefers, and the range of the part radius (fraction of the side)
_PREFERRED_SHAPE = (0, 1, 2, 0)
_SIZE_RANGE = ((0.07, 0.09), (0.08, 0.10), (0.07, 0.11), (0.09, 0.11))
_BLUE = np.array([0.15, 0.35, 0.95])
_ORANGE = np.array([0.95, 0.55, 0.10])

HIERARCHY_LATENTS = (
    Latent("layout", "categorical", 1, "arrangement of the two parts (the class label)"),
    Latent("offset", "continuous", 1, "shift of the layout's centre (y, x), fraction of the side"),
    Latent("shape_a", "categorical", 2, "shape of part a, drawn given the layout"),
    Latent("shape_b", "categorical", 2, "shape of part b, drawn given part a"),
    Latent("part_size", "continuous", 2, "radius of both parts, range set by the layout"),
    Latent("tint_a", "continuous", 3, "colour of part a between blue (0) and orange (1), given its shape"),
    Latent("tint_b", "continuous", 3, "colour of part b, given its shape"),
    Latent("stripes", "continuous", 3, "contrast of the stripes across both parts"),
)


@functools.lru_cache(maxsize=1)
def hierarchy_latents() -> dict[str, np.ndarray]:
    """Every sample's latents, drawn top-down from the fixed seed (level 1, then 2 given 1, then 3 given 2)."""
    rng = np.random.default_rng(_SEED)
    n = HIERARCHY_COUNT
    layout = np.arange(n) % len(LAYOUTS)  # balanced classes
    offset = rng.uniform(-0.25, 0.25, size=(n, 2))
    preferred = np.asarray(_PREFERRED_SHAPE)[layout]
    other = rng.integers(0, len(PART_SHAPES), size=n)
    shape_a = np.where(rng.uniform(size=n) < 0.6, preferred, other)
    shape_b = np.where(rng.uniform(size=n) < 0.5, shape_a, rng.integers(0, len(PART_SHAPES), size=n))
    low, high = np.asarray(_SIZE_RANGE)[layout].T
    part_size = rng.uniform(low, high)
    tint_centre = np.asarray([0.2, 0.5, 0.8])
    tint_a = np.clip(tint_centre[shape_a] + rng.normal(0, 0.15, size=n), 0, 1)
    tint_b = np.clip(tint_centre[shape_b] + rng.normal(0, 0.15, size=n), 0, 1)
    stripes = rng.uniform(0.0, 0.6, size=n)
    return {"layout": layout.astype(np.int64), "offset": offset, "shape_a": shape_a.astype(np.int64),
            "shape_b": shape_b.astype(np.int64), "part_size": part_size, "tint_a": tint_a, "tint_b": tint_b,
            "stripes": stripes}


def _part_mask(shape: int, cy: float, cx: float, r: float) -> np.ndarray:
    """(SIDE, SIDE) mask in [0, 1] of one part, 2x supersampled (soft edges)."""
    yy, xx = np.mgrid[0:2 * SIDE, 0:2 * SIDE].astype(np.float32) / 2.0 + 0.25
    dy, dx = yy - cy, xx - cx
    name = PART_SHAPES[shape]
    if name == "disc":
        inside = dx * dx + dy * dy <= r * r
    elif name == "square":
        inside = (np.abs(dx) <= 0.85 * r) & (np.abs(dy) <= 0.85 * r)
    else:  # triangle, apex up
        inside = (dy <= 0.6 * r) & (dy >= -r) & (np.abs(dx) <= (dy + r) * 0.62)
    return inside.reshape(SIDE, 2, SIDE, 2).mean(axis=(1, 3)).astype(np.float32)


@functools.cache
def _drawn(index: int) -> Tensor:
    """One picture as uint8 (3, SIDE, SIDE); content is fixed, so all datasets share the cache."""
    z = hierarchy_latents()
    layout = LAYOUTS[int(z["layout"][index])]
    oy, ox = z["offset"][index]
    r = float(z["part_size"][index]) * SIDE
    yy, xx = np.mgrid[0:SIDE, 0:SIDE].astype(np.float32)
    stripe = (np.sin((xx + yy) * (2 * math.pi / 6.0)) > 0).astype(np.float32)
    img = np.full((3, SIDE, SIDE), 0.12, dtype=np.float32)
    for (dy, dx), shape, tint in zip(_PART_OFFSETS[layout], (z["shape_a"][index], z["shape_b"][index]),
                                     (z["tint_a"][index], z["tint_b"][index]), strict=True):
        mask = _part_mask(int(shape), (0.5 + oy + dy) * SIDE, (0.5 + ox + dx) * SIDE, r)
        colour = (1 - tint) * _BLUE + tint * _ORANGE
        fill = colour[:, None, None] * (1 - float(z["stripes"][index]) * stripe)[None]
        img = img * (1 - mask) + fill * mask
    img = img + np.random.default_rng([_SEED, index]).normal(0, 0.04, size=img.shape)
    return torch.from_numpy(np.clip(img, 0, 1) * 255).round().to(torch.uint8)


class HierarchyImages(ImageDataset):
    """Two-part pictures from the three-level model above; label = layout; every latent recorded."""

    latents = HIERARCHY_LATENTS
    stats_samples = 64

    def __init__(self, **kwargs: object) -> None:
        super().__init__(natural_channels=3, labels=hierarchy_latents()["layout"], class_names=list(LAYOUTS),
                         keep_aspect=True, source="builtin:hierarchy", **kwargs)  # type: ignore[arg-type]

    def load(self, index: int) -> Tensor:
        return _drawn(int(index)).float().div(255.0)

    def latent_values(self) -> dict[str, np.ndarray]:
        return dict(hierarchy_latents())


__all__ = ["HIERARCHY_COUNT", "HIERARCHY_LATENTS", "HierarchyImages", "LAYOUTS", "PART_SHAPES",
           "hierarchy_latents"]
