"""``init_from``: start a run from outside weights (timm / Hugging Face ViT, a maskkit run or export)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from torch import nn

from maskkit.model.weights import init_model_options, load_into, read_weights
from maskkit.safe_io import write_text
from maskkit.train.config import TrainConfig


def read_init_weights(cfg: TrainConfig) -> Any:
    """The weights ``init_from`` names, read before the model is built (they may need a learned position
    table: ``cfg.model_options`` is updated); None without ``init_from`` or when resuming (the run's
    checkpoint already holds them)."""
    if not cfg.init_from or cfg.resume:
        return None
    weights = read_weights(cfg.init_from)
    cfg.model_options = init_model_options(weights, cfg.model_options)
    return weights


def load_init_weights(model: nn.Module, weights: Any, out: Path | None, console: Any = None) -> None:
    """Load them into ``model``; the writer (``out`` given) records what fitted in ``init_report.json``."""
    report = load_into(model, weights)
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        write_text(out / "init_report.json", json.dumps(report.to_dict(), indent=1))
        if console is not None:
            console.print(report.summary())
