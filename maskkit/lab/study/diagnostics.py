"""Per-epoch masker diagnostics of a run, read back from its ``metrics.jsonl``.

The trainer logs, every epoch: realised ratio, per-position masking frequency and its spread
against the random floor, mean pairwise mask IoU against the random expectation, a collapse
verdict, and the masker's own logs (``masker/<key>``: graph density, eigengap, target fraction,
started, ...). This module turns them into curves and a per-run summary for the report.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from maskkit.train.metrics import read_metrics

LEVELS = {"ok": 0, "positional": 1, "collapsed": 2}


def epoch_rows(run_dir: Path) -> list[dict[str, Any]]:
    """One row per epoch in epoch order (after a resume the later record of an epoch wins)."""
    by_epoch: dict[int, dict[str, Any]] = {}
    for row in read_metrics(run_dir):
        if row.get("type") == "epoch":
            by_epoch[int(row["epoch"])] = row
    return [by_epoch[e] for e in sorted(by_epoch)]


def as_float(value: Any) -> float:
    try:
        out = float(value)
    except (TypeError, ValueError):
        return float("nan")
    return out


def series(rows: list[dict[str, Any]], key: str) -> list[float]:
    return [as_float(r.get(key)) for r in rows]


def masker_keys(rows: list[dict[str, Any]]) -> list[str]:
    """Numeric ``masker/<key>`` logs present in any epoch, in first-seen order."""
    keys: list[str] = []
    for row in rows:
        for key, value in row.items():
            if key.startswith("masker/") and key not in keys and isinstance(value, (int, float)) \
                    and not isinstance(value, bool):
                keys.append(key)
    return keys


@dataclass
class RunDiagnostics:
    """Final-epoch values and the worst collapse verdict over all epochs."""

    epochs_logged: int = 0
    realised_ratio: float = float("nan")
    position_sd: float = float("nan")
    position_sd_random: float = float("nan")
    iou: float = float("nan")
    iou_random: float = float("nan")
    collapse: str = ""  # final epoch's verdict
    worst_collapse: str = ""
    flagged_epochs: list[int] = field(default_factory=list)  # epochs whose verdict is not "ok"
    position_frequency: list[float] | None = None
    masker_final: dict[str, float] = field(default_factory=dict)
    masker_max: dict[str, float] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)


def summarise(run_dir: Path) -> RunDiagnostics:
    rows = epoch_rows(run_dir)
    out = RunDiagnostics(epochs_logged=len(rows))
    out.warnings = [str(r.get("message", "")) for r in read_metrics(run_dir) if r.get("type") == "warning"]
    if not rows:
        return out
    last = rows[-1]
    out.realised_ratio = as_float(last.get("mask/ratio"))
    out.position_sd = as_float(last.get("mask/position_sd"))
    out.position_sd_random = as_float(last.get("mask/position_sd_random"))
    out.iou = as_float(last.get("mask/iou"))
    out.iou_random = as_float(last.get("mask/iou_random"))
    out.collapse = str(last.get("mask/collapse", ""))
    levels = [(int(r["epoch"]), str(r.get("mask/collapse", "ok"))) for r in rows if "mask/collapse" in r]
    out.flagged_epochs = [e for e, level in levels if level != "ok"]
    out.worst_collapse = max((lv for _, lv in levels), key=lambda lv: LEVELS.get(lv, 0), default="")
    freq = last.get("mask/position_frequency")
    out.position_frequency = [float(v) for v in freq] if isinstance(freq, list) else None
    for key in masker_keys(rows):
        values = [v for v in series(rows, key) if math.isfinite(v)]
        if values:
            out.masker_final[key] = as_float(last.get(key))
            out.masker_max[key] = max(values)
    return out


__all__ = ["LEVELS", "RunDiagnostics", "as_float", "epoch_rows", "masker_keys", "series", "summarise"]
