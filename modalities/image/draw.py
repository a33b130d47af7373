"""Pictures of image reconstructions: original | masked | reconstruction | pasted | per-token maps."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from maskkit.imaging import (
    colourise,
    compose_grid,
    expand_cells,
    is_categorical,
    overlay,
    save_png,
    to_rgb,
    upscale_factor,
    upscale_nearest,
)
from maskkit.modality import VisualBatch

MIN_CELL = 96  # shortest side of a drawn picture, in screen pixels
HIDDEN_GREY = 0.5


def _unstandardise(x: Tensor, mean: Sequence[float] | None, std: Sequence[float] | None) -> Tensor:
    x = x.detach().float().cpu()
    c = x.shape[1]
    if mean is not None and std is not None and len(mean) == c and len(std) == c:
        x = x * torch.tensor(std, dtype=torch.float32).view(1, c, 1, 1) \
            + torch.tensor(mean, dtype=torch.float32).view(1, c, 1, 1)
    return x


def _display_range(original: Tensor) -> tuple[Tensor, Tensor]:
    """Per-sample (lo, hi): [0, 1] for ordinary pictures, the sample's own range otherwise
    (float arrays stored in other units), applied to every column of that sample."""
    flat = original.flatten(1)
    lo, hi = flat.min(dim=1).values, flat.max(dim=1).values
    ordinary = (lo >= -0.05) & (hi <= 1.05)
    lo = torch.where(ordinary, torch.zeros_like(lo), lo)
    hi = torch.where(ordinary, torch.ones_like(hi), torch.maximum(hi, lo + 1e-6))
    return lo.view(-1, 1, 1, 1), hi.view(-1, 1, 1, 1)


def _map_array(values: Tensor, batch: int, grid: tuple[int, ...]) -> np.ndarray:
    """(B, N) per-token map -> (B, h, w) numpy; booleans stay boolean (only True is coloured)."""
    values = values.detach().cpu()
    if values.dtype != torch.bool:
        values = values.float()
    return values.reshape(batch, *grid).numpy()


def _hwc(x: Tensor) -> np.ndarray:
    """(C, H, W) in [0, 1] -> (H, W, 3) for display."""
    return to_rgb(x.clamp(0, 1).permute(1, 2, 0).numpy())


def render_image_batch(batch: VisualBatch, path: str | Path, title: str | None = None,
                       mean: Sequence[float] | None = None, std: Sequence[float] | None = None) -> Path:
    """Write one row per sample: original, masked input (hidden patches grey), reconstruction,
    reconstruction with the visible patches pasted back, then one overlay per ``extra_rows`` map.

    ``mean``/``std`` undo the dataset's per-channel standardisation so colours look natural.
    """
    tok = batch.tokenizer
    grid = tuple(tok.layout.grid or ())
    if len(grid) != 2:
        raise ValueError(f"image pictures need a 2-D token grid, got {tok.layout.axes}")
    patch = int(tok.patch_size)
    original = _unstandardise(batch.inputs, mean, std)
    recon = _unstandardise(tok.untokenize(batch.pred_targets.detach().float(), batch.tokens), mean, std)
    pasted = _unstandardise(tok.untokenize(batch.pasted_targets.detach().float(), batch.tokens), mean, std)
    lo, hi = _display_range(original)
    original, recon, pasted = ((t - lo) / (hi - lo) for t in (original, recon, pasted))

    b, _, h, w = original.shape
    hidden = batch.plan.mask.detach().cpu().view(b, *grid).numpy()
    factor = upscale_factor(h, w, MIN_CELL)
    extras = {k: _map_array(v, b, grid) for k, v in (batch.extra_rows or {}).items()}
    kinds = {k: "categorical" if is_categorical(v) else "continuous" for k, v in extras.items()}

    cells = []
    for i in range(b):
        orig = _hwc(original[i])
        masked = orig.copy()
        masked[expand_cells(hidden[i], (patch, patch)).astype(bool)] = HIDDEN_GREY
        row = [orig, masked, _hwc(recon[i]), _hwc(pasted[i])]
        dimmed = 0.35 + 0.5 * orig.mean(axis=2, keepdims=True).repeat(3, axis=2)
        for name, maps in extras.items():
            rgba = colourise(maps[i], kind=kinds[name])
            row.append(overlay(dimmed, expand_cells(rgba, (patch, patch)), strength=0.6))
        cells.append([upscale_nearest(c, factor) for c in row])
    ratio = float(batch.plan.mask.float().mean()) if b else 0.0
    headers = ["original", f"masked {ratio:.0%}", "reconstruction", "recon + visible", *extras]
    return save_png(compose_grid(cells, col_titles=headers, title=title), path)


__all__ = ["render_image_batch"]
