"""A whole study in one call: jobs -> results.csv -> figures -> report.md."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from maskkit.lab.study.config import StudyConfig
from maskkit.lab.study.figures import write_figures
from maskkit.lab.study.report import build_report, write_report
from maskkit.lab.study.results import collect_rows, read_results, write_results
from maskkit.lab.study.runner import StudyProgress, run_jobs
from maskkit.lab.study.stats import PairedComparison
from maskkit.train.rundir import owned


@dataclass
class StudyOutcome:
    out: Path
    results: Path
    report: Path
    rows: list[dict[str, Any]]
    comparisons: list[PairedComparison]
    progress: StudyProgress = field(default_factory=StudyProgress)


def write_outputs(study: StudyConfig, notes: list[str] | None = None) -> StudyOutcome:
    """results.csv from what the study directory holds, then figures and report.md from that CSV."""

    out = Path(study.out)
    results = out / "results.csv"
    write_results(results, collect_rows(study))
    rows = read_results(results)
    notes = list(notes or [])
    try:
        figures = write_figures(study, rows)
    except Exception as exc:  # results.csv is already safe; say what failed and keep the report
        figures = {}
        notes.append(f"figures could not be drawn ({type(exc).__name__}: {exc}); rerun with `report_only` "
                     f"after fixing it")
    text, comparisons = build_report(study, rows, figures, notes)
    report = out / "report.md"
    write_report(report, text)
    (out / "comparisons.json").write_text(json.dumps([c.to_dict() for c in comparisons], indent=1))
    return StudyOutcome(out=out, results=results, report=report, rows=rows, comparisons=comparisons)


def run_study(study: StudyConfig, console: Any = None, report_only: bool = False) -> StudyOutcome:
    """Train and evaluate what is missing (unless ``report_only``), then write the outputs.

    The study directory is owned by this process throughout (a second study with the same ``out`` is
    refused); each run inside it is owned by its trainer as well.
    """

    progress = StudyProgress()
    notes: list[str] = []
    with owned(study.out, "compare"):
        if not report_only:
            progress = run_jobs(study, console=console)
            notes += [f"run `{f.name}` failed: {f.error}" for f in progress.failures]
        outcome = write_outputs(study, notes)
    outcome.progress = progress
    return outcome


__all__ = ["StudyOutcome", "run_study", "write_outputs"]
