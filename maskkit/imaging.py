"""PNG helpers shared by every modality's pictures: colour maps, nearest upscaling, labelled grids.

Pictures are built from float arrays in [0, 1] shaped (H, W) (grey) or (H, W, 3) (RGB) and
composed with Pillow, so no plotting library is needed. Video, audio and point-cloud renderers
reuse ``compose_grid``, ``colourise`` and ``overlay`` for their own layouts.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from maskkit.safe_io import ensure_dir, replacing

#: distinct colours for categorical maps (cluster ids, classes); index i % len wraps around
PALETTE: tuple[tuple[int, int, int], ...] = (
    (230, 25, 75), (60, 180, 75), (67, 99, 216), (255, 225, 25), (245, 130, 49), (145, 30, 180),
    (66, 212, 244), (240, 50, 230), (191, 239, 69), (250, 190, 212), (70, 153, 144), (220, 190, 255),
    (154, 99, 36), (128, 0, 0), (170, 255, 195), (0, 0, 117),
)

#: anchor colours of a perceptually ordered heat map (dark violet -> blue -> green -> yellow)
_HEAT_ANCHORS = np.array([
    [0.267, 0.005, 0.329], [0.229, 0.322, 0.546], [0.128, 0.567, 0.551],
    [0.369, 0.789, 0.383], [0.993, 0.906, 0.144],
])


def to_rgb(img: np.ndarray) -> np.ndarray:
    """(H, W), (H, W, 1), (H, W, 3) or (H, W, 4) floats -> (H, W, 3) floats (alpha dropped)."""
    img = np.asarray(img, dtype=np.float32)
    if img.ndim == 2:
        img = img[..., None]
    if img.ndim != 3:
        raise ValueError(f"expected an (H, W[, C]) image, got shape {img.shape}")
    channels = img.shape[2]
    if channels == 1:
        return np.repeat(img, 3, axis=2)
    if channels in (3, 4):
        return img[..., :3]
    return np.repeat(img.mean(axis=2, keepdims=True), 3, axis=2)


def to_uint8(img: np.ndarray) -> np.ndarray:
    """Floats in [0, 1] (clipped) -> uint8 in [0, 255]."""
    return (np.clip(np.asarray(img, dtype=np.float32), 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def upscale_factor(height: int, width: int, min_cell: int = 96) -> int:
    """Smallest integer factor that makes the shorter side at least ``min_cell`` pixels."""
    return max(1, math.ceil(min_cell / max(1, min(height, width))))


def upscale_nearest(img: np.ndarray, factor: int) -> np.ndarray:
    """Repeat every pixel ``factor`` times along both spatial axes (keeps patch edges crisp)."""
    if factor <= 1:
        return np.asarray(img)
    return np.repeat(np.repeat(np.asarray(img), factor, axis=0), factor, axis=1)


def expand_cells(values: np.ndarray, cell: tuple[int, int]) -> np.ndarray:
    """(h, w[, ...]) per-token values -> (h*ph, w*pw[, ...]) per-pixel values (patch blocks)."""
    ph, pw = cell
    return np.repeat(np.repeat(np.asarray(values), ph, axis=0), pw, axis=1)


def is_categorical(values: np.ndarray, max_classes: int = len(PALETTE)) -> bool:
    """True for boolean maps and integer-valued maps with few distinct values (cluster ids)."""
    values = np.asarray(values)
    if values.dtype == bool:
        return True
    if values.size == 0 or not np.all(np.isfinite(values)):
        return False
    if not np.allclose(values, np.round(values)):
        return False
    return len(np.unique(values[values >= 0])) <= max_classes


def heat_colours(values: np.ndarray) -> np.ndarray:
    """Values in [0, 1] -> (..., 3) colours by piecewise-linear interpolation of the heat anchors."""
    v = np.clip(np.nan_to_num(np.asarray(values, dtype=np.float64)), 0.0, 1.0) * (len(_HEAT_ANCHORS) - 1)
    lo = np.floor(v).astype(int).clip(0, len(_HEAT_ANCHORS) - 2)
    frac = (v - lo)[..., None]
    return ((1 - frac) * _HEAT_ANCHORS[lo] + frac * _HEAT_ANCHORS[lo + 1]).astype(np.float32)


def colourise(values: np.ndarray, kind: str = "auto", vmin: float | None = None,
              vmax: float | None = None) -> np.ndarray:
    """(h, w) map -> (h, w, 4) RGBA floats.

    ``categorical``: each non-negative integer gets a palette colour; booleans colour only True;
    negative values are transparent ("no label"). ``continuous``: a heat map scaled to
    [vmin, vmax] (default: the map's own range). ``auto`` picks by :func:`is_categorical`.
    """
    values = np.asarray(values)
    if kind == "auto":
        kind = "categorical" if is_categorical(values) else "continuous"
    out = np.zeros((*values.shape, 4), dtype=np.float32)
    if kind == "categorical":
        if values.dtype == bool:
            out[values] = (*(c / 255.0 for c in PALETTE[0]), 1.0)
            return out
        ids = np.round(values).astype(np.int64)
        palette = np.asarray(PALETTE, dtype=np.float32) / 255.0
        valid = ids >= 0
        out[valid, :3] = palette[ids[valid] % len(palette)]
        out[valid, 3] = 1.0
        return out
    if kind != "continuous":
        raise ValueError(f"colour map kind must be auto, categorical or continuous, got {kind!r}")
    v = np.asarray(values, dtype=np.float64)
    finite = np.isfinite(v)
    lo = float(np.min(v[finite])) if vmin is None and finite.any() else float(vmin or 0.0)
    hi = float(np.max(v[finite])) if vmax is None and finite.any() else float(1.0 if vmax is None else vmax)
    scaled = (v - lo) / (hi - lo) if hi > lo else np.full_like(v, 0.5)
    out[..., :3] = heat_colours(scaled)
    out[..., 3] = finite.astype(np.float32)
    return out


def overlay(base: np.ndarray, rgba: np.ndarray, strength: float = 0.6) -> np.ndarray:
    """Blend an RGBA layer over an image; ``strength`` scales the layer's alpha."""
    base_rgb = to_rgb(base)
    alpha = np.clip(rgba[..., 3:4] * strength, 0.0, 1.0)
    return (1 - alpha) * base_rgb + alpha * rgba[..., :3]


@dataclass(frozen=True)
class GridStyle:
    """Fixed layout numbers, so the size of a composed picture is predictable (tests rely on it)."""

    pad: int = 4
    title_height: int = 22
    header_height: int = 18
    row_label_width: int = 64
    font_size: int = 12
    background: tuple[int, int, int] = (255, 255, 255)
    text: tuple[int, int, int] = (20, 20, 20)


def grid_size(row_heights: Sequence[int], col_widths: Sequence[int], style: GridStyle = GridStyle(),
              title: bool = False, col_titles: bool = False, row_titles: bool = False) -> tuple[int, int]:
    """(width, height) in pixels of the picture :func:`compose_grid` makes for these cells."""
    width = style.pad + sum(w + style.pad for w in col_widths) + (style.row_label_width if row_titles else 0)
    height = (style.pad + sum(h + style.pad for h in row_heights)
              + (style.title_height if title else 0) + (style.header_height if col_titles else 0))
    return width, height


def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError):  # Pillow without FreeType: the fixed bitmap font
        return ImageFont.load_default()


def _fit_text(draw: ImageDraw.ImageDraw, text: str, font: object, width: int) -> str:
    """Shorten ``text`` with an ellipsis until it fits ``width`` pixels."""
    if draw.textlength(text, font=font) <= width:  # type: ignore[arg-type]
        return text
    while len(text) > 1 and draw.textlength(text + "…", font=font) > width:  # type: ignore[arg-type]
        text = text[:-1]
    return text + "…"


def compose_grid(cells: Sequence[Sequence[np.ndarray | None]], col_titles: Sequence[str] | None = None,
                 row_titles: Sequence[str] | None = None, title: str | None = None,
                 style: GridStyle = GridStyle()) -> Image.Image:
    """Tile images (floats in [0, 1] or uint8; grey or RGB) into one labelled RGB picture.

    ``cells[r][c]`` may be ``None`` (left blank). Each column is as wide as its widest cell and
    each row as tall as its tallest; cells are top-left aligned.
    """
    rows = [[None if c is None else _as_uint8_rgb(c) for c in row] for row in cells]
    n_cols = max((len(r) for r in rows), default=0)
    col_widths = [max((r[c].shape[1] for r in rows if c < len(r) and r[c] is not None), default=0)
                  for c in range(n_cols)]
    row_heights = [max((c.shape[0] for c in r if c is not None), default=0) for r in rows]
    width, height = grid_size(row_heights, col_widths, style, title=bool(title),
                              col_titles=bool(col_titles), row_titles=bool(row_titles))
    canvas = Image.new("RGB", (width, height), style.background)
    draw = ImageDraw.Draw(canvas)
    font = _font(style.font_size)
    y = style.pad
    if title:
        text = _fit_text(draw, title, font, width - 2 * style.pad)
        draw.text((style.pad, y), text, fill=style.text, font=font)
        y += style.title_height
    x0 = style.pad + (style.row_label_width if row_titles else 0)
    if col_titles:
        x = x0
        for c, w in enumerate(col_widths):
            if c < len(col_titles):
                draw.text((x, y), _fit_text(draw, col_titles[c], font, w), fill=style.text, font=font)
            x += w + style.pad
        y += style.header_height
    for r, row in enumerate(rows):
        if row_titles and r < len(row_titles):
            text = _fit_text(draw, row_titles[r], font, style.row_label_width - style.pad)
            draw.text((style.pad, y + row_heights[r] // 2 - style.font_size // 2), text,
                      fill=style.text, font=font)
        x = x0
        for c, cell in enumerate(row):
            if cell is not None:
                canvas.paste(Image.fromarray(cell), (x, y))
            x += col_widths[c] + style.pad
        y += row_heights[r] + style.pad
    return canvas


def _as_uint8_rgb(img: np.ndarray) -> np.ndarray:
    img = np.asarray(img)
    if img.dtype == np.uint8:
        img = img.astype(np.float32) / 255.0
    return to_uint8(to_rgb(img))


def save_png(image: Image.Image, path: str | Path) -> Path:
    """Write ``image`` as PNG, creating parent folders."""
    path = Path(path)
    ensure_dir(path.parent)
    with replacing(path) as fh:  # never through a link planted at the name
        image.save(fh, format="PNG")
    return path


__all__ = [
    "PALETTE",
    "GridStyle",
    "colourise",
    "compose_grid",
    "expand_cells",
    "grid_size",
    "heat_colours",
    "is_categorical",
    "overlay",
    "save_png",
    "to_rgb",
    "to_uint8",
    "upscale_factor",
    "upscale_nearest",
]
