"""Fine-tuning as a study protocol (``eval = ["probe", "finetune"]``).

Every run and every random-init baseline is fine-tuned with one recipe (``finetune_epochs`` +
``finetune_options``; the study's batch size and step cap) and tested on the same held-out
samples: the study's hold-out when it has one (the runs never pretrained on those), otherwise one
fixed split. Same seed -> same data order and mixing draws, so the arms pair seed by seed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from maskkit.lab.finetune.config import FinetuneConfig
from maskkit.lab.finetune.trainer import EncoderSource, FinetuneResult, run_finetune
from maskkit.lab.study.config import StudyConfig


def finetune_config(study: StudyConfig, run: str, init: str, out: Path, device: torch.device) -> FinetuneConfig:
    values: dict[str, Any] = {"batch_size": study.batch_size, "max_steps_per_epoch": study.max_steps_per_epoch,
                              **study.finetune_options}
    values.update({"run": run, "init": init, "epochs": study.finetune_epochs, "data": study.eval_data,
                   "test_fraction": study.holdout if study.eval_data is None and study.holdout > 0 else 0.2,
                   "out": str(out), "progress": False, "device": "cuda" if device.type == "cuda" else "cpu"})
    return FinetuneConfig.from_dict(values)


def _summary(result: FinetuneResult) -> dict[str, Any]:
    return {"accuracy": result.accuracy, "ema_accuracy": result.ema_accuracy, "test_samples": result.test_samples,
            "test_on": result.test_on, "epochs": result.epochs, "steps": result.steps, "protocol": result.protocol}


def finetune_run(run_dir: Path, study: StudyConfig, device: torch.device) -> dict[str, Any]:
    """Fine-tune a finished run (its last checkpoint) into ``run_dir/study_finetune``."""
    cfg = finetune_config(study, str(run_dir), "pretrained", run_dir / "study_finetune", device)
    return _summary(run_finetune(cfg))


def finetune_baseline(parts: Any, config: Any, study: StudyConfig, device: torch.device, out: Path) -> dict[str, Any]:
    """Fine-tune the random-init encoder of a seed (the runs' exact starting weights) with the same recipe."""
    import copy

    cfg = finetune_config(study, "", "random", out, device)
    # a copy: the caller keeps measuring the untouched random-init encoder (clustering metrics)
    source = EncoderSource(model=copy.deepcopy(parts.model), modality=parts.modality, run_config=config)
    return _summary(run_finetune(cfg, source=source))


__all__ = ["finetune_baseline", "finetune_config", "finetune_run"]
