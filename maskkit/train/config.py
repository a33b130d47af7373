"""Typed run configuration. TOML files and CLI options fill the same dataclass (CLI wins)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Literal

from maskkit.config_utils import ConfigError, build_dataclass, dataclass_to_dict, read_toml


@dataclass
class TrainConfig:
    modality: str = "image"
    data: str | None = None  # path, or builtin:NAME; None = the modality's embedded default
    masker: str = "random"
    masker_options: dict[str, Any] = field(default_factory=dict)
    mask_ratio: float | None = None  # None = the modality's default (image 0.75, video 0.9, ...)
    modality_options: dict[str, Any] = field(default_factory=dict)  # image_size, patch_size, ...
    model: str | None = None  # preset name; None = the modality's default
    model_options: dict[str, Any] = field(default_factory=dict)  # overrides of the preset
    epochs: int = 10
    batch_size: int = 64
    lr: float | None = None  # absolute lr; None = base_lr * effective_batch / 256
    base_lr: float = 1.5e-4
    min_lr: float = 0.0
    weight_decay: float = 0.05
    betas: tuple[float, float] = (0.9, 0.95)
    warmup_epochs: float = 1.0
    accum_steps: int = 1
    clip_grad: float | None = None
    device: Literal["auto", "cpu", "cuda"] = "auto"
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"
    seed: int = 0
    #: start from these weights (timm / Hugging Face ViT or ViT-MAE file or directory, or a maskkit run)
    init_from: str | None = None
    out: str = "runs/latest"
    resume: bool = False
    save_every: int = 5  # epochs between kept checkpoints (the last one is always written)
    save_every_steps: int = 0  # also refresh last.pt every N steps (0 = only at epoch ends)
    keep_checkpoints: int = 3  # how many periodic checkpoints to keep (0 = all)
    log_every: int = 10  # steps between metric lines
    probe_every: int = 0  # epochs between clustering-metric probes (0 = never)
    num_workers: int = 0
    max_steps_per_epoch: int | None = None  # cap (smoke tests, quick looks)
    #: fraction of samples never trained on (a fixed split, the same for every seed), for held-out metrics
    holdout_fraction: float = 0.0
    compile: bool = False
    strategy: Literal["auto", "ddp", "fsdp"] = "auto"
    on_nonfinite: Literal["skip", "stop"] = "skip"
    on_bad_file: Literal["error", "skip"] = "error"
    visualize_samples: int = 8
    progress: bool = True

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        for name in ("mask_ratio", "lr", "base_lr", "min_lr", "weight_decay", "warmup_epochs", "clip_grad",
                     "holdout_fraction"):
            value = getattr(self, name)
            if value is not None and not math.isfinite(value):
                raise ConfigError(f"--{name.replace('_', '-')} must be a finite number, got {value}")
        if self.mask_ratio is not None and not 0.0 < self.mask_ratio < 1.0:
            raise ConfigError(f"--mask-ratio must be in (0, 1), got {self.mask_ratio}")
        for name in ("epochs", "batch_size", "accum_steps"):
            if getattr(self, name) < 1:
                raise ConfigError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(self, name)}")
        if self.lr is not None and self.lr <= 0:
            raise ConfigError(f"--lr must be > 0, got {self.lr}")
        if self.base_lr <= 0:
            raise ConfigError(f"base-lr must be > 0, got {self.base_lr}")
        if self.warmup_epochs < 0:
            raise ConfigError(f"--warmup-epochs must be >= 0, got {self.warmup_epochs}")
        if self.save_every < 1:
            raise ConfigError(f"save-every must be >= 1, got {self.save_every}")
        if self.save_every_steps < 0:
            raise ConfigError(f"save-every-steps must be >= 0, got {self.save_every_steps}")
        if self.max_steps_per_epoch is not None and self.max_steps_per_epoch < 1:
            raise ConfigError(f"max-steps-per-epoch must be >= 1, got {self.max_steps_per_epoch}")
        if not 0.0 <= self.holdout_fraction < 0.9:
            raise ConfigError(f"holdout-fraction must be in [0, 0.9), got {self.holdout_fraction}")
        if self.num_workers < 0:
            raise ConfigError(f"--num-workers must be >= 0, got {self.num_workers}")

    def to_dict(self) -> dict[str, Any]:
        return dataclass_to_dict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any], base: TrainConfig | None = None) -> TrainConfig:
        return build_dataclass(cls, values, base=base)


def load_toml(path: str | Path) -> dict[str, Any]:
    """Read a TOML run file; tables ``[masker_options]``, ``[modality_options]``, ``[model_options]``
    map to those fields (``[masker]``/``[modality]``/``[model]`` tables with ``name`` are accepted too)."""
    raw = read_toml(path, "--config")
    out: dict[str, Any] = {}
    for key, value in raw.items():
        key = key.replace("-", "_")
        if key in ("masker", "modality", "model") and isinstance(value, dict):
            value = dict(value)
            if "name" in value:
                out[key] = value.pop("name")
            out.setdefault(f"{key}_options", {}).update(value)
        else:
            out[key] = value
    return out


def merge_config(file_values: dict[str, Any], cli_values: dict[str, Any]) -> TrainConfig:
    """File values first, then every CLI value that was given (not None); option tables merge."""
    merged: dict[str, Any] = dict(file_values)
    for key, value in cli_values.items():
        if value is None:
            continue
        if key.endswith("_options") and isinstance(value, dict):
            merged[key] = {**merged.get(key, {}), **value}
        else:
            merged[key] = value
    return TrainConfig.from_dict(merged)


TRAIN_FIELDS = [f.name for f in fields(TrainConfig)]
