"""Latent probes in a study: per-latent tables and, over a mask-ratio sweep, one curve per latent level.

The data's latent declarations (name, kind, level) come from the evaluations the study wrote; the
numbers come from the ``latent/<name>`` columns of results.csv. A level's score is the mean of its
latents' probe scores (accuracy for categorical, R² for continuous latents), per seed, so the
spread over seeds stays visible. The theory this reads against: the mask ratio and the patch size
choose which level the encoder recovers (see docs/studies.md).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from maskkit.lab.study import plots
from maskkit.lab.study.config import StudyConfig
from maskkit.lab.study.evaluation import EVAL_FILE, read_json
from maskkit.lab.study.grid import baseline_path, plan_baselines, plan_runs, run_dir
from maskkit.lab.study.stats import mean_sd
from maskkit.lab.study.tables import by_cell, cell_label, fmt, fmt_spread, spread

LEVEL_FIGURE = "figures/latent_levels.png"
Declaration = dict[str, Any]  # {"name", "kind", "level", "metric"}


def latent_declarations(study: StudyConfig) -> list[Declaration]:
    """The latents the study's data declares, as its first evaluation with latent probes recorded them."""
    paths = [run_dir(study, s) / EVAL_FILE for s in plan_runs(study)]
    paths += [baseline_path(study, b) for b in plan_baselines(study)]
    for path in paths:
        payload = read_json(path) or {}
        if payload.get("latents"):
            return [{k: r[k] for k in ("name", "kind", "level", "metric")} for r in payload["latents"]]
    return []


def _table(header: list[str], body: list[list[str]]) -> list[str]:
    return (["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
            + ["| " + " | ".join(r) + " |" for r in body])


def by_level(declarations: list[Declaration]) -> dict[int, list[Declaration]]:
    out: dict[int, list[Declaration]] = {}
    for d in sorted(declarations, key=lambda d: (int(d["level"]), d["name"])):
        out.setdefault(int(d["level"]), []).append(d)
    return out


def level_label(level: int, members: list[Declaration]) -> str:
    return f"level {level} ({', '.join(d['name'] for d in members)})"


def level_scores(rows: list[dict[str, Any]], method: str, members: list[Declaration]) -> dict[int, float]:
    """{seed: mean probe score of the level's latents} for one method in one cell (seeds with all latents)."""
    out = {}
    for row in rows:
        if row["method"] != method:
            continue
        scores = [row.get(f"latent/{d['name']}", float("nan")) for d in members]
        if scores and all(isinstance(v, (int, float)) and math.isfinite(v) for v in scores):
            out[int(row["seed"])] = float(np.mean(scores))
    return out


def _patches(cells: dict[Any, list[dict[str, Any]]]) -> list[Any]:
    return sorted({k[1] for k in cells}, key=lambda p: -1 if p is None else p)


def level_figure(study: StudyConfig, rows: list[dict[str, Any]]) -> Path | None:
    """Per masker and patch size: each level's score over the mask ratio (seed mean, band min..max over
    seeds), with the random-init encoder's level dashed. None without latents or without a ratio sweep."""
    levels = by_level(latent_declarations(study))
    cells = by_cell(rows)
    if not levels or len({k[0] for k in cells}) < 2:
        return None
    panels: dict[str, tuple[dict[str, list], dict[str, float]]] = {}
    for masker in study.maskers:
        for patch in _patches(cells):
            curves: dict[str, list] = {}
            baselines: dict[str, float] = {}
            for level, members in levels.items():
                label = level_label(level, members)
                per_seed: dict[int, list[tuple[float, float]]] = {}
                reference: list[float] = []
                for (ratio, p), cell_rows in cells.items():
                    if p != patch:
                        continue
                    for seed, value in level_scores(cell_rows, masker, members).items():
                        per_seed.setdefault(seed, []).append((ratio, value))
                    reference += list(level_scores(cell_rows, "random-init", members).values())
                curves[label] = [sorted(points) for _, points in sorted(per_seed.items())]
                baselines[label] = mean_sd(reference).mean
            title = masker + (f", patch size {patch}" if patch is not None else "")
            panels[title] = (curves, baselines)
    return plots.level_curves(Path(study.out) / LEVEL_FIGURE, panels,
                              "probe score of each latent level over the mask ratio (dashed: random-init)")


def best_ratio_sentences(study: StudyConfig, rows: list[dict[str, Any]], levels: dict[int, list[Declaration]]
                         ) -> list[str]:
    """In words: which mask ratio gives each level's highest mean score, per masker and patch size."""
    cells = by_cell(rows)
    out = []
    for masker in study.maskers:
        for patch in _patches(cells):
            parts = []
            for level, members in levels.items():
                means = {}
                reference = []
                for (ratio, p), cell_rows in cells.items():
                    if p == patch:
                        s = mean_sd(list(level_scores(cell_rows, masker, members).values()))
                        if s.n:
                            means[ratio] = s
                        reference += list(level_scores(cell_rows, "random-init", members).values())
                if not means:
                    continue
                best = max(means, key=lambda r: means[r].mean)
                others = ", ".join(f"{r:g}: {fmt(means[r].mean, 3)}" for r in sorted(means) if r != best)
                parts.append(f"{level_label(level, members)} is recovered best at mask ratio {best:g} "
                             f"({fmt_spread(means[best], 3)}; {others or 'no other ratio'}; random-init "
                             f"{fmt(mean_sd(reference).mean, 3)})")
            if parts:
                where = f"`{masker}`" + (f", patch size {patch}" if patch is not None else "")
                out.append(f"{where}: " + "; ".join(parts) + ".")
    return out


def levels_section(study: StudyConfig, rows: list[dict[str, Any]], figure: Path | None) -> list[str]:
    """## Latent probes: a table per cell (pretrained per masker, random-init, raw input), the per-level
    figure and sentences when the study sweeps the mask ratio. Empty when the data declares no latents."""
    declarations = latent_declarations(study)
    if not declarations:
        return []
    levels = by_level(declarations)
    cells = by_cell(rows)
    lines = ["## Latent probes", "",
             "Every latent the data records, probed from the frozen features (accuracy for categorical, R² for "
             "continuous latents; 5-fold CV, same samples and folds for every row). Level 1 is the most global. "
             "Mean ± sd over seeds.", ""]
    maskers = [m for m in study.maskers if any(r["method"] == m for r in rows)]
    # (header, method, cell rows): every masker in every cell, random-init once per patch size, raw input once
    columns = [(f"`{m}`, {cell_label(k)}", m, cell_rows) for k, cell_rows in cells.items() for m in maskers]
    first_of_patch = {}
    for k, cell_rows in cells.items():
        first_of_patch.setdefault(k[1], cell_rows)
    columns += [("random-init" + (f", patch size {p}" if p is not None else ""), "random-init", cell_rows)
                for p, cell_rows in first_of_patch.items()]
    columns.append(("raw input", "raw-input", next(iter(cells.values()))))
    body = []
    for level, members in levels.items():
        for d in members:
            body.append([f"`{d['name']}`", str(level), d["metric"]]
                        + [fmt_spread(spread(cell_rows, m, f"latent/{d['name']}"), 3) for _, m, cell_rows in columns])
    lines += _table(["latent", "level", "metric"] + [c[0] for c in columns], body) + [""]
    if figure is not None:
        lines += ["Over the mask-ratio sweep, each level's score is the mean of its latents' scores; the theory of "
                  "hierarchical latent models says the ratio and patch size choose which level is recovered, "
                  "and that extreme ratios favour low levels.", "", f"![latent levels]({LEVEL_FIGURE})", ""]
        lines += [f"- {s}" for s in best_ratio_sentences(study, rows, levels)] + [""]
    return lines


__all__ = ["LEVEL_FIGURE", "best_ratio_sentences", "latent_declarations", "level_figure", "levels_section"]
