"""Per-sample image transforms on (C, h, w) float tensors: resizing, channel matching, augmentation.

Augmentation draws every random number from the numpy Generator it is given (the dataset's
``rng_for(index)``), so a seed, epoch and index always give the same augmented picture.
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from maskkit.modality import DataError

Policy = Literal["crop_flip", "shift", "none"]
#: random-resized-crop area range and aspect-ratio range (relative to the target aspect)
CROP_SCALE = (0.5, 1.0)
CROP_RATIO = (3.0 / 4.0, 4.0 / 3.0)
#: largest translation of the "shift" policy, as a fraction of the image side
SHIFT_FRACTION = 0.125
_LUMA = (0.299, 0.587, 0.114)


def resize(img: Tensor, size: tuple[int, int]) -> Tensor:
    """Bilinear resize of (C, h, w) to (C, H, W), antialiased when shrinking."""
    if tuple(img.shape[-2:]) == tuple(size):
        return img
    shrink = img.shape[-2] > size[0] or img.shape[-1] > size[1]
    out = F.interpolate(img.unsqueeze(0), size=size, mode="bilinear", align_corners=False, antialias=shrink)
    return out.squeeze(0)


def match_channels(img: Tensor, channels: int, where: str) -> Tensor:
    """Convert (C, h, w) to ``channels``: grey is replicated, RGB(A) -> grey by luminance,
    RGBA -> RGB drops alpha, RGB -> RGBA adds an opaque alpha."""
    c = img.shape[0]
    if c == channels:
        return img
    if c == 1:
        return img.expand(channels, -1, -1).clone()
    if channels == 1 and c in (3, 4):
        weights = img.new_tensor(_LUMA).view(3, 1, 1)
        return (img[:3] * weights).sum(dim=0, keepdim=True)
    if channels == 1 and c == 2:  # grey + alpha
        return img[:1]
    if c == 4 and channels == 3:
        return img[:3]
    if c == 3 and channels == 4:
        return torch.cat([img, img.new_ones(1, *img.shape[1:])], dim=0)
    raise DataError(f"{where}: images have {c} channels; cannot convert them to `channels` {channels}")


def centre_box(h: int, w: int, aspect: float) -> tuple[int, int, int, int]:
    """Largest centred (top, left, height, width) box with width/height = ``aspect``."""
    if w / h > aspect:
        cw = max(1, min(w, round(h * aspect)))
        return 0, (w - cw) // 2, h, cw
    ch = max(1, min(h, round(w / aspect)))
    return (h - ch) // 2, 0, ch, w


def random_resized_box(h: int, w: int, aspect: float, rng: np.random.Generator) -> tuple[int, int, int, int]:
    """Random box covering CROP_SCALE of the area with aspect CROP_RATIO x ``aspect``
    (ten tries, then the centred box), as in the usual random-resized-crop."""
    area = h * w
    log_lo, log_hi = math.log(CROP_RATIO[0] * aspect), math.log(CROP_RATIO[1] * aspect)
    for _ in range(10):
        target = area * rng.uniform(*CROP_SCALE)
        ratio = math.exp(rng.uniform(log_lo, log_hi))
        cw = round(math.sqrt(target * ratio))
        ch = round(math.sqrt(target / ratio))
        if 0 < cw <= w and 0 < ch <= h:
            top = int(rng.integers(0, h - ch + 1))
            left = int(rng.integers(0, w - cw + 1))
            return top, left, ch, cw
    return centre_box(h, w, aspect)


def shift(img: Tensor, rng: np.random.Generator, fraction: float = SHIFT_FRACTION) -> Tensor:
    """Translate by up to ``fraction`` of each side, filling with the replicated border
    (a padded random crop; digits keep their black background)."""
    _, h, w = img.shape
    mh, mw = int(round(h * fraction)), int(round(w * fraction))
    if mh == 0 and mw == 0:
        return img
    dy, dx = int(rng.integers(-mh, mh + 1)), int(rng.integers(-mw, mw + 1))
    padded = F.pad(img.unsqueeze(0), (mw, mw, mh, mh), mode="replicate").squeeze(0)
    return padded[:, mh + dy:mh + dy + h, mw + dx:mw + dx + w]


def to_size(img: Tensor, size: tuple[int, int], keep_aspect: bool, policy: Policy,
            rng: np.random.Generator | None) -> Tensor:
    """Source-resolution (C, h, w) -> (C, H, W), augmented when ``rng`` is given.

    ``crop_flip``: random-resized crop then a horizontal flip half the time (natural photos).
    ``shift``: resize then a small random translation (centred content such as digits).
    Without augmentation photos are centre-cropped to the target aspect (``keep_aspect``) and
    arrays are resized as they are.
    """
    _, h, w = img.shape
    aspect = size[1] / size[0]
    if rng is not None and policy == "crop_flip":
        top, left, ch, cw = random_resized_box(h, w, aspect, rng)
        out = resize(img[:, top:top + ch, left:left + cw], size)
        return torch.flip(out, dims=[2]) if rng.random() < 0.5 else out
    if keep_aspect:
        top, left, ch, cw = centre_box(h, w, aspect)
        img = img[:, top:top + ch, left:left + cw]
    out = resize(img, size)
    if rng is not None and policy == "shift":
        out = shift(out, rng)
    return out


__all__ = ["CROP_RATIO", "CROP_SCALE", "Policy", "SHIFT_FRACTION", "centre_box", "match_channels",
           "random_resized_box", "resize", "shift", "to_size"]
