"""PNG plots of ``analyze_run`` results (matplotlib's object API with the Agg canvas; no pyplot, so
the caller's backend and global state are untouched)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from maskkit.safe_io import save_figure

ENCODER_TITLES = {
    "feature_var": "feature variance σF",
    "similarity_var": "similarity variance σs",
    "gap_similarity": "intra − inter gap (similarity graph)",
    "gap_attention": "intra − inter gap (attention graph)",
    "attention_distance": "mean attention distance",
    "attention_nmi": "attention NMI",
    "fourier_high": "Δ log amplitude, high frequencies",
}
DECODER_TITLES = {"mask_token_var": "mask-token variance"}


def _colours(count: int) -> list[Any]:
    from matplotlib import colormaps

    cmap = colormaps["viridis"]
    return [cmap(i / max(1, count - 1)) for i in range(count)]


def _nan(values: list[Any]) -> list[float]:
    return [float("nan") if v is None else float(v) for v in values]


def plot_layers(result: dict[str, Any], path: Path) -> Path:
    """One panel per metric against layer, encoder layers then decoder layers on one axis (a dashed
    line between them); one line per checkpoint (dark = early, yellow = late)."""
    ckpts = result["checkpoints"]
    colours = _colours(len(ckpts))
    panels = [*ENCODER_TITLES, "kl_to_final", "mask_token_var", "exploitation"]
    cols = 4
    rows = math.ceil(len(panels) / cols)
    fig = Figure(figsize=(4 * cols, 3.2 * rows), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    n_enc = int(result.get("encoder_layers") or len(ckpts[-1]["kl_to_final"]))
    for ax, key in zip(axes, panels, strict=False):
        if key == "exploitation":
            final = ckpts[-1]["decoder"]
            layers = range(len(final["exploit_visible"]))
            ax.plot(layers, _nan(final["exploit_visible"]), "o-", label="visible keys (R V→O)")
            ax.plot(layers, _nan(final["exploit_mask"]), "s-", label="mask-token keys (R M→O)")
            ax.set_title("exploitation per key, final", fontsize=9)
            ax.set_xlabel("decoder layer")
            ax.legend(fontsize=7)
            continue
        for ck, colour in zip(ckpts, colours, strict=True):
            if key == "mask_token_var":
                values = _nan(ck["decoder"].get(key, []))
                xs = list(range(len(values)))
            else:
                enc = ck["kl_to_final"] if key == "kl_to_final" else ck["encoder"].get(key, [])
                dec = ck.get("decoder_kl_to_final", []) if key == "kl_to_final" else ck["decoder"].get(key, [])
                values = _nan(list(enc) + list(dec))
                xs = list(range(len(values)))
            ax.plot(xs, values, "o-", color=colour, ms=3, label=f"epoch {ck['epoch']}")
        if key == "mask_token_var":
            ax.set_title(DECODER_TITLES[key], fontsize=9)
            ax.set_xlabel("decoder layer")
        else:
            ax.axvline(n_enc - 0.5, color="grey", ls="--", lw=0.8)
            ax.set_title("token-relation KL to final" if key == "kl_to_final" else ENCODER_TITLES[key], fontsize=9)
            ax.set_xlabel(f"layer (encoder 0–{n_enc - 1} | decoder)")
    if len(ckpts) <= 8:
        axes[0].legend(fontsize=7)
    for ax in axes[len(panels):]:
        ax.set_visible(False)
    fig.suptitle(f"{result['modality']} · masker {result['masker']} · {result['num_samples']} samples")
    save_figure(fig, path, dpi=100)
    return path


def plot_epochs(result: dict[str, Any], path: Path) -> Path:
    """Last-layer metrics and exploitation rates (mean over decoder layers) against epoch."""
    ckpts = result["checkpoints"]
    epochs = [ck["epoch"] for ck in ckpts]
    keys = ["feature_var", "similarity_var", "gap_similarity", "gap_attention"]
    fig = Figure(figsize=(16, 6.4), layout="constrained")
    axes = fig.subplots(2, 3).ravel()
    for ax, key in zip(axes, keys, strict=False):
        ax.plot(epochs, _nan([ck["encoder"][key][-1] for ck in ckpts]), "o-")
        ax.set_title(f"{ENCODER_TITLES[key]}, last layer", fontsize=9)
        ax.set_xlabel("epoch")
    ax = axes[4]
    ax.plot(epochs, [sum(ck["kl_to_final"]) / len(ck["kl_to_final"]) for ck in ckpts], "o-")
    ax.set_title("token-relation KL to final (mean over layers)", fontsize=9)
    ax.set_xlabel("epoch")
    ax = axes[5]
    for key, label in (("exploit_visible", "visible keys"), ("exploit_mask", "mask-token keys")):
        vals = [sum(ck["decoder"][key]) / len(ck["decoder"][key]) for ck in ckpts]
        ax.plot(epochs, vals, "o-", label=label)
    ax.set_title("exploitation per key (mean over decoder layers)", fontsize=9)
    ax.set_xlabel("epoch")
    ax.legend(fontsize=7)
    save_figure(fig, path, dpi=100)
    return path


def plot_clusters(result: dict[str, Any], path: Path) -> Path | None:
    """Token centres coloured by cluster (and by the self-guided masker's maps when present):
    one row per map, one column per sample. Works for grids and unordered tokens alike; 3-D
    positions are drawn on their first two axes."""
    clusters = result.get("clusters") or {}
    maps: dict[str, list] = clusters.get("maps") or {}
    positions = clusters.get("positions")
    pictures = clusters.get("pictures")
    if not maps or not positions:
        return None
    samples = len(next(iter(maps.values())))
    tokens = len(next(iter(maps.values()))[0])
    size = 0.8 * (140.0 / math.sqrt(max(tokens, 1))) ** 2  # squares that about fill a grid cell
    fig = Figure(figsize=(2.2 * samples, 2.2 * len(maps)), layout="constrained")
    axes = fig.subplots(len(maps), samples, squeeze=False)
    for r, (name, values) in enumerate(maps.items()):
        for c in range(samples):
            ax = axes[r][c]
            pos = positions[c] if len(positions) > c and isinstance(positions[c][0], list) else positions
            xs = [p[-1] for p in pos]  # last axis across (image: column), first axis down (row)
            ys = [-p[0] for p in pos]
            if pictures and len(pictures) > c:  # the input under the map, pixel units like the centres
                pic = np.asarray(pictures[c], dtype=np.float32)
                ax.imshow(pic[..., 0] if pic.shape[-1] == 1 else pic, cmap="gray", vmin=0, vmax=1,
                          extent=(0, pic.shape[1], -pic.shape[0], 0), interpolation="nearest")
            ax.scatter(xs, ys, c=values[c], cmap="coolwarm", s=size, marker="s", vmin=0, vmax=1,
                       alpha=0.45 if pictures else 1.0, linewidths=0)
            ax.set_xticks([])
            ax.set_yticks([])
            if c == 0:
                ax.set_ylabel(name.replace("masker_", "masker: "), fontsize=8)
    fig.suptitle("red: the tokens the row names (bipartition side, target cluster, hidden, revealed hint); "
                 "blue: the rest", fontsize=8)
    save_figure(fig, path, dpi=100)
    return path


def plot_analysis(result: dict[str, Any], out_dir: Path) -> list[Path]:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = [plot_layers(result, out_dir / "layers.png")]
    if len(result["checkpoints"]) > 1:
        written.append(plot_epochs(result, out_dir / "epochs.png"))
    clusters = plot_clusters(result, out_dir / "clusters.png")
    if clusters is not None:
        written.append(clusters)
    return written


__all__ = ["plot_analysis", "plot_clusters", "plot_epochs", "plot_layers"]
