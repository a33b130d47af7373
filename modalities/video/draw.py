"""Pictures of video reconstructions: per sample, frame strips for original / masked / reconstruction /
reconstruction with the visible tubelets pasted back, and one strip per ``extra_rows`` map."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from torch import Tensor

from maskkit.imaging import (
    GridStyle,
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

MAX_SAMPLES = 4
MAX_FRAMES = 16
MIN_FRAME = 48  # shortest side of a drawn frame, in screen pixels
GAP = 2
HIDDEN_GREY = 0.5


def _frames(x: Tensor) -> np.ndarray:
    """(B, C, T, H, W) -> (B, T, H, W, 3) floats in [0, 1]."""
    arr = x.detach().float().cpu().clamp(0, 1).permute(0, 2, 3, 4, 1).numpy()
    return np.stack([[to_rgb(f) for f in clip] for clip in arr])


def _strip(frames: list[np.ndarray]) -> np.ndarray:
    h = frames[0].shape[0]
    gap = np.ones((h, GAP, 3), dtype=np.float32)
    parts: list[np.ndarray] = []
    for f in frames:
        parts.extend([f, gap])
    return np.concatenate(parts[:-1], axis=1)


def render_video_batch(batch: VisualBatch, path: str | Path, title: str | None = None) -> Path:
    tok = batch.tokenizer
    grid = tuple(tok.layout.grid or ())
    if len(grid) != 3:
        raise ValueError(f"video pictures need a (t, h, w) token grid, got {tok.layout.axes}")
    tubelet, patch = int(tok.tubelet_size), int(tok.patch_size)  # type: ignore[attr-defined]
    n = min(MAX_SAMPLES, batch.inputs.shape[0])
    original = _frames(batch.inputs[:n])
    recon = _frames(tok.untokenize(batch.pred_targets[:n].detach().float(), batch.tokens))
    pasted = _frames(tok.untokenize(batch.pasted_targets[:n].detach().float(), batch.tokens))
    t_total, h, w = original.shape[1:4]
    shown = np.unique(np.linspace(0, t_total - 1, min(t_total, MAX_FRAMES)).round().astype(int))
    factor = upscale_factor(h, w, MIN_FRAME)
    hidden = batch.plan.mask[:n].detach().cpu().view(n, *grid).numpy()
    extras = {k: v[:n].detach().float().cpu().view(n, *grid).numpy()
              for k, v in (batch.extra_rows or {}).items()}
    kinds = {k: "categorical" if is_categorical(v) else "continuous" for k, v in extras.items()}

    def strip(frames: list[np.ndarray]) -> np.ndarray:
        return upscale_nearest(_strip(frames), factor)

    cells, names = [], []
    ratio = float(batch.plan.mask.float().mean()) if batch.plan.mask.numel() else 0.0
    for i in range(n):
        masked = []
        for t in shown:
            f = original[i, t].copy()
            f[expand_cells(hidden[i, t // tubelet], (patch, patch)).astype(bool)] = HIDDEN_GREY
            masked.append(f)
        rows = {f"#{i} original": [original[i, t] for t in shown], f"#{i} masked {ratio:.0%}": masked,
                f"#{i} recon": [recon[i, t] for t in shown], f"#{i} + visible": [pasted[i, t] for t in shown]}
        for name, maps in extras.items():
            overlays = []
            for t in shown:
                dimmed = 0.35 + 0.5 * original[i, t].mean(axis=2, keepdims=True).repeat(3, axis=2)
                rgba = colourise(maps[i, t // tubelet], kind=kinds[name])
                overlays.append(overlay(dimmed, expand_cells(rgba, (patch, patch)), strength=0.7))
            rows[f"#{i} {name}"] = overlays
        for name, frames in rows.items():
            names.append(name)
            cells.append([strip(frames)])
    frames_note = f"frames {', '.join(str(int(t)) for t in shown)}" if len(shown) < t_total else ""
    full_title = " - ".join(s for s in (title, frames_note) if s) or None
    style = GridStyle(row_label_width=110)
    return save_png(compose_grid(cells, row_titles=names, title=full_title, style=style), path)


__all__ = ["render_video_batch"]
