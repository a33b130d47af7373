"""Experiment trackers beside metrics.jsonl: TensorBoard, Weights & Biases (offline), MLflow (local).

``logger`` = tensorboard,wandb,mlflow (any combination). ``metrics.jsonl`` is always written; each
tracker receives the same numbers: every numeric field of the step and epoch records (loss, lr,
throughput, ``mask/*`` diagnostics, ``masker/*`` and ``probe/*`` values) under ``step/<name>`` and
``epoch/<name>``, at the record's global step, plus reconstruction pictures. Nothing needs a network:

- TensorBoard: event files in ``<run>/tensorboard`` (``tensorboard `logdir` <run>``).
- W&B: ``<run>/wandb``, offline unless ``WANDB_MODE`` says otherwise (``wandb sync`` uploads later).
- MLflow: a local SQLite store ``<run>/mlflow.db`` with artifacts in ``<run>/mlartifacts`` unless
  ``MLFLOW_TRACKING_URI`` is set (point ``mlflow ui`` at the backend store ``sqlite:///<run>/mlflow.db``).
  MLflow 3 put its plain-folder store (``./mlruns``) in maintenance mode and refuses new runs there
  by default; SQLite is its recommended local store, still one file and no server.

The packages are optional (extra ``maskkit[track]``); a missing one is a one-line error.
"""

from __future__ import annotations

import math
import os
import time
from pathlib import Path
from typing import Any, Protocol

from maskkit.config_utils import ConfigError

LOGGERS = ("tensorboard", "wandb", "mlflow")
PACKAGES = {"tensorboard": "tensorboard", "wandb": "wandb", "mlflow": "mlflow"}


class RunLogger(Protocol):
    """What the trainer calls; a tracker implements these three."""

    def log_scalars(self, values: dict[str, float], step: int) -> None: ...

    def log_image(self, tag: str, path: Path, step: int) -> None: ...

    def close(self) -> None: ...


def parse_loggers(value: str | list[str] | tuple[str, ...] | None) -> list[str]:
    """``"tensorboard,wandb"`` -> names, validated (``jsonl`` is accepted and always on)."""
    if not value:
        return []
    items = value.split(",") if isinstance(value, str) else [str(v) for v in value]
    names: list[str] = []
    for item in (i.strip().lower() for i in items):
        if not item or item == "jsonl":
            continue
        if item not in LOGGERS:
            raise ConfigError(f"`logger`: unknown tracker {item!r}; choose from {', '.join(LOGGERS)} "
                              "(comma-separated)")
        if item not in names:
            names.append(item)
    return names


def _require(name: str) -> None:
    import importlib.util

    if importlib.util.find_spec(PACKAGES[name]) is None:
        raise ConfigError(f"`logger` {name} needs the {PACKAGES[name]} package; install it with: "
                          "pip install 'maskkit[track]'")


def scalars_of(record: dict[str, Any]) -> tuple[dict[str, float], int] | None:
    """The numeric fields of a step/epoch record as ``{"<type>/<name>": value}`` and its step."""
    kind = record.get("type")
    if kind not in ("step", "epoch") or "step" not in record:
        return None
    out: dict[str, float] = {}
    for key, value in record.items():
        if key in ("type", "step") or isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        if math.isfinite(float(value)):
            out[f"{kind}/{key}"] = float(value)
    return out, int(record["step"])


class TensorBoardLogger:
    def __init__(self, out: Path, config: dict[str, Any]) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(log_dir=str(out / "tensorboard"))
        self.writer.add_text("config", "```\n" + _config_text(config) + "\n```", 0)

    def log_scalars(self, values: dict[str, float], step: int) -> None:
        for key, value in values.items():
            self.writer.add_scalar(key, value, step)

    def log_image(self, tag: str, path: Path, step: int) -> None:
        import numpy as np
        from PIL import Image

        with Image.open(path) as im:
            self.writer.add_image(tag, np.asarray(im.convert("RGB")), step, dataformats="HWC")
        self.writer.flush()

    def close(self) -> None:
        self.writer.flush()
        self.writer.close()


class WandbLogger:
    def __init__(self, out: Path, config: dict[str, Any]) -> None:
        import wandb

        os.environ.setdefault("WANDB_SILENT", "true")
        (out / "wandb").mkdir(parents=True, exist_ok=True)
        self.wandb = wandb
        self.run = wandb.init(project=os.environ.get("WANDB_PROJECT", "maskkit"), name=out.name,
                              dir=str(out), config=config, mode=os.environ.get("WANDB_MODE", "offline"),
                              reinit="create_new")

    def log_scalars(self, values: dict[str, float], step: int) -> None:
        self.run.log(values, step=step)

    def log_image(self, tag: str, path: Path, step: int) -> None:
        self.run.log({tag: self.wandb.Image(str(path))}, step=step)

    def close(self) -> None:
        self.run.finish()


class MlflowLogger:
    def __init__(self, out: Path, config: dict[str, Any]) -> None:
        from mlflow.tracking import MlflowClient

        uri = os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{(out / 'mlflow.db').resolve()}"
        self.client = MlflowClient(tracking_uri=uri)
        name = os.environ.get("MLFLOW_EXPERIMENT_NAME", "maskkit")
        found = self.client.get_experiment_by_name(name)
        experiment = found.experiment_id if found is not None else self.client.create_experiment(
            name, artifact_location=(out / "mlartifacts").resolve().as_uri())
        self.run_id = self.client.create_run(experiment, run_name=out.name).info.run_id
        from mlflow.entities import Param

        params = [Param(k, str(v)[:500]) for k, v in _flatten(config).items()]
        for i in range(0, len(params), 100):
            self.client.log_batch(self.run_id, params=params[i:i + 100])

    def log_scalars(self, values: dict[str, float], step: int) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        metrics = [Metric(key, value, now, step) for key, value in values.items()]
        self.client.log_batch(self.run_id, metrics=metrics)

    def log_image(self, tag: str, path: Path, step: int) -> None:
        self.client.log_artifact(self.run_id, str(path), artifact_path=f"pictures/{tag}")

    def close(self) -> None:
        self.client.set_terminated(self.run_id)


def _flatten(config: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in config.items():
        if isinstance(value, dict):
            out.update(_flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def _config_text(config: dict[str, Any]) -> str:
    return "\n".join(f"{k} = {v}" for k, v in _flatten(config).items())


CLASSES = {"tensorboard": TensorBoardLogger, "wandb": WandbLogger, "mlflow": MlflowLogger}


def build_loggers(names: str | list[str] | None, out: Path, config: dict[str, Any]) -> list[RunLogger]:
    """The trackers named (each checked for its package first, so a missing one fails before training)."""
    chosen = parse_loggers(names)
    for name in chosen:
        _require(name)
    out.mkdir(parents=True, exist_ok=True)
    return [CLASSES[name](out, config) for name in chosen]


__all__ = ["LOGGERS", "MlflowLogger", "RunLogger", "TensorBoardLogger", "WandbLogger", "build_loggers",
           "parse_loggers", "scalars_of"]
