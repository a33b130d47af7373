"""PNG figures of a study (matplotlib, Agg canvas; no pyplot global state, no display needed).

Each function takes plain numbers, so the figures can be redrawn from results.csv and the runs'
metrics.jsonl without touching any model.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from maskkit.safe_io import save_figure

Curve = Sequence[tuple[float, float]]  # (epoch, value) points of one seed


def _figure(width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height), dpi=110, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _save(fig: Figure, path: Path) -> Path:
    save_figure(fig, path)
    return path


def _colors(names: Sequence[str]) -> dict[str, tuple]:
    from matplotlib import colormaps

    cmap = colormaps["tab10"]
    return {name: cmap(i % 10) for i, name in enumerate(names)}


def _panel_grid(count: int, width: float, height: float) -> tuple[Figure, np.ndarray]:
    """A figure of ``count`` panels, at most three a row, and its axes as a flat array."""
    count = max(1, count)
    cols = min(3, count)
    rows = math.ceil(count / cols)
    fig = _figure(width * cols, height * rows)
    return fig, np.atleast_1d(fig.subplots(rows, cols)).reshape(-1)


def _mean_band(curves: Sequence[Curve]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Mean and min..max over seeds at every epoch any seed has."""
    epochs = sorted({e for c in curves for e, v in c if math.isfinite(v)})
    table: dict[float, list[float]] = {e: [] for e in epochs}
    for c in curves:
        for e, v in c:
            if math.isfinite(v):
                table[e].append(v)
    x = np.asarray(epochs, dtype=float)
    mean = np.asarray([np.mean(table[e]) for e in epochs])
    low = np.asarray([np.min(table[e]) for e in epochs])
    high = np.asarray([np.max(table[e]) for e in epochs])
    return x, mean, low, high


def _plot_methods(ax, curves: dict[str, Sequence[Curve]], colors: dict[str, tuple]) -> None:
    for name, seeds in curves.items():
        x, mean, low, high = _mean_band(seeds)
        if not len(x):
            continue
        ax.plot(x, mean, marker="o", ms=3, color=colors[name], label=f"{name} (n={len(seeds)})")
        if len(seeds) > 1:
            ax.fill_between(x, low, high, color=colors[name], alpha=0.15, linewidth=0)


def learning_curves(path: Path, loss: dict[str, Sequence[Curve]],
                    probes: dict[str, tuple[dict[str, Sequence[Curve]], dict[str, float]]], title: str) -> Path:
    """Training loss per epoch, then one panel per probe (``{label: (curves by masker, baselines)}``):
    accuracy at each kept checkpoint. Lines are seed means, bands min..max over seeds."""
    colors = _colors(list(loss))
    panels = max(1, len(probes))
    fig = _figure(4.2 * (panels + 1), 3.8)
    axes = np.atleast_1d(fig.subplots(1, panels + 1)).reshape(-1)
    _plot_methods(axes[0], loss, colors)
    axes[0].set(xlabel="epochs trained", ylabel="training loss (epoch mean)", title="reconstruction loss")
    axes[0].legend(fontsize=7)
    styles = {"random-init": "--", "raw-input": ":"}
    for ax, (label, (curves, baselines)) in zip(axes[1:], probes.items(), strict=False):
        if any(curves.values()):
            _plot_methods(ax, curves, colors)
            for name, value in baselines.items():
                if math.isfinite(value):
                    ax.axhline(value, color="grey", linestyle=styles.get(name, "-."), linewidth=1, label=name)
            ax.legend(fontsize=7)
        else:
            ax.text(0.5, 0.5, "no probe points", ha="center", va="center", transform=ax.transAxes)
        ax.set(xlabel="epochs trained (0 = random init)", ylabel="accuracy", title=label)
    if not probes:
        axes[1].text(0.5, 0.5, "no probe points\n(no labels, or curve_every = 0)", ha="center", va="center",
                     transform=axes[1].transAxes)
        axes[1].axis("off")
    fig.suptitle(title, fontsize=10)
    return _save(fig, path)


def diagnostics(path: Path, panels: dict[str, dict[str, Sequence[Curve]]],
                references: dict[str, dict[str, Sequence[Curve]]], title: str) -> Path:
    """One panel per diagnostic (realised ratio, position sd, IoU, masker logs); one line per masker.
    ``references[panel][masker]`` draws the random expectation of that panel dashed."""
    names = list(dict.fromkeys(m for p in panels.values() for m in p))  # study order
    colors = _colors(names)
    fig, axes = _panel_grid(len(panels), 4.2, 3.2)
    for ax, (panel, curves) in zip(axes, panels.items(), strict=False):
        _plot_methods(ax, curves, colors)
        for masker, ref in references.get(panel, {}).items():
            x, mean, _, _ = _mean_band(ref)
            if len(x):
                ax.plot(x, mean, linestyle="--", color=colors.get(masker, "grey"), linewidth=1,
                        label=f"{masker}: random expectation")
        ax.set(xlabel="epochs trained", title=panel)
        ax.legend(fontsize=6)
    for ax in axes[len(panels):]:
        ax.axis("off")
    fig.suptitle(title, fontsize=10)
    return _save(fig, path)


def _as_image(values: Sequence[float], grid: Sequence[int] | None) -> np.ndarray:
    """Token values -> 2-D picture: the grid (extra leading axes averaged) or a 1-row strip."""
    arr = np.asarray(values, dtype=float)
    if grid and int(np.prod(grid)) == arr.size and len(grid) >= 2:
        arr = arr.reshape(tuple(grid))
        while arr.ndim > 2:
            arr = arr.mean(axis=0)
        return arr
    return arr.reshape(1, -1)


def _aspect(grid: Sequence[int] | None) -> str:
    return "equal" if grid and len(grid) >= 2 else "auto"


def position_frequency(path: Path, frequency: dict[str, Sequence[float]], grid: Sequence[int] | None,
                       floors: dict[str, float], title: str) -> Path:
    """Per-position masking frequency of the final epoch, one heat-map per masker (random: flat at r)."""
    names = list(frequency)
    cols = max(1, len(names))
    fig = _figure(3.4 * cols, 3.4 if grid and len(grid) >= 2 else 2.0)
    axes = np.atleast_1d(fig.subplots(1, cols)).reshape(-1)
    image = None
    for ax, name in zip(axes, names, strict=False):
        freq = np.asarray(frequency[name], dtype=float)
        image = ax.imshow(_as_image(freq, grid), vmin=0.0, vmax=1.0, cmap="magma", aspect=_aspect(grid))
        floor = floors.get(name, float("nan"))
        ax.set_title(f"{name}: mean {freq.mean():.2f}\nsd {freq.std():.3f} (random: {floor:.3f})", fontsize=8)
        ax.set_xticks([])
        ax.set_yticks([])
    if image is not None:
        fig.colorbar(image, ax=list(axes), shrink=0.8, label="share of masks hiding the position")
    fig.suptitle(title, fontsize=10)
    return _save(fig, path)


def mask_examples(path: Path, masks: dict[str, Sequence[Sequence[int]]], grid: Sequence[int] | None,
                  title: str) -> Path:
    """Rows = maskers, columns = the same evaluation samples; dark = hidden token."""
    names = [n for n in masks if masks[n]]
    cols = max((len(masks[n]) for n in names), default=1)
    rows = max(1, len(names))
    fig = _figure(1.6 * cols + 1.6, 1.6 * rows + 0.6)
    axes = np.asarray(fig.subplots(rows, cols, squeeze=False))
    for r, name in enumerate(names):
        for c in range(cols):
            ax = axes[r, c]
            ax.set_xticks([])
            ax.set_yticks([])
            if c < len(masks[name]):
                ax.imshow(1 - _as_image(masks[name][c], grid), cmap="gray", vmin=0, vmax=1,
                          aspect=_aspect(grid))
            if c == 0:
                ax.set_ylabel(name, fontsize=8)
    fig.suptitle(title, fontsize=10)
    return _save(fig, path)


def sweep_heatmaps(path: Path, values: dict[str, dict[tuple[float, object], float]], ratios: Sequence[float],
                   patches: Sequence[object], label: str) -> Path:
    """One heat-map per masker: ``label`` over mask ratio (rows) x patch size (columns)."""
    names = list(values)
    cols = max(1, len(names))
    fig = _figure(3.2 * cols + 1, 0.6 * len(ratios) + 2.2)
    axes = np.atleast_1d(fig.subplots(1, cols)).reshape(-1)
    finite = [v for m in values.values() for v in m.values() if math.isfinite(v)]
    vmin, vmax = (min(finite), max(finite)) if finite else (0.0, 1.0)
    image = None
    for ax, name in zip(axes, names, strict=False):
        grid = np.full((len(ratios), len(patches)), np.nan)
        for i, r in enumerate(ratios):
            for j, p in enumerate(patches):
                grid[i, j] = values[name].get((r, p), float("nan"))
        image = ax.imshow(grid, vmin=vmin, vmax=vmax if vmax > vmin else vmin + 1e-9, cmap="viridis")
        for i in range(len(ratios)):
            for j in range(len(patches)):
                if math.isfinite(grid[i, j]):
                    dark = (grid[i, j] - vmin) < 0.5 * (vmax - vmin)
                    ax.text(j, i, f"{grid[i, j]:.3f}", ha="center", va="center", fontsize=7,
                            color="white" if dark else "black")
        ax.set_xticks(range(len(patches)), [str(p) for p in patches])
        ax.set_yticks(range(len(ratios)), [f"{r:g}" for r in ratios])
        ax.set(xlabel="patch size", ylabel="mask ratio", title=name)
    if image is not None:
        fig.colorbar(image, ax=list(axes), shrink=0.8, label=label)
    fig.suptitle(f"{label} over mask ratio x patch size (mean over seeds)", fontsize=10)
    return _save(fig, path)


def level_curves(path: Path, panels: dict[str, tuple[dict[str, Sequence[Curve]], dict[str, float]]],
                 title: str) -> Path:
    """One panel per (masker, patch size): per latent level, the probe score over the mask ratio (seed
    mean, band min..max over seeds) and the random-init encoder's score of that level, dashed."""
    labels = list(dict.fromkeys(label for curves, _ in panels.values() for label in curves))
    colors = _colors(labels)
    fig, axes = _panel_grid(len(panels), 4.6, 3.6)
    for ax, (panel, (curves, baselines)) in zip(axes, panels.items(), strict=False):
        _plot_methods(ax, curves, colors)
        for label, value in baselines.items():
            if math.isfinite(value):
                ax.axhline(value, color=colors[label], linestyle="--", linewidth=1)
        ax.set(xlabel="mask ratio", ylabel="probe score (accuracy / R²)", title=panel)
        ax.legend(fontsize=6)
    for ax in axes[len(panels):]:
        ax.axis("off")
    fig.suptitle(title, fontsize=10)
    return _save(fig, path)


__all__ = ["diagnostics", "learning_curves", "level_curves", "mask_examples", "position_frequency", "sweep_heatmaps"]
