"""Pictures of spectrogram reconstructions: original | masked | reconstruction | recon + visible.

Spectrograms are drawn the usual way round: time to the right, low frequencies at the bottom, one
heat-map colour scale per sample (set by the original), hidden patches in flat grey.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from torch import Tensor

from maskkit.imaging import (
    colourise,
    compose_grid,
    expand_cells,
    heat_colours,
    is_categorical,
    overlay,
    save_png,
    upscale_factor,
    upscale_nearest,
)
from maskkit.modality import VisualBatch

MIN_CELL = 96
HIDDEN_GREY = 0.55


def _display(spec: np.ndarray) -> np.ndarray:
    """(T, F[, C]) -> (F, T[, C]) with the lowest frequency at the bottom."""
    return np.swapaxes(spec, 0, 1)[::-1]


def render_spectrogram_batch(batch: VisualBatch, path: str | Path, title: str | None = None) -> Path:
    """One row per sample; ``extra_rows`` maps (cluster ids, scores) are overlaid per patch."""
    tok = batch.tokenizer
    grid = tuple(tok.layout.grid or ())
    if len(grid) != 2:
        raise ValueError(f"spectrogram pictures need a (time, freq) token grid, got {tok.layout.axes}")
    patch = tuple(tok.patch_size)  # type: ignore[attr-defined]

    def spec_of(x: Tensor) -> np.ndarray:
        return x.detach().float().cpu()[:, 0].numpy()  # (B, T, F)

    original = spec_of(batch.inputs)
    recon = spec_of(tok.untokenize(batch.pred_targets.detach().float(), batch.tokens))
    pasted = spec_of(tok.untokenize(batch.pasted_targets.detach().float(), batch.tokens))
    b, t, f = original.shape
    hidden = batch.plan.mask.detach().cpu().view(b, *grid).numpy()
    factor = upscale_factor(f, t, MIN_CELL)
    extras = {k: v.detach().float().cpu().view(b, *grid).numpy() for k, v in (batch.extra_rows or {}).items()}
    kinds = {k: "categorical" if is_categorical(v) else "continuous" for k, v in extras.items()}

    cells = []
    for i in range(b):
        lo, hi = float(original[i].min()), float(original[i].max())
        span = max(hi - lo, 1e-6)

        def heat(spec: np.ndarray, lo: float = lo, span: float = span) -> np.ndarray:
            return heat_colours(_display((spec - lo) / span))

        orig = heat(original[i])
        hidden_px = _display(expand_cells(hidden[i], patch).astype(bool))
        masked = orig.copy()
        masked[hidden_px] = HIDDEN_GREY
        row = [orig, masked, heat(recon[i]), heat(pasted[i])]
        dimmed = 0.3 + 0.4 * orig.mean(axis=2, keepdims=True).repeat(3, axis=2)
        for name, maps in extras.items():
            rgba = colourise(maps[i], kind=kinds[name])
            layer = np.ascontiguousarray(_display(expand_cells(rgba, patch)))
            row.append(overlay(dimmed, layer, strength=0.75))
        cells.append([upscale_nearest(c, factor) for c in row])
    ratio = float(batch.plan.mask.float().mean()) if b else 0.0
    headers = ["log-mel", f"masked {ratio:.0%}", "reconstruction", "recon + visible", *extras]
    return save_png(compose_grid(cells, col_titles=headers, title=title), path)


__all__ = ["render_spectrogram_batch"]
