"""Object coverage in studies: per-run summaries from ``metrics.jsonl``, a figure and a report section.

Runs on data with object masks (``builtin:objects``) log ``objects/coverage`` (share of the probe
samples' object tokens the masker hides at the end of each epoch) and ``objects/coverage_random``
(n_mask / N, what uniformly random masks hide in expectation); maskers that read the model also log
``objects/coverage_untrained`` (the same masker reading the run's untrained model). For a run whose masker logs a
``.../started`` flag (self-guided), the summary averages the epochs after the informed start; for
other maskers every epoch.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from maskkit.lab.study.diagnostics import as_float, epoch_rows
from maskkit.lab.study.stats import paired_comparison
from maskkit.lab.study.tables import cell_label, fmt, fmt_spread, methods_in, spread, values

COLUMNS = ["object_coverage", "object_coverage_final", "object_coverage_random", "object_coverage_epochs",
           "object_coverage_untrained"]
#: the model-free masker a learned masker's coverage must beat (beside its untrained baseline)
MODEL_FREE = "saliency"


def _started(row: dict[str, Any]) -> float | None:
    keys = [k for k in row if k.startswith("masker/") and k.rsplit("/", 1)[-1] == "started"]
    return as_float(row[keys[0]]) if keys else None


def summarise_coverage(run_dir: Path) -> dict[str, float]:
    """{object_coverage (mean over informed epochs), _final, _random, _epochs}; empty without logs."""
    rows = [r for r in epoch_rows(run_dir) if math.isfinite(as_float(r.get("objects/coverage")))]
    if not rows:
        return {}
    flags = [_started(r) for r in rows]
    if any(f is not None for f in flags):
        rows = [r for r, f in zip(rows, flags, strict=True) if f is not None and f > 0]
    if not rows:  # informed masking never started: nothing informed to summarise
        return {"object_coverage_epochs": 0.0}
    cov = [as_float(r["objects/coverage"]) for r in rows]
    out = {"object_coverage": sum(cov) / len(cov), "object_coverage_final": cov[-1],
           "object_coverage_random": as_float(rows[-1].get("objects/coverage_random")),
           "object_coverage_epochs": float(len(cov))}
    untrained = [as_float(r.get("objects/coverage_untrained")) for r in rows]
    if all(math.isfinite(u) for u in untrained):
        out["object_coverage_untrained"] = sum(untrained) / len(untrained)
    return out


def coverage_curves(metric_rows: list[list[dict[str, Any]]]) -> tuple[list, list]:
    """(coverage curves, random-expectation curves), one (epochs trained, value) list per seed."""
    def curve(rows: list[dict[str, Any]], key: str) -> list[tuple[float, float]]:
        return [(int(r["epoch"]) + 1, as_float(r.get(key))) for r in rows if key in r]

    return ([curve(r, "objects/coverage") for r in metric_rows],
            [curve(r, "objects/coverage_random") for r in metric_rows])


def coverage_section(study: Any, key: Any, rows: list[dict[str, Any]], figure: str | None) -> list[str]:
    """Markdown: per-masker coverage (mean ± sd over seeds, per seed), random's expectation, the
    seed-paired difference to the reference masker, and the curves over training."""
    runs = [r for r in rows if r["arm"] == "pretrained"]
    maskers = [m for m in methods_in(rows, study.maskers) if m in study.maskers]
    if not any(math.isfinite(as_float(r.get("object_coverage"))) for r in runs):
        return []
    body = []
    for m in maskers:
        per_seed = values(rows, m, "object_coverage")
        body.append([f"`{m}`", fmt_spread(spread(rows, m, "object_coverage"), 3),
                     fmt_spread(spread(rows, m, "object_coverage_final"), 3),
                     fmt(spread(rows, m, "object_coverage_random").mean, 3),
                     fmt_spread(spread(rows, m, "object_coverage_untrained"), 3),
                     ", ".join(f"s{s}: {v:.3f}" for s, v in sorted(per_seed.items())) or "–",
                     fmt(spread(rows, m, "object_coverage_epochs").mean, 0)])
    lines = [f"### Object coverage: {cell_label(key)}", "",
             "Share of the object tokens each masker hides on fixed un-augmented samples with known object "
             "masks, at the end of every epoch (mean over samples). For `self-guided` the mean is over the "
             "epochs after informed masking started; for other maskers over every epoch. Uniformly random "
             "masking hides n_mask / N of any fixed token set in expectation (the `random expectation` "
             "column). `untrained model` is the same masker, at the same point of its schedule, reading the "
             "run's model as initialised (maskers that read the model only).", ""]
    header = ["masker", "coverage, mean over epochs", "final epoch", "random expectation", "untrained model",
              "per seed", "epochs"]
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in body]
    lines.append("")
    reference = study.reference
    if reference in maskers:
        ref_values = values(rows, reference, "object_coverage")
        for m in maskers:
            if m == reference:
                continue
            mine = values(rows, m, "object_coverage")
            pc = paired_comparison(mine, ref_values, masker=m, reference=reference, metric="object_coverage",
                                   confidence=study.confidence)
            if pc.n == 0:
                continue
            diffs = ", ".join(f"s{s}: {d:+.3f}" for s, d in zip(pc.seeds, pc.differences, strict=True))
            separated = bool(mine) and bool(ref_values) and min(mine.values()) > max(ref_values.values())
            interval = (f"{pc.confidence:.0%} t interval [{fmt(pc.low, 3, True)}, {fmt(pc.high, 3, True)}]"
                        if pc.n >= 2 else "one seed: no interval")
            lines.append(f"- `{m}` − `{reference}`: {diffs}; mean {fmt(pc.mean, 3, True)}, {interval}. "
                         + ("Every seed of `" + m + "` lies above every seed of `" + reference + "`."
                            if separated else "The seeds overlap."))
        lines.append("")
    lines += learned_verdicts(rows, maskers, study.confidence)
    if figure:
        lines += [f"![object coverage over training]({figure})", ""]
    return lines


def learned_verdicts(rows: list[dict[str, Any]], maskers: list[str], confidence: float) -> list[str]:
    """One sentence per masker with an untrained baseline: its coverage is called learned only when
    the seed-paired gain over its untrained model, and over `saliency` when the study has it, both
    have intervals above zero (with one seed: when both differences are positive, said as such)."""
    out = []
    for m in maskers:
        mine = values(rows, m, "object_coverage")
        untrained = values(rows, m, "object_coverage_untrained")
        if not untrained:
            continue
        checks = [paired_comparison(mine, untrained, masker=m, reference="untrained", metric="object_coverage",
                                    confidence=confidence)]
        if MODEL_FREE in maskers and m != MODEL_FREE:
            checks.append(paired_comparison(mine, values(rows, MODEL_FREE, "object_coverage"), masker=m,
                                            reference=MODEL_FREE, metric="object_coverage", confidence=confidence))
        parts, beaten = [], []
        for pc in checks:
            if pc.n == 0:
                continue
            beyond = pc.low > 0 if pc.n >= 2 else pc.mean > 0
            beaten.append(beyond)
            name = "its untrained model" if pc.reference == "untrained" else f"`{pc.reference}`"
            interval = (f"{pc.confidence:.0%} t interval [{fmt(pc.low, 3, True)}, {fmt(pc.high, 3, True)}]"
                        if pc.n >= 2 else "one seed, no interval")
            parts.append(f"{fmt(pc.mean, 3, True)} over {name} ({interval})")
        if not parts:
            continue
        if not all(beaten):
            verdict = "not shown to be learned: a baseline without learning explains it within seed noise"
        elif len(beaten) < 2:
            verdict = "not shown to be learned: `saliency` was not run beside it"
        else:
            verdict = "learned: it beats its untrained model and `saliency` beyond seed noise"
        out.append(f"- `{m}` coverage {'; '.join(parts)}: {verdict}.")
    return out + [""] if out else out


__all__ = ["COLUMNS", "coverage_curves", "coverage_section", "learned_verdicts", "summarise_coverage"]
