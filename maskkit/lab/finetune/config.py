"""Typed fine-tuning configuration (CLI options and study ``finetune_options`` fill the same dataclass)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Literal

from maskkit.config_utils import ConfigError, build_dataclass, dataclass_to_dict


@dataclass
class FinetuneConfig:
    """Defaults follow MAE's fine-tuning recipe (layer decay, drop-path, smoothing, mixup/cutmix,
    warmup + cosine), scaled down for small models; ``freeze`` switches to MAE's linear probe
    (BatchNorm without affine + linear head, SGD with momentum, no regularisers)."""

    run: str = ""  # the pretrained run (directory or checkpoint)
    #: pretrained: the run's weights; random: the same architecture at the run's initial weights (baseline)
    init: Literal["pretrained", "random"] = "pretrained"
    init_from: str | None = None  # timm / Hugging Face / maskkit weights instead of the run's
    data: str | None = None  # labelled data; None = the run's data
    #: input-size overrides (image_size, num_frames, num_points, num_groups)
    modality_overrides: dict[str, Any] = field(default_factory=dict)
    #: None: 10, or more on a small dataset, so the run gets MIN_DEFAULT_STEPS optimiser steps
    #: (maskkit.lab.finetune.budget.default_epochs)
    epochs: int | None = None
    batch_size: int = 64
    lr: float | None = None  # absolute peak lr; None = base_lr * batch / 256
    #: None: 5e-3 fine-tuning (MAE uses 5e-4..1e-3 for 100 ImageNet epochs; maskkit's runs are far
    #: shorter, see docs/finetune.md), 0.1 linear probe (MAE's)
    base_lr: float | None = None
    min_lr: float = 1e-6
    weight_decay: float | None = None  # None: 0.05 fine-tuning, 0 linear probe
    layer_decay: float = 0.75
    #: the four regularisers and the warm-up: None = fitted to the run's steps and token grid
    #: (maskkit.lab.finetune.budget: MAE's 0.1 / 0.1 / 0.8 / 1.0 at ImageNet budgets, off for short runs;
    #: warm-up 5 % of the epochs)
    warmup_epochs: float | None = None
    drop_path: float | None = None
    label_smoothing: float | None = None
    mixup: float | None = None  # Beta(alpha, alpha) for mixup; 0 = off
    cutmix: float | None = None  # Beta(alpha, alpha) for cutmix (boxes on images/frames, time spans on spectrograms)
    mix_prob: float = 1.0  # probability that a batch is mixed at all
    switch_prob: float = 0.5  # when both are on: probability of cutmix instead of mixup
    ema: float = 0.0  # weight EMA decay (e.g. 0.999); 0 = off
    freeze: bool = False  # linear probe: encoder frozen, SGD
    pool: Literal["mean", "cls"] = "mean"
    #: the norm between the pooled feature and the head: "layer" (MAE's fc_norm), "batch" (BatchNorm
    #: without affine, as the linear probe); None = fitted to the run's steps (maskkit.lab.finetune.budget)
    head_norm: Literal["layer", "batch"] | None = None
    clip_grad: float | None = None
    #: fraction of labelled samples held out for testing when the run kept no hold-out of its own
    test_fraction: float = 0.2
    max_test_samples: int | None = None
    max_steps_per_epoch: int | None = None
    seed: int | None = None  # None = the run's seed
    device: Literal["auto", "cpu", "cuda"] = "auto"
    precision: Literal["auto", "fp32", "bf16"] = "auto"  # fp16 would need a loss scaler: not offered
    num_workers: int = 0
    out: str = ""
    resume: bool = False
    on_bad_file: Literal["error", "skip"] = "error"
    progress: bool = True

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        for name in ("epochs", "batch_size"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise ConfigError(f"`{name}` must be >= 1, got {getattr(self, name)}")
        for name in ("lr", "base_lr", "min_lr", "weight_decay", "warmup_epochs", "drop_path", "label_smoothing",
                     "mixup", "cutmix", "ema", "clip_grad"):
            value = getattr(self, name)
            if value is not None and (not math.isfinite(value) or value < 0):
                raise ConfigError(f"`{name}` must be a finite number >= 0, got {value}")
        if self.lr is not None and self.lr <= 0:
            raise ConfigError(f"`lr` must be > 0, got {self.lr}")
        if not 0.0 < self.layer_decay <= 1.0:
            raise ConfigError(f"`layer_decay` must be in (0, 1], got {self.layer_decay}")
        if self.drop_path is not None and not 0.0 <= self.drop_path < 1.0:
            raise ConfigError(f"`drop_path` must be in [0, 1), got {self.drop_path}")
        if self.label_smoothing is not None and not 0.0 <= self.label_smoothing < 1.0:
            raise ConfigError(f"`label_smoothing` must be in [0, 1), got {self.label_smoothing}")
        for name in ("mix_prob", "switch_prob"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ConfigError(f"`{name}` must be in [0, 1], got {getattr(self, name)}")
        if not 0.0 <= self.ema < 1.0:
            raise ConfigError(f"`ema` must be in [0, 1) (0 = off), got {self.ema}")
        if not 0.0 < self.test_fraction < 0.9:
            raise ConfigError(f"`test_fraction` must be in (0, 0.9), got {self.test_fraction}")
        if self.max_steps_per_epoch is not None and self.max_steps_per_epoch < 1:
            raise ConfigError(f"`max_steps_per_epoch` must be >= 1, got {self.max_steps_per_epoch}")
        if self.max_test_samples is not None and self.max_test_samples < 1:
            raise ConfigError(f"`max_test_samples` must be >= 1, got {self.max_test_samples}")

    # ------------------------------------------------------------------ derived values
    @property
    def peak_base_lr(self) -> float:
        return self.base_lr if self.base_lr is not None else (0.1 if self.freeze else 5e-3)

    @property
    def decay(self) -> float:
        return self.weight_decay if self.weight_decay is not None else (0.0 if self.freeze else 0.05)

    @property
    def protocol_name(self) -> str:
        return "linear probe (SGD)" if self.freeze else "fine-tune"

    def to_dict(self) -> dict[str, Any]:
        return dataclass_to_dict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any], base: FinetuneConfig | None = None) -> FinetuneConfig:
        return build_dataclass(cls, values, base=base)
