"""results.csv: one row per trained run plus one per baseline evaluation (random-init, raw input).

The report is computed from this file as written (``read_results``), so every number in
report.md can be recomputed from the CSV.
"""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path
from typing import Any

from maskkit.lab.study.config import StudyConfig
from maskkit.lab.study.coverage import summarise_coverage
from maskkit.lab.study.diagnostics import summarise
from maskkit.lab.study.evaluation import EVAL_FILE, pick, read_json
from maskkit.lab.study.grid import baseline_path, cells, plan_baselines, plan_runs, run_dir
from maskkit.lab.study.tables import cell_key, cell_label, study_comparisons
from maskkit.safe_io import ensure_dir, write_text

ARMS = ("pretrained", "random-init", "raw-input")

COLUMNS = [
    "run_id", "arm", "method", "masker", "seed", "mask_ratio", "patch_size",
    "epochs", "steps", "samples_seen", "wall_time", "train_loss",
    "linear_acc", "linear_fold_sd", "knn_acc", "knn_fold_sd", "gain_linear", "gain_knn",
    "recon_own", "recon_shared",
    "realised_ratio", "position_sd", "position_sd_random", "mask_iou", "mask_iou_random",
    "collapse", "worst_collapse", "flagged_epochs",
    "object_coverage", "object_coverage_final", "object_coverage_random", "object_coverage_epochs",
    "object_coverage_untrained",
]
#: columns that hold numbers (the rest are text)
TEXT_COLUMNS = {"run_id", "arm", "method", "masker", "collapse", "worst_collapse", "flagged_epochs"}


def _probe_fields(probes: list[dict[str, Any]] | None, arm: str, feature: str) -> dict[str, Any]:
    row = pick(probes, arm, feature)
    if row is None:
        return {}
    return {"linear_acc": row["linear_acc"], "linear_fold_sd": row["linear_std"], "knn_acc": row["knn_acc"],
            "knn_fold_sd": row["knn_std"]}


def _finetune_fields(payload: dict[str, Any] | None) -> dict[str, Any]:
    """Fine-tuning accuracy (and its EMA twin) when the study fine-tunes (``eval`` lists finetune)."""
    result = (payload or {}).get("finetune")
    if not result:
        return {}
    out = {"finetune_acc": result.get("accuracy")}
    if result.get("ema_accuracy") is not None:
        out["finetune_ema_acc"] = result["ema_accuracy"]
    return out


def _latent_fields(payload: dict[str, Any] | None, arm: str) -> dict[str, Any]:
    """``latent/<name>``: the arm's probe score of each latent the data declares (accuracy or R²)."""
    return {f"latent/{r['name']}": r.get(arm) for r in (payload or {}).get("latents") or []}


def _clustering(payload: dict[str, Any] | None) -> dict[str, Any]:
    return {f"cluster/{k}": v for k, v in ((payload or {}).get("clustering") or {}).items()}


def baseline_rows(study: StudyConfig) -> list[dict[str, Any]]:
    payloads = {(b.seed, b.patch_size): read_json(baseline_path(study, b)) for b in plan_baselines(study)}
    rows = []
    for cell in cells(study):
        for seed in study.seed_list:
            payload = payloads.get((seed, cell.patch_size))
            if payload is None:
                continue
            common = {"seed": seed, "mask_ratio": cell.mask_ratio, "patch_size": payload.get("patch_size"),
                      "epochs": 0, "steps": 0, "samples_seen": 0, "wall_time": 0.0}
            for arm, feature in (("random-init", study.probe_feature), ("raw-input", "raw")):
                row = {"run_id": f"{arm}__{cell.slug}__s{seed}", "arm": arm, "method": arm, "masker": "",
                       **common, **_probe_fields(payload.get("probes"), arm, feature),
                       **_latent_fields(payload, arm)}
                if arm == "random-init":
                    row.update(_clustering(payload))
                    row.update(_finetune_fields(payload))
                rows.append(row)
    return rows


def run_rows(study: StudyConfig) -> list[dict[str, Any]]:
    """Rows of the runs that finished training and evaluation (others are reported as missing)."""
    rows = []
    for spec in plan_runs(study):
        directory = run_dir(study, spec)
        summary = read_json(directory / "summary.json")
        evaluation = read_json(directory / EVAL_FILE)
        if summary is None or evaluation is None:
            continue
        diag = summarise(directory)
        row: dict[str, Any] = {
            "run_id": spec.run_id, "arm": "pretrained", "method": spec.masker, "masker": spec.masker,
            "seed": spec.seed, "mask_ratio": evaluation.get("mask_ratio", spec.cell.mask_ratio),
            "patch_size": evaluation.get("patch_size"), "epochs": summary.get("epochs"),
            "steps": summary.get("steps"), "samples_seen": summary.get("samples_seen"),
            "wall_time": summary.get("wall_time"), "train_loss": summary.get("final_loss"),
            **_probe_fields(evaluation.get("probes"), "pretrained", study.probe_feature),
            "recon_own": evaluation.get("recon_own"), "recon_shared": evaluation.get("recon_shared"),
            "realised_ratio": diag.realised_ratio, "position_sd": diag.position_sd,
            "position_sd_random": diag.position_sd_random, "mask_iou": diag.iou, "mask_iou_random": diag.iou_random,
            "collapse": diag.collapse, "worst_collapse": diag.worst_collapse,
            "flagged_epochs": " ".join(str(e) for e in diag.flagged_epochs),
        }
        row.update(_clustering(evaluation))
        row.update(_latent_fields(evaluation, "pretrained"))
        row.update(summarise_coverage(directory))
        row.update(_finetune_fields(evaluation))
        row.update({k: v for k, v in diag.masker_final.items()})
        rows.append(row)
    return rows


def add_gains(rows: list[dict[str, Any]]) -> None:
    """gain = pretrained - random-init of the same seed, mask ratio and patch size."""
    reference = {(r["seed"], r["mask_ratio"], r["patch_size"]): r for r in rows if r["arm"] == "random-init"}
    for row in rows:
        if row["arm"] != "pretrained":
            continue
        base = reference.get((row["seed"], row["mask_ratio"], row["patch_size"]))
        for metric in ("linear", "knn", "finetune"):
            mine, theirs = row.get(f"{metric}_acc"), (base or {}).get(f"{metric}_acc")
            if _finite(mine) and _finite(theirs):
                row[f"gain_{metric}"] = float(mine) - float(theirs)


def add_p_values(rows: list[dict[str, Any]], study: StudyConfig) -> None:
    """``p/<metric>`` (sign-flip) and ``p_holm/<metric>`` (Holm across the study) on every run of a masker
    compared with the reference: the numbers behind the report's verdicts."""
    for pc in study_comparisons(rows, study.maskers, study.reference, study.confidence, study.interval,
                                study.bootstrap_samples):
        for row in rows:
            if row["arm"] == "pretrained" and row["method"] == pc.masker and cell_label(cell_key(row)) == pc.setting:
                row[f"p/{pc.metric}"] = pc.p_value
                row[f"p_holm/{pc.metric}"] = pc.p_holm


def collect_rows(study: StudyConfig) -> list[dict[str, Any]]:
    rows = baseline_rows(study) + run_rows(study)
    add_gains(rows)
    add_p_values(rows, study)
    return rows


def _cell_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return "" if not math.isfinite(value) else repr(value)
    if isinstance(value, (list, dict)):
        return json.dumps(value)
    return str(value)


def write_results(path: Path, rows: list[dict[str, Any]]) -> None:
    extra = sorted({k for row in rows for k in row} - set(COLUMNS))
    ensure_dir(path.parent)
    text = io.StringIO(newline="")
    writer = csv.DictWriter(text, fieldnames=COLUMNS + extra)
    writer.writeheader()
    for row in rows:
        writer.writerow({k: _cell_text(row.get(k)) for k in COLUMNS + extra})
    write_text(path, text.getvalue())


def read_results(path: Path) -> list[dict[str, Any]]:
    """Rows with numbers as floats (empty cells as NaN) and text columns as strings."""
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    out = []
    for row in rows:
        parsed: dict[str, Any] = {}
        for key, value in row.items():
            if key in TEXT_COLUMNS:
                parsed[key] = value
            elif value == "":
                parsed[key] = float("nan")
            else:
                try:
                    parsed[key] = float(value)
                except ValueError:
                    parsed[key] = value
        out.append(parsed)
    return out


def _finite(value: Any) -> bool:
    try:
        return value is not None and math.isfinite(float(value))
    except (TypeError, ValueError):
        return False


__all__ = ["ARMS", "COLUMNS", "add_gains", "add_p_values", "collect_rows", "read_results", "write_results"]
