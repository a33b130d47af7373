"""Draw a study's figures from results.csv rows, the runs' metrics.jsonl and their evaluations.

Names are fixed per cell (``figures/<kind>_<cell>.png``) so the report and its warnings can
point at them.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from maskkit.lab.study import plots
from maskkit.lab.study.config import StudyConfig
from maskkit.lab.study.coverage import coverage_curves
from maskkit.lab.study.diagnostics import as_float, epoch_rows, masker_keys
from maskkit.lab.study.evaluation import EVAL_FILE, read_json
from maskkit.lab.study.levels import level_figure
from maskkit.lab.study.tables import CellKey, by_cell, cell_label, cell_slug, methods_in, spread

FIGURE_DIR = "figures"


def figure_names(key: CellKey) -> dict[str, str]:
    slug = cell_slug(key)
    return {kind: f"{FIGURE_DIR}/{kind}_{slug}.png"
            for kind in ("curves", "diagnostics", "position_frequency", "masks", "coverage")}


SWEEP_FIGURE = f"{FIGURE_DIR}/sweep_heatmap.png"


def _runs(study: StudyConfig, rows: list[dict[str, Any]]) -> dict[str, list[tuple[dict[str, Any], Path]]]:
    """{masker: [(csv row, run dir)]} for the trained runs of one cell, in seed order."""
    out: dict[str, list[tuple[dict[str, Any], Path]]] = {}
    for row in sorted((r for r in rows if r["arm"] == "pretrained"), key=lambda r: r["seed"]):
        out.setdefault(row["masker"], []).append((row, Path(study.out) / "runs" / row["run_id"]))
    return {m: out[m] for m in study.maskers if m in out}


def _curve(rows: list[dict[str, Any]], key: str) -> list[tuple[float, float]]:
    return [(int(r["epoch"]) + 1, as_float(r.get(key))) for r in rows if key in r]


def _probe_curves(runs: dict[str, list], evals: dict[str, list[dict[str, Any]]],
                  rows: list[dict[str, Any]]) -> dict[str, tuple[dict[str, list], dict[str, float]]]:
    """Per probe: each masker's per-seed (epoch, accuracy) curve, starting at the random-init encoder of
    the same seed (epoch 0), and the random-init / raw-input levels."""
    random_init = {int(r["seed"]): r for r in rows if r["method"] == "random-init"}
    probes: dict[str, tuple[dict[str, list], dict[str, float]]] = {}
    for column, label in (("linear_acc", "linear probe"), ("knn_acc", "k-NN")):
        curves = {}
        for m in runs:
            seeds = []
            for (row, _), ev in zip(runs[m], evals[m], strict=True):
                points = [(float(p["epoch"]), float(p[column])) for p in ev.get("curve") or []]
                start = random_init.get(int(row["seed"]), {}).get(column, float("nan"))
                if points and math.isfinite(start):
                    points = [(0.0, float(start))] + points
                if points:
                    seeds.append(points)
            curves[m] = seeds
        if any(curves.values()):
            baselines = {b: spread(rows, b, column).mean for b in ("random-init", "raw-input")}
            probes[label] = (curves, baselines)
    return probes


def _cell_figures(study: StudyConfig, key: CellKey, rows: list[dict[str, Any]]) -> dict[str, Path]:
    out = Path(study.out)
    names = figure_names(key)
    runs = _runs(study, rows)
    metrics = {m: [epoch_rows(d) for _, d in runs[m]] for m in runs}
    evals = {m: [read_json(d / EVAL_FILE) or {} for _, d in runs[m]] for m in runs}
    made: dict[str, Path] = {}
    title = cell_label(key)

    # learning curves: training loss, probe accuracy at kept checkpoints (epoch 0 = random init)
    probes = _probe_curves(runs, evals, rows)
    loss = {m: [_curve(r, "loss") for r in metrics[m]] for m in runs}
    if runs:
        made["curves"] = plots.learning_curves(out / names["curves"], loss, probes, f"learning curves, {title}")

        # diagnostics per epoch
        panels: dict[str, dict[str, list]] = {
            "realised mask ratio": {m: [_curve(r, "mask/ratio") for r in metrics[m]] for m in runs},
            "per-position masking frequency sd": {m: [_curve(r, "mask/position_sd") for r in metrics[m]]
                                                  for m in runs},
            "mean pairwise mask IoU": {m: [_curve(r, "mask/iou") for r in metrics[m]] for m in runs},
        }
        references = {
            "per-position masking frequency sd": {m: [_curve(r, "mask/position_sd_random") for r in metrics[m]]
                                                  for m in runs},
            "mean pairwise mask IoU": {m: [_curve(r, "mask/iou_random") for r in metrics[m]] for m in runs},
        }
        for m in runs:
            for log_key in masker_keys([row for r in metrics[m] for row in r]):
                panels.setdefault(log_key, {})[m] = [_curve(r, log_key) for r in metrics[m]]
        made["diagnostics"] = plots.diagnostics(out / names["diagnostics"], panels, references,
                                                f"masker diagnostics per epoch, {title}")

        # object coverage (data with object masks only): every seed's curve and random's expectation
        coverage = {m: coverage_curves(metrics[m]) for m in runs}
        if any(point for cov, _ in coverage.values() for curve in cov for point in curve):
            panel = "share of object tokens hidden"
            made["coverage"] = plots.diagnostics(
                out / names["coverage"], {panel: {m: cov for m, (cov, _) in coverage.items()}},
                {panel: {m: ref for m, (_, ref) in coverage.items()}}, f"object coverage per epoch, {title}")

        # final-epoch position frequency, averaged over seeds
        frequency, floors, grid = {}, {}, None
        for m in runs:
            finals = [r[-1].get("mask/position_frequency") for r in metrics[m] if r]
            finals = [f for f in finals if isinstance(f, list)]
            if finals:
                frequency[m] = np.mean(np.asarray(finals, dtype=float), axis=0).tolist()
                floors[m] = float(np.mean([as_float(r[-1].get("mask/position_sd_random")) for r in metrics[m] if r]))
            grid = grid or next((ev.get("grid") for ev in evals[m] if ev.get("grid")), None)
        if frequency:
            made["position_frequency"] = plots.position_frequency(
                out / names["position_frequency"], frequency, grid, floors,
                f"per-position masking frequency, final epoch (mean over seeds), {title}")

        # mask examples: the first seed's own masks per masker, and the shared random masks
        masks = {m: evals[m][0].get("mask_examples") or [] for m in runs if evals[m]}
        shared = next((ev.get("shared_mask_examples") for m in runs for ev in evals[m]
                       if ev.get("shared_mask_examples")), None)
        if shared:
            masks["shared random (eval)"] = shared
        if any(masks.values()):
            made["masks"] = plots.mask_examples(out / names["masks"], masks, grid,
                                                f"masks on the same evaluation samples (dark = hidden), {title}")
    return made


def sweep_figure(study: StudyConfig, rows: list[dict[str, Any]]) -> tuple[Path | None, str]:
    """Heat-map of probe accuracy (reconstruction loss without labels) over ratio x patch size."""
    cells = by_cell(rows)
    if len(cells) < 2:
        return None, ""
    column, label = "linear_acc", "linear probe accuracy"
    if not any(math.isfinite(r.get(column, float("nan"))) for r in rows if r["arm"] == "pretrained"):
        column, label = "recon_shared", "reconstruction loss, shared random mask"
    ratios = sorted({k[0] for k in cells})
    patches = sorted({k[1] for k in cells}, key=lambda p: -1 if p is None else p)
    values: dict[str, dict[tuple[float, object], float]] = {}
    for key, cell_rows in cells.items():
        for m in methods_in(cell_rows, study.maskers):
            if m in study.maskers:
                values.setdefault(m, {})[key] = spread(cell_rows, m, column).mean
    path = plots.sweep_heatmaps(Path(study.out) / SWEEP_FIGURE, values, ratios, patches, label)
    return path, column


def write_figures(study: StudyConfig, rows: list[dict[str, Any]]) -> dict[str, Any]:
    """{cell key: {kind: path}} plus "sweep": (path, column) and "levels": the latent-level figure or None."""
    made: dict[Any, Any] = {}
    for key, cell_rows in by_cell(rows).items():
        made[key] = _cell_figures(study, key, cell_rows)
    made["sweep"] = sweep_figure(study, rows)
    made["levels"] = level_figure(study, rows)
    return made


__all__ = ["FIGURE_DIR", "SWEEP_FIGURE", "figure_names", "write_figures", "sweep_figure"]
