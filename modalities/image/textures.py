"""``builtin:textures``: objects that only their texture and outline give away, with object masks.

``builtin:objects`` can be solved by colour: a saturated shape on a photo stands out to any
low-level statistic, so an untrained network, or no network (the ``saliency`` masker), hides the
object as well as a trained one. Here every picture is two-coloured: object and background are
both band-passed white noise thresholded at its median, in the *same* two colours, so the
object's mean colour and colour histogram match the background's. Phases are random everywhere,
so raw patches of one texture are no more alike than patches of two; the textures differ only in
second-order structure (the ``variant``): orientation (turned by 90 degrees) or scale (wavelength
times 1.6). The label is the object's outline (disc, square, triangle, cross, as in
``builtin:objects``); the object mask is exact. See docs/modalities/image.md for the measured
coverage of model-free and untrained-model masks on it.

Pictures are drawn at 32 x 32 (the default image size, so patterns stay binary) from a fixed seed:
every run and seed of a study sees the same 1200 pictures; nothing is stored or downloaded.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import torch
from torch import Tensor

from .data import ImageDataset
from .objects import OBJECT_CLASSES, ObjectImages, _hue_to_rgb, _shape_mask

TEXTURE_COUNT = 1200
TEXTURE_SIDE = 32
TEXTURE_VARIANTS = ("orientation", "scale")
WAVELENGTH = (3.0, 5.0)  # dominant wavelength of the filtered noise, in pixels at 32 x 32
RADIUS = (0.24, 0.36)  # object half-size as a fraction of the side
_SEED = 0x7E27


@functools.lru_cache(maxsize=1)
def texture_specs() -> np.ndarray:
    """(TEXTURE_COUNT, 13) float table: class, variant, centre (y, x), radius, shape angle, texture
    angle, wavelength, colour A (r, g, b), colour B's brightness as a share of A, and whether the
    object takes the first texture (1) or the second (0). Drawn once from a fixed seed."""
    rng = np.random.default_rng(_SEED)
    rows = []
    for i in range(TEXTURE_COUNT):
        kind = i % len(OBJECT_CLASSES)
        variant = (i // len(OBJECT_CLASSES)) % len(TEXTURE_VARIANTS)
        r = rng.uniform(*RADIUS) * TEXTURE_SIDE
        cy, cx = rng.uniform(r, TEXTURE_SIDE - r, size=2)
        rows.append([kind, variant, cy, cx, r, rng.uniform(0, math.pi), rng.uniform(0, math.pi),
                     rng.uniform(*WAVELENGTH), *_hue_to_rgb(rng.uniform(0, 1)), rng.uniform(0.15, 0.45),
                     float(rng.integers(0, 2))])
    return np.asarray(rows, dtype=np.float64)


def _noise_texture(rng: np.random.Generator, angle: float, wavelength: float, elongation: float) -> Tensor:
    """(side, side) 0/1 texture: white noise band-passed around ``wavelength`` (stretched ``elongation``
    times along ``angle``), thresholded at its median, so exactly half the pixels are 1. Random
    phases everywhere: two patches of one texture are no more alike, pixel by pixel, than two patches
    of different textures; what they share is second-order (orientation, scale)."""
    n = TEXTURE_SIDE
    noise = torch.from_numpy(rng.standard_normal((n, n)))
    fy = torch.fft.fftfreq(n, dtype=torch.float64).view(-1, 1)
    fx = torch.fft.fftfreq(n, dtype=torch.float64).view(1, -1)
    along = math.cos(angle) * fx + math.sin(angle) * fy  # frequency across the stripes' direction
    across = -math.sin(angle) * fx + math.cos(angle) * fy
    radius = torch.sqrt(along ** 2 + (elongation * across) ** 2)
    centre = 1.0 / wavelength
    response = torch.exp(-((radius - centre) ** 2) / (2 * (0.35 * centre) ** 2))
    field = torch.fft.ifft2(torch.fft.fft2(noise) * response).real
    return (field > field.median()).float()


def _textures(index: int, variant: str, angle: float, wavelength: float) -> tuple[Tensor, Tensor]:
    """(first, second) textures that differ by ``variant`` (orientation turned 90 degrees, or
    wavelength times 1.6) and nothing else; the noise is drawn from a seed fixed per picture."""
    rng = np.random.default_rng([_SEED, index])
    first = _noise_texture(rng, angle, wavelength, 2.0)
    if variant == "orientation":
        return first, _noise_texture(rng, angle + math.pi / 2, wavelength, 2.0)
    return first, _noise_texture(rng, angle, wavelength * 1.6, 2.0)


@functools.cache
def _drawn(index: int) -> tuple[Tensor, Tensor]:
    """One picture and its mask as uint8 (content is fixed, so all datasets share them)."""
    kind, variant, cy, cx, r, shape_angle, angle, wavelength, red, green, blue, dark, swap = texture_specs()[index]
    soft = torch.from_numpy(_shape_mask(int(kind), TEXTURE_SIDE, cy, cx, r, shape_angle))
    mask = (soft >= 0.5).float()  # a hard outline keeps every pixel one of the two colours
    first, second = _textures(int(index), TEXTURE_VARIANTS[int(variant)], angle, wavelength)
    background, obj = (second, first) if swap else (first, second)
    binary = (background * (1 - mask) + obj * mask).float()
    colour_a = torch.tensor([red, green, blue], dtype=torch.float32).view(3, 1, 1)
    colour_b = colour_a * float(dark)
    img = colour_b + (colour_a - colour_b) * binary
    return (img * 255).round().to(torch.uint8), (mask * 255).round().to(torch.uint8)


class TextureImages(ObjectImages):
    """One textured shape per picture on a background of matched colour statistics."""

    def __init__(self, **kwargs: object) -> None:
        self.specs = texture_specs()
        ImageDataset.__init__(self, natural_channels=3, labels=self.specs[:, 0].astype(np.int64),
                              class_names=list(OBJECT_CLASSES), keep_aspect=True, source="builtin:textures",
                              **kwargs)  # type: ignore[arg-type]

    def _draw(self, index: int) -> tuple[Tensor, Tensor]:
        img, mask = _drawn(int(index))
        return img.float().div(255.0), mask.float().div(255.0)


__all__ = ["TEXTURE_COUNT", "TEXTURE_VARIANTS", "TextureImages", "texture_specs"]
