"""Pictures of point-cloud masking: input, visible vs hidden groups, and the reconstruction.

Uses matplotlib's object API with the Agg canvas (no pyplot global state, no display needed).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from maskkit.modality import VisualBatch

VISIBLE, HIDDEN, PREDICTED = "#1f77b4", "#c7c7c7", "#d62728"


def _scatter(ax, pts: np.ndarray, colour: str | np.ndarray, size: float = 2.0, alpha: float = 0.9) -> None:
    ax.scatter(pts[:, 0], pts[:, 1], pts[:, 2], c=colour, s=size, alpha=alpha, linewidths=0, depthshade=False)


def _frame(ax, limit: float, title: str) -> None:
    ax.set_xlim(-limit, limit)
    ax.set_ylim(-limit, limit)
    ax.set_zlim(-limit, limit)
    ax.set_box_aspect((1, 1, 1))
    ax.set_axis_off()
    ax.view_init(elev=20, azim=-60)
    ax.set_title(title, fontsize=8)


def render_point_groups(batch: VisualBatch, path: Path, title: str | None = None) -> Path:
    """One row per sample: input cloud | visible (blue) and hidden (grey) groups | visible groups
    plus predicted hidden groups (red)."""
    tok = batch.tokenizer
    truth = tok.untokenize(batch.tokens.targets.float(), batch.tokens).detach().cpu().numpy()
    pasted = tok.untokenize(batch.pasted_targets.float(), batch.tokens).detach().cpu().numpy()
    mask = batch.plan.mask.detach().cpu().numpy()  # (B, G)
    inputs = batch.inputs.detach().cpu().float().numpy()
    b, g = mask.shape
    k = truth.shape[1] // g
    point_hidden = np.repeat(mask, k, axis=1)  # (B, G*k)
    # frame the input; predictions far outside it (early in training) are drawn on the frame's edge
    limit = float(max(np.abs(inputs[..., :3]).max(), 1e-3)) * 0.85
    pasted = np.clip(pasted, -limit, limit)

    head = 0.45 if title else 0.1  # inches above the first row (room for the title)
    height = 3 * b + head
    fig = Figure(figsize=(9, height), dpi=90)
    FigureCanvasAgg(fig)
    for i in range(b):
        ax = fig.add_subplot(b, 3, 3 * i + 1, projection="3d")
        _scatter(ax, inputs[i, :, :3], VISIBLE, size=1.5)
        _frame(ax, limit, "input")
        ax = fig.add_subplot(b, 3, 3 * i + 2, projection="3d")
        _scatter(ax, truth[i][point_hidden[i]], HIDDEN, size=1.5, alpha=0.5)
        _scatter(ax, truth[i][~point_hidden[i]], VISIBLE)
        _frame(ax, limit, f"visible {g - int(mask[i].sum())}/{g} groups")
        ax = fig.add_subplot(b, 3, 3 * i + 3, projection="3d")
        _scatter(ax, pasted[i][~point_hidden[i]], VISIBLE)
        _scatter(ax, pasted[i][point_hidden[i]], PREDICTED)
        _frame(ax, limit, "reconstruction (red: predicted)")
    if title:
        fig.suptitle(title, fontsize=10, y=1 - 0.08 / height, va="top")
    # fixed margins: tight_layout would draw every 3-D axis an extra time
    fig.subplots_adjust(left=0.01, right=0.99, bottom=0.01, top=1 - head / height, wspace=0.02, hspace=0.12)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    return path


__all__ = ["render_point_groups"]
