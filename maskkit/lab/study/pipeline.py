"""A whole study in one call: jobs -> results.csv -> figures -> report.md."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from maskkit.config_utils import ConfigError
from maskkit.lab.study.config import StudyConfig
from maskkit.lab.study.figures import write_figures
from maskkit.lab.study.report import build_report, write_report
from maskkit.lab.study.results import collect_rows, read_results, write_results
from maskkit.lab.study.runner import StudyProgress, run_jobs
from maskkit.lab.study.stats import PairedComparison
from maskkit.safe_io import write_text
from maskkit.train.rundir import check_out_location, owned


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
    write_text(out / "comparisons.json", json.dumps([c.to_dict() for c in comparisons], indent=1))
    return StudyOutcome(out=out, results=results, report=report, rows=rows, comparisons=comparisons)


def run_study(study: StudyConfig, console: Any = None, report_only: bool = False) -> StudyOutcome:
    """Train and evaluate what is missing (unless ``report_only``), then write the outputs.

    The study directory is owned by this process throughout (a second study with the same ``out`` is
    refused); each run inside it is owned by its trainer as well.
    """

    progress = StudyProgress()
    notes: list[str] = []
    check_out_location(study.out, study.data)
    with owned(study.out, "compare"):
        if not report_only:
            progress = run_jobs(study, console=console)
            notes += [f"run `{f.name}` failed: {f.error}" for f in progress.failures]
        outcome = write_outputs(study, notes)
    outcome.progress = progress
    return outcome


def run_study_shard(study: StudyConfig, shard: tuple[int, int], console: Any = None,
                    offset: int = 0) -> StudyProgress:
    """Train and evaluate one task's share of the study's jobs (see ``runner.shard_jobs``; ``offset``:
    where they start in a sweep's job list) and write no outputs: the tasks of a job array run side
    by side, so none holds the study directory (each run is still held by its own trainer), and
    ``report_only`` builds the report once all are done."""
    check_shard(shard)
    return run_jobs(study, console=console, shard=shard, offset=offset)


def check_shard(shard: tuple[int, int]) -> None:
    index, count = shard
    if count < 1 or not 0 <= index < count:
        raise ConfigError(f"`shard` must be I/N with 0 <= I < N, got {index}/{count}")


__all__ = ["StudyOutcome", "check_shard", "run_study", "run_study_shard", "write_outputs"]
