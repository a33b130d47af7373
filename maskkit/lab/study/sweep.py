"""Sweeps of recipe settings (lr x epochs x warm-up, model, data): one sub-study per grid point.

``sweep = {"base_lr": [1e-4, 1e-3], "epochs": [10, 20]}`` runs the study once per combination in
``OUT/sweep/<key>=<value>...``, each a complete study (runs, baselines, report), then writes
``OUT/sweep.csv`` (every sub-study's results.csv rows with the swept values as leading columns)
and ``OUT/sweep.md`` (per point and masker: probe accuracy, gain over random-init, training and
reconstruction loss, mean ± sd over seeds). Defaults are meant to be chosen from the gains; the
losses sit beside them because a lower loss has not meant a better encoder on small data.
"""

from __future__ import annotations

import csv
import io
import itertools
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from maskkit.config_utils import ConfigError
from maskkit.lab.study.config import STUDY_AXES, StudyConfig, check_sweep
from maskkit.lab.study.results import _finite, read_results
from maskkit.lab.study.stats import mean_sd
from maskkit.safe_io import ensure_dir, write_text

#: study fields a sweep may vary; any other key must be a training option (``[train]``)
#: columns of sweep.md, in order: (results.csv column, heading, digits)
SUMMARY_COLUMNS = (("linear_acc", "linear probe", 3), ("gain_linear", "Δ linear vs random-init", 3),
                   ("knn_acc", "k-NN", 3), ("gain_knn", "Δ k-NN vs random-init", 3),
                   ("finetune_acc", "fine-tune", 3), ("gain_finetune", "Δ fine-tune vs random-init", 3),
                   ("train_loss", "train loss", 4), ("recon_shared", "recon. loss (held out)", 4),
                   ("wall_time", "wall s", 0))


def parse_sweep(items: list[str] | None) -> dict[str, list[str]]:
    """``["base_lr=1e-4,1e-3", "epochs=10,20"]`` -> ``{"base_lr": ["1e-4", "1e-3"], "epochs": ["10", "20"]}``."""
    out: dict[str, list[str]] = {}
    for item in items or []:
        key, sep, values = item.partition("=")
        key = key.strip().replace("-", "_")
        listed = [v.strip() for v in values.split(",") if v.strip()]
        if not sep or not key or not listed:
            raise ConfigError(f"`sweep` expects KEY=v1,v2 (e.g. base_lr=1e-4,1e-3), got {item!r}")
        out[key] = listed
    return out


@dataclass(frozen=True)
class SweepPoint:
    values: tuple[tuple[str, Any], ...]  # (key, value) in the sweep's key order

    @property
    def slug(self) -> str:
        return "_".join(f"{k}={_slug_value(v)}" for k, v in self.values)

    @property
    def label(self) -> str:
        return ", ".join(f"{k} {v}" for k, v in self.values)


def _slug_value(value: Any) -> str:
    return "".join(c if c.isalnum() or c in ".-+" else "-" for c in str(value))


def sweep_points(study: StudyConfig) -> list[SweepPoint]:
    keys = list(study.sweep)
    return [SweepPoint(tuple(zip(keys, combo, strict=True)))
            for combo in itertools.product(*(study.sweep[k] for k in keys))]


def point_study(study: StudyConfig, point: SweepPoint) -> StudyConfig:
    """The sub-study of one grid point: the parent's settings with this point's values, no sweep."""
    values = study.to_dict()
    values.update(sweep={}, out=str(Path(study.out) / "sweep" / point.slug))
    train = dict(values.get("train_options") or {})
    for key, value in point.values:
        if key in STUDY_AXES:
            values[key] = value
        else:
            train[key] = value
    values["train_options"] = train
    return StudyConfig.from_dict(values)


def sweep_rows(study: StudyConfig) -> list[dict[str, Any]]:
    """Every sub-study's results.csv rows plus the point's values (a swept ``epochs`` replaces the
    column's per-run value, also on the baseline rows); points not run yet add no rows."""
    rows = []
    for point in sweep_points(study):
        path = Path(point_study(study, point).out) / "results.csv"
        if path.is_file():
            rows += [{**row, **dict(point.values)} for row in read_results(path)]  # the point's value wins
    return rows


def write_sweep_csv(path: Path, keys: list[str], rows: list[dict[str, Any]]) -> None:
    columns = list(keys) + [c for c in dict.fromkeys(k for row in rows for k in row) if c not in keys]
    text = io.StringIO(newline="")
    writer = csv.DictWriter(text, fieldnames=columns)
    writer.writeheader()
    for row in rows:
        writer.writerow({k: _text(row.get(k)) for k in columns})
    write_text(path, text.getvalue())  # temp file + rename, never through a planted link


def _text(value: Any) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return ""
    return repr(value) if isinstance(value, float) else str(value)


def summary_table(study: StudyConfig, rows: list[dict[str, Any]]) -> list[str]:
    """Markdown: one line per (point, method), mean ± sd over seeds of each summary column present."""
    present = [c for c in SUMMARY_COLUMNS if any(_finite(r.get(c[0])) for r in rows)]
    header = list(study.sweep) + ["method", "seeds"] + [c[1] for c in present]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for point in sweep_points(study):
        mine = [r for r in rows if all(str(r.get(k)) == str(v) for k, v in point.values)]
        for method in dict.fromkeys(r["method"] for r in mine):
            group = [r for r in mine if r["method"] == method]
            cells = [str(v) for _, v in point.values] + [f"`{method}`", str(len(group))]
            for column, _, digits in present:
                found = [float(r[column]) for r in group if _finite(r.get(column))]
                cells.append(_mean_sd_text(found, digits, column.startswith("gain_")))
            lines.append("| " + " | ".join(cells) + " |")
    return lines


def _mean_sd_text(values: list[float], digits: int, signed: bool) -> str:
    if not values:
        return "–"
    spread = mean_sd(values)
    sign = "+" if signed else ""
    text = f"{spread.mean:{sign}.{digits}f}"
    return text if len(values) < 2 else f"{text} ± {spread.sd:.{digits}f}"


def write_sweep_outputs(study: StudyConfig) -> tuple[Path, Path]:
    """OUT/sweep.csv and OUT/sweep.md from what the sub-studies hold."""
    out = Path(study.out)
    ensure_dir(out)
    rows = sweep_rows(study)
    csv_path, md_path = out / "sweep.csv", out / "sweep.md"
    write_sweep_csv(csv_path, list(study.sweep), rows)
    axes = "; ".join(f"{k} ∈ {{{', '.join(str(v) for v in vs)}}}" for k, vs in study.sweep.items())
    lines = [f"# Sweep: {axes}", "",
             f"{len(sweep_points(study))} grid points × maskers {', '.join(study.maskers)} × seeds "
             f"{', '.join(str(s) for s in study.seed_list)}; each point is a full study in `sweep/<point>/` "
             f"(its own report.md). Gains are pretrained − random-init of the same seed; mean ± sd over seeds.",
             "", *summary_table(study, rows), ""]
    write_text(md_path, "\n".join(lines))
    return csv_path, md_path


def write_sweep_file(study: StudyConfig) -> None:
    """OUT/study.json: the sweep's own settings, what a report-only run of OUT reads back."""
    ensure_dir(study.out)
    write_text(Path(study.out) / "study.json", json.dumps(study.to_dict(), indent=2))


def run_sweep(study: StudyConfig, console: Any = None, report_only: bool = False) -> list[Any]:
    """Run (or with ``report_only`` re-report) every grid point's study, then the sweep's files."""
    from maskkit.lab.study.pipeline import run_study

    outcomes = []
    if not report_only:
        write_sweep_file(study)
    for point in sweep_points(study):
        if console is not None:
            console.print(f"[bold]sweep point[/]: {point.label}")
        sub = point_study(study, point)
        if report_only and not (Path(sub.out) / "study.json").is_file():  # a point never run
            continue
        outcomes.append(run_study(sub, console=console, report_only=report_only))
    write_sweep_outputs(study)
    return outcomes


def run_sweep_shard(study: StudyConfig, shard: tuple[int, int], console: Any = None) -> Any:
    """Task ``i`` of ``n``'s share of every grid point's jobs: the points' job lists laid end to end
    and dealt out as a sharded study deals its own, so ``n`` need not divide a point's jobs and every
    task gets an equal share of the sweep. Writes no summary; ``report_only`` builds it afterwards."""
    from maskkit.lab.study.pipeline import check_shard, run_study_shard
    from maskkit.lab.study.runner import StudyProgress, plan_jobs

    check_shard(shard)
    write_sweep_file(study)
    total, offset = StudyProgress(), 0
    for point in sweep_points(study):
        sub = point_study(study, point)
        if console is not None:
            console.print(f"[bold]sweep point[/]: {point.label}")
        progress = run_study_shard(sub, shard, console=console, offset=offset)
        offset += len(plan_jobs(sub))
        total.trained += progress.trained
        total.evaluated += progress.evaluated
        total.skipped += progress.skipped
        total.failures += progress.failures
    return total


def sweep_outputs_note(study: StudyConfig) -> str:
    out = Path(study.out)
    return f"sweep: {out / 'sweep.md'}\nresults: {out / 'sweep.csv'} (each point's report under {out / 'sweep'})"


__all__ = ["STUDY_AXES", "SweepPoint", "check_sweep", "parse_sweep", "point_study", "run_sweep",
           "run_sweep_shard", "sweep_outputs_note", "sweep_points", "sweep_rows", "write_sweep_outputs"]
