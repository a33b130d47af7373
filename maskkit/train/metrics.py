"""Append-only JSON-lines metrics log (one object per step or epoch), written by rank 0 only."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from maskkit.safe_io import append_text
from maskkit.threads import oversubscription
from maskkit.train.loggers import build_loggers, scalars_of

if TYPE_CHECKING:
    from maskkit.train.config import TrainConfig


def to_float(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        if value.numel() == 1:
            return float(value.detach().float().cpu())
        return [float(v) for v in value.detach().float().cpu().reshape(-1)]
    return value


def clean(record: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for k, v in record.items():
        v = to_float(v)
        if isinstance(v, float) and not math.isfinite(v):
            v = str(v)
        out[k] = v
    return out


class MetricsLog:
    """metrics.jsonl, plus optional trackers (``sinks``, see maskkit.train.loggers) fed the same numbers."""

    def __init__(self, path: Path, enabled: bool = True, sinks: list[Any] | None = None) -> None:
        self.path = path
        self.enabled = enabled
        self.sinks = list(sinks or []) if enabled else []

    def write(self, record: dict[str, Any]) -> None:
        if not self.enabled:
            return
        record = clean(record)
        append_text(self.path, json.dumps(record) + "\n")
        if self.sinks:
            found = scalars_of(record)
            if found is not None and found[0]:
                for sink in self.sinks:
                    sink.log_scalars(*found)

    def image(self, tag: str, path: Path, step: int) -> None:
        for sink in self.sinks:
            sink.log_image(tag, path, step)

    def close(self) -> None:
        sinks, self.sinks = self.sinks, []
        for sink in sinks:
            sink.close()


def read_metrics(path: str | Path) -> list[dict[str, Any]]:
    p = Path(path)
    if p.is_dir():
        p = p / "metrics.jsonl"
    if not p.is_file():
        return []
    rows = []
    for line in p.read_text().splitlines():
        line = line.strip()
        if line:
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                continue  # a line cut by a crash; the rest is still valid
    return rows


def open_run_metrics(cfg: TrainConfig, out: Path, resolved: dict[str, Any], is_main: bool,
                     console: Any = None) -> MetricsLog:
    """metrics.jsonl and the trackers (written by rank 0); a crowded CPU is the first warning."""
    sinks = build_loggers(cfg.logger, out, resolved) if is_main and cfg.logger else []
    metrics = MetricsLog(out / "metrics.jsonl", enabled=is_main, sinks=sinks)
    crowded = oversubscription()
    if crowded and is_main:
        metrics.write({"type": "warning", "message": crowded})
        if console is not None:
            console.print(f"[yellow]warning:[/] {crowded}")
    return metrics
