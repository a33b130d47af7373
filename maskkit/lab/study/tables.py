"""Aggregates of results.csv rows: per-cell groups, mean +- sd per method, paired comparisons.

Pure functions over the rows read back from the CSV, so the report and a test compute the same
numbers from the same file.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from maskkit.lab.study.stats import PairedComparison, Spread, adjust_comparisons, mean_sd, paired_comparison


@dataclass(frozen=True)
class Metric:
    column: str
    label: str
    higher_is_better: bool
    digits: int
    #: which rows compete for bold: "all" (maskers and baselines) or "maskers"
    best_among: str = "all"


METRICS: list[Metric] = [
    Metric("linear_acc", "linear probe", True, 3),
    Metric("knn_acc", "k-NN", True, 3),
    Metric("gain_linear", "linear gain vs random-init", True, 3, "maskers"),
    Metric("gain_knn", "k-NN gain vs random-init", True, 3, "maskers"),
    Metric("finetune_acc", "fine-tune accuracy", True, 3),
    Metric("gain_finetune", "fine-tune gain vs random-init", True, 3, "maskers"),
    Metric("recon_own", "recon. loss, own masks", False, 4, "maskers"),
    Metric("recon_shared", "recon. loss, shared random mask", False, 4, "maskers"),
]
METRIC_BY_COLUMN = {m.column: m for m in METRICS}
#: metrics compared seed by seed against the reference masker
PAIRED_METRICS = ["linear_acc", "knn_acc", "finetune_acc", "recon_shared"]
BASELINE_METHODS = ["random-init", "raw-input"]

CellKey = tuple[float, Any]


def cell_key(row: dict[str, Any]) -> CellKey:
    patch = row.get("patch_size")
    if isinstance(patch, float) and math.isnan(patch):
        patch = None
    elif isinstance(patch, float) and patch.is_integer():
        patch = int(patch)
    return float(row["mask_ratio"]), patch


def cell_label(key: CellKey) -> str:
    ratio, patch = key
    return f"mask ratio {ratio:g}" + (f", patch size {patch}" if patch is not None else "")


def cell_slug(key: CellKey) -> str:
    ratio, patch = key
    return f"r{ratio:g}" + (f"_p{patch}" if patch is not None else "")


def by_cell(rows: list[dict[str, Any]]) -> dict[CellKey, list[dict[str, Any]]]:
    out: dict[CellKey, list[dict[str, Any]]] = {}
    for row in rows:
        out.setdefault(cell_key(row), []).append(row)
    return dict(sorted(out.items(), key=lambda kv: (kv[0][0], kv[0][1] if kv[0][1] is not None else -1)))


def methods_in(rows: list[dict[str, Any]], maskers: list[str]) -> list[str]:
    """Study order of the maskers, then the baselines, keeping only methods with rows."""
    present = {r["method"] for r in rows}
    return [m for m in maskers + BASELINE_METHODS if m in present]


def values(rows: list[dict[str, Any]], method: str, column: str) -> dict[int, float]:
    """{seed: value} of one method in one cell."""
    out = {}
    for row in rows:
        if row["method"] == method:
            value = row.get(column)
            if isinstance(value, (int, float)) and math.isfinite(value):
                out[int(row["seed"])] = float(value)
    return out


def spread(rows: list[dict[str, Any]], method: str, column: str) -> Spread:
    return mean_sd(list(values(rows, method, column).values()))


def paired(rows: list[dict[str, Any]], masker: str, reference: str, column: str, confidence: float = 0.95,
           method: str = "t", bootstrap_samples: int = 10000) -> PairedComparison:
    """Seed-paired comparison of ``masker`` with ``reference`` on one column of one cell's rows."""
    metric = METRIC_BY_COLUMN[column]
    setting = cell_label(cell_key(rows[0])) if rows else ""
    return paired_comparison(values(rows, masker, column), values(rows, reference, column), masker=masker,
                             reference=reference, metric=column, higher_is_better=metric.higher_is_better,
                             confidence=confidence, method=method, bootstrap_samples=bootstrap_samples,
                             setting=setting)


def cell_comparisons(rows: list[dict[str, Any]], maskers: list[str], reference: str, confidence: float = 0.95,
                     method: str = "t", bootstrap_samples: int = 10000) -> list[PairedComparison]:
    """Every masker against the reference on every paired metric of one cell (unadjusted p)."""
    others = [m for m in methods_in(rows, maskers) if m in maskers and m != reference]
    if reference not in {r["method"] for r in rows}:
        return []
    found = []
    for masker in others:
        for column in PAIRED_METRICS:
            pc = paired(rows, masker, reference, column, confidence, method, bootstrap_samples)
            if pc.n:
                found.append(pc)
    return found


def study_comparisons(rows: list[dict[str, Any]], maskers: list[str], reference: str, confidence: float = 0.95,
                      method: str = "t", bootstrap_samples: int = 10000) -> list[PairedComparison]:
    """All paired comparisons of a study, cell by cell, with ``p_holm`` adjusted across all of them."""
    found = [pc for cell_rows in by_cell(rows).values()
             for pc in cell_comparisons(cell_rows, maskers, reference, confidence, method, bootstrap_samples)]
    return adjust_comparisons(found)


def fmt_p(value: float) -> str:
    """A p-value in a report: three decimals, "<0.001" below that."""
    if value is None or not math.isfinite(value):
        return "–"
    return "<0.001" if value < 0.001 else f"{value:.3f}"


def fmt(value: float, digits: int, signed: bool = False) -> str:
    if value is None or not math.isfinite(value):
        return "–"
    return f"{value:+.{digits}f}" if signed else f"{value:.{digits}f}"


def fmt_spread(s: Spread, digits: int, signed: bool = False) -> str:
    if s.n == 0:
        return "–"
    if s.n == 1 or not math.isfinite(s.sd):
        return fmt(s.mean, digits, signed)
    return f"{fmt(s.mean, digits, signed)} ± {s.sd:.{digits}f}"


def best_methods(rows: list[dict[str, Any]], metric: Metric, methods: list[str], maskers: list[str]) -> set[str]:
    """Methods whose displayed mean is the best of the column (ties all win)."""
    candidates = methods if metric.best_among == "all" else [m for m in methods if m in maskers]
    shown = {}
    for m in candidates:
        s = spread(rows, m, metric.column)
        if s.n:
            shown[m] = round(s.mean, metric.digits)
    if len(shown) < 2:
        return set()
    best = max(shown.values()) if metric.higher_is_better else min(shown.values())
    return {m for m, v in shown.items() if v == best}


__all__ = ["BASELINE_METHODS", "METRICS", "METRIC_BY_COLUMN", "Metric", "PAIRED_METRICS", "best_methods",
           "by_cell", "cell_comparisons", "cell_key", "cell_label", "cell_slug", "fmt", "fmt_p", "fmt_spread",
           "methods_in", "paired", "spread", "study_comparisons", "values"]
