"""report.md: results with baselines, paired verdicts, diagnostics, budget, exact settings.

Every number is computed from the rows of results.csv (as read back from the file) with
``maskkit.lab.study.tables``; docs/studies.md explains how to read each section.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from maskkit.lab.study.budget import budget_notes
from maskkit.lab.study.config import StudyConfig
from maskkit.lab.study.coverage import coverage_section
from maskkit.lab.study.evaluation import EVAL_FILE, read_json
from maskkit.lab.study.figures import SWEEP_FIGURE, figure_names
from maskkit.lab.study.grid import plan_runs
from maskkit.lab.study.levels import levels_section
from maskkit.lab.study.stats import PairedComparison
from maskkit.lab.study.tables import (
    METRIC_BY_COLUMN,
    METRICS,
    best_methods,
    by_cell,
    cell_label,
    fmt,
    fmt_p,
    fmt_spread,
    methods_in,
    spread,
    study_comparisons,
)
from maskkit.registry import build_masker, get_modality
from maskkit.safe_io import write_text

COLLAPSE_WORDS = {"collapsed": "collapsed to a fixed spatial pattern (masks are mostly position, not content)",
                  "positional": "partly follow position rather than content"}


# --------------------------------------------------------------------------- helpers
def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return lines


def _bold(text: str, on: bool) -> str:
    return f"**{text}**" if on and text != "–" else text


def _name(method: str) -> str:
    return {"random-init": "random-init encoder (no training)", "raw-input": "raw input"}.get(method, f"`{method}`")


def _seeds(rows: list[dict[str, Any]], method: str) -> int:
    return len({int(r["seed"]) for r in rows if r["method"] == method})


def _int(value: Any) -> str:
    return str(int(value)) if isinstance(value, (int, float)) and math.isfinite(value) else "–"


def masker_configs(study: StudyConfig) -> dict[str, dict[str, Any]]:
    """Each masker's full configuration as it ran (from an evaluation), else as the study builds it."""
    out: dict[str, dict[str, Any]] = {}
    for spec in plan_runs(study):
        if spec.masker not in out:
            ev = read_json(Path(study.out) / "runs" / spec.run_id / EVAL_FILE)
            if ev is not None and ev.get("masker_config") is not None:
                out[spec.masker] = ev["masker_config"]
    for masker in study.maskers:
        if masker not in out:
            try:

                out[masker] = build_masker(masker, study.masker_options.get(masker, {})).describe_config()
            except Exception:
                out[masker] = dict(study.masker_options.get(masker, {}))
    return out


def default_data(modality: str) -> str:

    return get_modality(modality).default_data or "the modality default"


# --------------------------------------------------------------------------- sections
def results_section(study: StudyConfig, key: Any, rows: list[dict[str, Any]]) -> list[str]:
    methods = methods_in(rows, study.maskers)
    shown = [m for m in METRICS if any(spread(rows, x, m.column).n for x in methods)]
    header = ["method"] + [m.label for m in shown] + ["seeds"]
    body = []
    best = {m.column: best_methods(rows, m, methods, study.maskers) for m in shown}
    for method in methods:
        cells = [_name(method)]
        for metric in shown:
            signed = metric.column.startswith("gain")
            text = fmt_spread(spread(rows, method, metric.column), metric.digits, signed)
            cells.append(_bold(text, method in best[metric.column]))
        body.append(cells + [str(_seeds(rows, method))])
    lines = [f"## Results: {cell_label(key)}", ""]
    lines += ["Mean ± sd over seeds (sd of the seed values, n-1); **bold** = best in the column "
              "(accuracy among all rows, gains and losses among the maskers). Gains are "
              "pretrained − random-init of the same seed. Lower reconstruction loss is better; only the "
              "shared-random-mask loss compares maskers on the same task.", ""]
    lines += _table(header, body)
    return lines + [""]


def _verdict_sentence(pc: PairedComparison, label: str) -> str:
    direction = "" if pc.higher_is_better else " (lower is better)"
    what = f"on {label}{direction}"
    if pc.n < 2:
        return (f"`{pc.masker}` vs `{pc.reference}` {what}: no difference detectable with {pc.n} seed; a paired "
                f"comparison needs at least 2 seeds (difference {fmt(pc.mean, 4, True)}).")
    interval = (f"mean paired difference {fmt(pc.mean, 4, True)}, {pc.confidence:.0%} "
                f"{'t' if pc.method == 't' else 'bootstrap'} interval [{fmt(pc.low, 4, True)}, "
                f"{fmt(pc.high, 4, True)}] over {pc.n} seeds, sign-flip p {fmt_p(pc.p_value)}, "
                f"Holm-adjusted p {fmt_p(pc.decisive_p)}")
    alpha = f"{1 - pc.confidence:.2g}"
    if pc.verdict in ("better", "worse"):
        return f"`{pc.masker}` is **{pc.verdict}** than `{pc.reference}` {what}: {interval} (below {alpha})."
    return f"`{pc.masker}` vs `{pc.reference}` {what}: **{pc.verdict}** ({interval}, not below {alpha})."


def paired_section(study: StudyConfig, comparisons: list[PairedComparison]) -> list[str]:
    """The paired table and its sentences for one cell's comparisons (already Holm-adjusted study-wide)."""
    body = []
    for pc in comparisons:
        digits = 4
        diffs = ", ".join(f"s{s}: {fmt(d, digits, True)}" for s, d in zip(pc.seeds, pc.differences, strict=True))
        body.append([f"`{pc.masker}`", METRIC_BY_COLUMN[pc.metric].label, diffs, fmt(pc.mean, digits, True),
                     f"[{fmt(pc.low, digits, True)}, {fmt(pc.high, digits, True)}]", fmt_p(pc.p_value),
                     fmt_p(pc.decisive_p), pc.verdict])
    if not body:
        return []
    method = "Student t" if study.interval == "t" else f"percentile bootstrap ({study.bootstrap_samples} resamples)"
    lines = [f"### Paired differences vs `{study.reference}` (masker − reference, seed by seed)", "",
             f"Runs with the same seed share initial weights, data order and augmentation; the interval is a "
             f"{study.confidence:.0%} {method} interval of the mean difference, p the exact sign-flip p-value "
             f"and p_holm that p after a Holm correction across all comparisons of the study, which decides "
             f"the verdict (below {1 - study.confidence:.2g}).", ""]
    lines += _table(["masker", "metric", "per-seed difference", "mean", f"{study.confidence:.0%} interval",
                     "p", "p_holm", "verdict"], body)
    lines += ["", "In words:", ""]
    lines += [f"- {_verdict_sentence(pc, METRIC_BY_COLUMN[pc.metric].label)}" for pc in comparisons]
    return lines + [""]


def collapse_warnings(study: StudyConfig, cells: dict[Any, list[dict[str, Any]]]) -> list[str]:
    out = []
    for key, rows in cells.items():
        names = figure_names(key)
        for masker in study.maskers:
            runs = [r for r in rows if r["method"] == masker]
            bad = [r for r in runs if r.get("worst_collapse") not in ("", "ok", None)]
            if not bad:
                continue
            worst = "collapsed" if any(r["worst_collapse"] == "collapsed" for r in bad) else "positional"
            finals = ", ".join(sorted({str(r.get("collapse")) for r in bad}))
            epochs = "; ".join(f"seed {int(r['seed'])}: epochs {r.get('flagged_epochs') or '–'}" for r in bad)
            out.append(f"⚠ masker `{masker}` ({cell_label(key)}): masks {COLLAPSE_WORDS[worst]} in {len(bad)} of "
                       f"{len(runs)} runs (final-epoch verdict: {finals}; flagged {epochs}). See figures "
                       f"`{names['position_frequency']}` and `{names['diagnostics']}`.")
    return out


def budget_section(study: StudyConfig, rows: list[dict[str, Any]], configs: dict[str, dict[str, Any]]
                   ) -> tuple[list[str], list[str]]:
    runs = sorted((r for r in rows if r["arm"] == "pretrained"), key=lambda r: r["run_id"])
    body = [[f"`{r['run_id']}`", _int(r.get("epochs")), _int(r.get("steps")), _int(r.get("samples_seen")),
             fmt(r.get("wall_time", float("nan")), 1), fmt(r.get("train_loss", float("nan")), 4)] for r in runs]
    notes: list[str] = []
    for masker in study.maskers:
        # a "started" log (e.g. masker/sg/started): its final-epoch mean is 0 if informed masking never ran
        started = [v for r in runs if r["masker"] == masker for k, v in r.items()
                   if k.startswith("masker/") and k.rsplit("/", 1)[-1] == "started"]
        started = [float(v) for v in started if isinstance(v, float) and math.isfinite(v)]
        notes += budget_notes(masker, configs.get(masker), study.epochs, max(started) if started else None)
    lines = ["## Budget", "",
             "Every run of the study had the same budget; wall time includes the masker's own cost.", ""]
    lines += _table(["run", "epochs", "steps", "samples seen", "wall time (s)", "final train loss"], body)
    if notes:
        lines += ["", "Budget notes:", ""] + [f"- {n}" for n in notes]
    return lines + [""], notes


def diagnostics_section(study: StudyConfig, key: Any, rows: list[dict[str, Any]], figures: dict[str, Path]
                        ) -> list[str]:
    names = figure_names(key)
    runs = [r for r in rows if r["arm"] == "pretrained"]
    masker_cols = sorted({k for r in runs for k in r if k.startswith("masker/")})
    header = ["masker", "realised ratio", "position sd (random)", "mask IoU (random)", "verdict: final / worst"]
    header += masker_cols
    body = []
    for masker in [m for m in study.maskers if any(r["method"] == m for r in runs)]:
        mine = [r for r in runs if r["method"] == masker]
        cells = [f"`{masker}`", fmt_spread(spread(rows, masker, "realised_ratio"), 3),
                 f"{fmt_spread(spread(rows, masker, 'position_sd'), 3)} "
                 f"({fmt(spread(rows, masker, 'position_sd_random').mean, 3)})",
                 f"{fmt_spread(spread(rows, masker, 'mask_iou'), 3)} "
                 f"({fmt(spread(rows, masker, 'mask_iou_random').mean, 3)})",
                 f"{'/'.join(sorted({str(r.get('collapse') or '–') for r in mine}))} / "
                 f"{'/'.join(sorted({str(r.get('worst_collapse') or '–') for r in mine}))}"]
        cells += [fmt_spread(spread(rows, masker, c), 3) for c in masker_cols]
        body.append(cells)
    lines = [f"### Masker diagnostics: {cell_label(key)}", "",
             "Final-epoch values, mean ± sd over seeds; in brackets what uniformly random masks give. "
             "Per-epoch curves and the per-position masking frequency over the token grid are in the figures.",
             ""]
    lines += _table(header, body) + [""]
    for kind, caption in (("diagnostics", "per-epoch diagnostics"),
                          ("position_frequency", "per-position masking frequency")):
        if kind in figures:
            lines += [f"![{caption}]({names[kind]})", ""]
    return lines


def clustering_section(study: StudyConfig, cells: dict[Any, list[dict[str, Any]]], notes: list[str]) -> list[str]:
    lines = ["## Token-clustering metrics", ""]
    columns = sorted({k for rows in cells.values() for r in rows for k in r if k.startswith("cluster/")})
    if not columns:
        return lines + [notes[0] if notes else "Not computed (analysis = false).", ""]
    lines += ["From `maskkit.lab.analysis` on the evaluation data (each run with its own masker; the random-init "
              "encoder with random masks). Mean ± sd over seeds.", ""]
    for key, rows in cells.items():
        methods = [m for m in methods_in(rows, study.maskers) if m != "raw-input"]
        body = [[_name(m)] + [fmt_spread(spread(rows, m, c), 3) for c in columns] for m in methods]
        lines += [f"### {cell_label(key)}", ""] + _table(["method"] + [c.split("/", 1)[1] for c in columns], body)
        lines.append("")
    return lines + [f"- {n}" for n in notes] + ([""] if notes else [])


def settings_section(study: StudyConfig, configs: dict[str, dict[str, Any]], rows: list[dict[str, Any]]
                     ) -> list[str]:
    from importlib.metadata import PackageNotFoundError, version

    import torch

    try:
        maskkit_version = version("maskkit")
    except PackageNotFoundError:
        maskkit_version = "?"
    resolved = None
    for r in rows:
        if r["arm"] == "pretrained":
            resolved = read_json(Path(study.out) / "runs" / r["run_id"] / "config.json")
            if resolved:
                break
    runs = [r for r in rows if r["arm"] == "pretrained"]
    steps = sorted({_int(r.get("steps")) for r in runs})
    items = [
        ("modality", f"`{study.modality}`"),
        ("training data", f"`{study.data or default_data(study.modality)}`"),
        ("evaluation data", f"`{study.eval_data}`" if study.eval_data else
         (f"the training data without augmentation for probes; reconstruction loss on the {study.holdout:.0%} "
          "of samples held out of every run's training (one fixed split)" if study.holdout > 0 else
          "the training data without augmentation (no held-out set: set `eval_data` or `holdout`)")),
        ("model", f"`{(resolved or {}).get('model') or study.model}` "
                  f"{json.dumps((resolved or {}).get('resolved_model', {}))}"),
        ("modality options", f"`{json.dumps((resolved or {}).get('modality_options', study.modality_options))}`"),
        ("epochs", str(study.epochs)),
        ("batch size", str(study.batch_size)),
        ("max steps per epoch", str(study.max_steps_per_epoch or "all")),
        ("steps per run", ", ".join(steps) or "–"),
        ("seeds", ", ".join(str(s) for s in study.seed_list)),
        ("mask ratios", ", ".join(f"{r:g}" for r in sorted({float(r['mask_ratio']) for r in rows})) or "–"),
        ("patch sizes", ", ".join(str(p) for p in study.patch_sizes) or "modality default"),
        ("other training options", f"`{json.dumps(study.train_options)}`" if study.train_options else "defaults"),
        ("learning rate", f"peak lr from base_lr {(resolved or {}).get('base_lr') or 'of the model preset'} "
                          "× batch / 256"
                          if (resolved or {}).get("lr") is None else f"lr {(resolved or {}).get('lr')}"),
        ("devices", ", ".join(study.devices)),
        ("reference masker", f"`{study.reference}`"),
        ("probe protocol", f"frozen encoder, `{study.probe_feature}` features of the unmasked input, up to "
                           f"{study.eval_max_samples} labelled samples, stratified 5-fold CV (seed "
                           f"{study.eval_seed}), standardised logistic regression and cosine {study.knn_k}-NN"),
        ("reconstruction protocol", f"up to {study.recon_max_samples} evaluation samples; own masks and one "
                                    f"shared random mask per sample (seed {study.eval_seed}), loss averaged over "
                                    f"hidden tokens"),
        ("learning-curve probes", f"every {study.resolved_curve_every()} epochs" if study.resolved_curve_every()
         else "final model only"),
        ("interval", f"{study.confidence:.0%} " + ("Student t" if study.interval == "t" else "percentile bootstrap")),
        ("verdicts", f"exact sign-flip p, Holm-adjusted across all comparisons of the study, below "
                     f"{1 - study.confidence:.2g}"),
        ("versions", f"maskkit {maskkit_version}, torch {torch.__version__}"),
    ]
    lines = ["## Settings", ""] + _table(["setting", "value"], [[k, v] for k, v in items])
    lines += ["", "Masker configurations (`describe_config()`):", ""]
    lines += [f"- `{m}`: `{json.dumps(configs.get(m, {}), default=str)}`" for m in study.maskers]
    return lines + [""]


# --------------------------------------------------------------------------- the report
def build_report(study: StudyConfig, rows: list[dict[str, Any]], figures: dict[Any, Any],
                 notes: list[str] | None = None) -> tuple[str, list[PairedComparison]]:
    """Markdown text and the paired comparisons it states (rows as read from results.csv)."""
    cells = by_cell(rows)
    configs = masker_configs(study)
    evaluations = [ev for spec in plan_runs(study)
                   if (ev := read_json(Path(study.out) / "runs" / spec.run_id / EVAL_FILE)) is not None]
    clustering_notes = sorted({ev["clustering_note"] for ev in evaluations if ev.get("clustering_note")})
    probe_notes = sorted({ev["probe_note"] for ev in evaluations if ev.get("probe_note")})
    runs = [r for r in rows if r["arm"] == "pretrained"]
    planned = {s.run_id for s in plan_runs(study)}
    missing = sorted(planned - {r["run_id"] for r in runs})
    budget_lines, budget_note_list = budget_section(study, rows, configs)

    warnings = collapse_warnings(study, cells)
    warnings += [f"Budget: {n}" for n in budget_note_list]
    if missing:
        warnings.append(f"{len(missing)} of {len(planned)} runs are missing (failed or not finished): "
                        + ", ".join(f"`{m}`" for m in missing))
    if runs and not any(math.isfinite(r.get("linear_acc", float("nan"))) for r in runs):
        reason = "; ".join(probe_notes) or "the evaluation data has no labels"
        warnings.append(f"no linear probe or k-NN ({reason}); compare the shared-random-mask reconstruction "
                        f"loss instead")
    warnings += list(notes or [])

    lines = [f"# Masking study: {', '.join(study.maskers)} on `{study.modality}`", ""]
    lines += [f"{len(runs)} trained runs ({len(study.maskers)} maskers × {len(study.seed_list)} seeds × "
              f"{len(cells)} setting{'s' if len(cells) != 1 else ''}), {study.epochs} epochs each, evaluated "
              f"with one protocol beside a random-init encoder and the raw input. All numbers come from "
              f"`results.csv`; docs/studies.md explains how to read this report.", ""]
    lines += ["## Warnings", ""] + ([f"- {w}" for w in warnings] if warnings else ["None."]) + [""]
    comparisons = study_comparisons(rows, study.maskers, study.reference, study.confidence, study.interval,
                                    study.bootstrap_samples)
    for key, cell_rows in cells.items():
        lines += results_section(study, key, cell_rows)
        lines += paired_section(study, [pc for pc in comparisons if pc.setting == cell_label(key)])
        if "curves" in figures.get(key, {}):
            lines += [f"![learning curves]({figure_names(key)['curves']})", ""]
    sweep_path, sweep_column = figures.get("sweep", (None, ""))
    if len(cells) > 1:
        lines += sweep_section(study, cells, sweep_path, sweep_column)
    lines += levels_section(study, rows, figures.get("levels"))
    lines += ["## Masker diagnostics", ""]
    for key, cell_rows in cells.items():
        lines += diagnostics_section(study, key, cell_rows, figures.get(key, {}))
        lines += coverage_section(study, key, cell_rows, figure_names(key)["coverage"]
                                  if "coverage" in figures.get(key, {}) else None)
    lines += clustering_section(study, cells, clustering_notes)
    examples = [(key, f) for key, f in figures.items() if key not in ("sweep", "levels") and "masks" in f]
    if examples:
        lines += ["## Mask examples", "", "The same evaluation samples for every masker (first seed, final model); "
                  "the last row is the shared random mask used for the fair reconstruction number.", ""]
        for key, _ in examples:
            lines += [f"![mask examples, {cell_label(key)}]({figure_names(key)['masks']})", ""]
            links = reconstruction_links(study, cells[key])
            if links:
                lines += ["Reconstructions drawn by the modality at the end of training (first seed): "
                          + ", ".join(links), ""]
    lines += budget_lines
    lines += settings_section(study, configs, rows)
    return "\n".join(lines), comparisons


def reconstruction_links(study: StudyConfig, rows: list[dict[str, Any]]) -> list[str]:
    """Links to each masker's first-seed ``reconstruction.png`` (original / masked / reconstruction)."""
    links = []
    for masker in study.maskers:
        runs = sorted((r for r in rows if r["method"] == masker), key=lambda r: r["seed"])
        if runs and (Path(study.out) / "runs" / runs[0]["run_id"] / "reconstruction.png").is_file():
            links.append(f"[{masker}](runs/{runs[0]['run_id']}/reconstruction.png)")
    return links


def sweep_section(study: StudyConfig, cells: dict[Any, list[dict[str, Any]]], path: Path | None,
                  column: str) -> list[str]:
    """Per masker, a mask ratio x patch size grid of one metric (and the random-init baseline)."""
    metric = METRIC_BY_COLUMN[column or "linear_acc"]
    ratios = sorted({k[0] for k in cells})
    patches = sorted({k[1] for k in cells}, key=lambda p: -1 if p is None else p)
    header = ["mask ratio ↓ / patch size →"] + [str(p) if p is not None else "default" for p in patches]
    lines = ["## Sweep over mask ratio and patch size", "",
             f"{metric.label}, mean ± sd over seeds; **bold** = the masker's best setting.", ""]
    methods = list(study.maskers) + (["random-init"] if metric.column in ("linear_acc", "knn_acc") else [])
    for method in methods:
        grid = {k: spread(rows, method, metric.column) for k, rows in cells.items()}
        shown = [round(s.mean, metric.digits) for s in grid.values() if s.n]
        if not shown:
            continue
        best = max(shown) if metric.higher_is_better else min(shown)
        body = []
        for r in ratios:
            row = [f"{r:g}"]
            for p in patches:
                s = grid.get((r, p))
                text = fmt_spread(s, metric.digits) if s is not None else "–"
                row.append(_bold(text, s is not None and s.n > 0 and round(s.mean, metric.digits) == best
                                 and len(shown) > 1))
            body.append(row)
        lines += [f"{_name(method)}:", ""] + _table(header, body) + [""]
    if path is not None:
        lines += [f"![sweep heat-map]({SWEEP_FIGURE})", ""]
    return lines


def write_report(path: Path, text: str) -> None:
    write_text(path, text + "\n")


__all__ = ["build_report", "collapse_warnings", "masker_configs", "write_report"]
