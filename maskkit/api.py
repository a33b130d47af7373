"""The functions behind ``import maskkit``: each does what its CLI command does, from Python.

``maskkit/__init__.py`` loads this module on first use, so ``import maskkit`` stays light (the CLI
imports the package before it knows whether it needs torch).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, NamedTuple

import torch

from maskkit.config_utils import ConfigError
from maskkit.interop.export import export_run
from maskkit.lab.evaluate import ProbeResult
from maskkit.lab.evaluate_run import evaluate_run
from maskkit.lab.finetune import FinetuneConfig, FinetuneResult, run_finetune
from maskkit.lab.study import StudyConfig, StudyOutcome, run_study
from maskkit.lab.training import train as train_with_callbacks
from maskkit.modality import Modality
from maskkit.model.mae import MaskedAutoencoder
from maskkit.train.callbacks import Callback
from maskkit.train.checkpoint import load_run_model
from maskkit.train.config import TrainConfig, layered_config
from maskkit.train.trainer import RunResult


class LoadedRun(NamedTuple):
    """A trained run: the model (eval mode), its modality and the settings it was trained with."""

    model: MaskedAutoencoder
    modality: Modality
    config: TrainConfig


def _config(kind: type, config: Any, settings: dict[str, Any]) -> Any:
    """A config object from either a ready one or keyword settings (not both: one source of truth)."""
    if config is None:
        return kind(**settings)
    if settings:
        raise ConfigError(f"pass either a {kind.__name__} or keyword settings, not both "
                          f"(got {', '.join(f'`{k}`' for k in settings)})")
    if not isinstance(config, kind):
        raise ConfigError(f"expected a {kind.__name__}, got {type(config).__name__}")
    return config


def train(config: TrainConfig | None = None, /, *, callbacks: list[Callback] | None = None,
          **settings: Any) -> RunResult:
    """Pretrain as ``maskkit train`` does: ``maskkit.train(epochs=5, out="runs/x")`` or with a TrainConfig.

    Keyword settings follow the CLI's precedence: ``maskkit.train(out="runs/x", resume=True, epochs=20)``
    starts from the run's saved settings and changes only what is given."""
    if config is None:
        return train_with_callbacks(layered_config(settings), callbacks=callbacks)
    return train_with_callbacks(_config(TrainConfig, config, settings), callbacks=callbacks)


def load(run: str | Path, device: str | torch.device = "cpu") -> LoadedRun:
    """A run directory (newest intact checkpoint) or checkpoint file, rebuilt without its data."""
    model, modality, config, _ = load_run_model(run, device)
    return LoadedRun(model.eval(), modality, config)


def evaluate(run: str | Path, data: str | None = None, max_samples: int = 2000, k: int = 10,
             baselines: bool = True, device: str | torch.device = "cpu") -> list[ProbeResult]:
    """Linear probe + k-NN of the frozen encoder, beside random-init and raw-input baselines (``maskkit eval``)."""
    return evaluate_run(run, data=data, max_samples=max_samples, k=k, baselines=baselines,
                        device=torch.device(device)).rows


def finetune(config: FinetuneConfig | None = None, /, **settings: Any) -> FinetuneResult:
    """Fine-tune or linear-probe a run (``maskkit finetune``): ``maskkit.finetune(run="runs/x", epochs=5)``."""
    return run_finetune(_config(FinetuneConfig, config, settings))


def export(run: str | Path, format: str, out: str | Path, **options: Any) -> list[Path]:  # noqa: A002
    """Write the run as ``format`` (timm, hf, safetensors, onnx) into ``out``; returns the files written."""
    return export_run(run, format, out, **options)


def compare(config: StudyConfig | None = None, /, **settings: Any) -> StudyOutcome:
    """A comparative study (``maskkit compare``): ``maskkit.compare(maskers=["random", "block"], seeds=2)``."""
    return run_study(_config(StudyConfig, config, settings))
