"""Typed run configuration. TOML files and CLI options fill the same dataclass (CLI wins)."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Literal

from maskkit.config_utils import ConfigError, build_dataclass, dataclass_to_dict, read_toml
from maskkit.plan import check_mask_ratio
from maskkit.train.integrity import candidates_newest_first
from maskkit.train.loggers import parse_loggers


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
    base_lr: float | None = None  # None = the modality's default_base_lr, else the preset's (schedule.py)
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
    #: continue the run in ``out``; "auto": continue if it holds a checkpoint, else start (SLURM requeues)
    resume: bool | Literal["auto"] = False
    overwrite: bool = False  # a new run over an existing one: move the old one aside (DIR.old-TIMESTAMP)
    allow_config_change: bool = False  # resume with other epochs/lr/mask ratio/...: recorded in history
    save_every: int = 5  # epochs between kept checkpoints (the last one is always written)
    save_every_steps: int = 0  # also refresh last.pt every N steps (0 = only at epoch ends)
    keep_checkpoints: int = 3  # how many periodic checkpoints to keep (0 = all)
    log_every: int = 10  # steps between metric lines
    probe_every: int = 0  # epochs between clustering-metric probes (0 = never)
    #: DataLoader workers; None = auto: 0 on CPU (workers would compete with the compute threads),
    #: on CUDA one per spare core of this rank, at most 8
    num_workers: int | None = None
    max_steps_per_epoch: int | None = None  # cap (smoke tests, quick looks)
    #: fraction of samples never trained on (a fixed split, the same for every seed), for held-out metrics
    holdout_fraction: float = 0.0
    compile: bool = False
    strategy: Literal["auto", "ddp", "fsdp"] = "auto"
    on_nonfinite: Literal["skip", "stop"] = "skip"
    on_bad_file: Literal["error", "skip"] = "error"
    visualize_samples: int = 8
    progress: bool = True
    #: trackers beside metrics.jsonl: comma-separated tensorboard, wandb, mlflow ("" = none)
    logger: str = ""
    #: epochs between reconstruction pictures sent to the trackers and kept in pictures/ (0 = end only)
    picture_every: int = 0
    #: torch intra-op threads (None = the CPUs this process may use; see maskkit.threads)
    threads: int | None = None

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        for name in ("mask_ratio", "lr", "base_lr", "min_lr", "weight_decay", "warmup_epochs", "clip_grad",
                     "holdout_fraction"):
            value = getattr(self, name)
            if value is not None and not math.isfinite(value):
                raise ConfigError(f"`{name}` must be a finite number, got {value}")
        if self.mask_ratio is not None:
            check_mask_ratio(self.mask_ratio)
        for name in ("epochs", "batch_size", "accum_steps"):
            if getattr(self, name) < 1:
                raise ConfigError(f"`{name}` must be >= 1, got {getattr(self, name)}")
        if self.lr is not None and self.lr <= 0:
            raise ConfigError(f"`lr` must be > 0, got {self.lr}")
        if self.base_lr is not None and self.base_lr <= 0:
            raise ConfigError(f"`base_lr` must be > 0, got {self.base_lr}")
        check_optimizer_ranges(self)
        if self.warmup_epochs < 0:
            raise ConfigError(f"`warmup_epochs` must be >= 0, got {self.warmup_epochs}")
        if self.save_every < 1:
            raise ConfigError(f"`save_every` must be >= 1, got {self.save_every}")
        if self.save_every_steps < 0:
            raise ConfigError(f"`save_every_steps` must be >= 0, got {self.save_every_steps}")
        if self.max_steps_per_epoch is not None and self.max_steps_per_epoch < 1:
            raise ConfigError(f"`max_steps_per_epoch` must be >= 1, got {self.max_steps_per_epoch}")
        if not 0.0 <= self.holdout_fraction < 0.9:
            raise ConfigError(f"`holdout_fraction` must be in [0, 0.9), got {self.holdout_fraction}")
        if self.resume and self.overwrite:
            raise ConfigError("`resume` and `overwrite` contradict each other: continue the run or replace it")
        if self.picture_every < 0:
            raise ConfigError(f"`picture_every` must be >= 0, got {self.picture_every}")
        if self.threads is not None and self.threads < 1:
            raise ConfigError(f"`threads` must be >= 1, got {self.threads}")
        if self.logger:
            self.logger = ",".join(parse_loggers(self.logger))
        if self.num_workers is not None and self.num_workers < 0:
            raise ConfigError(f"`num_workers` must be >= 0, got {self.num_workers}")

    def to_dict(self) -> dict[str, Any]:
        return dataclass_to_dict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any], base: TrainConfig | None = None) -> TrainConfig:
        return build_dataclass(cls, values, base=base)

    @classmethod
    def from_saved(cls, saved: dict[str, Any]) -> TrainConfig:
        """The settings of a run's ``config.json`` (or a checkpoint's config), without what the run
        derived from them (resolved model and precision, history) or what applied to one invocation."""
        return cls.from_dict({k: v for k, v in saved.items() if k not in SAVED_ONLY_KEYS})


def check_optimizer_ranges(cfg: TrainConfig) -> None:
    """Ranges that would otherwise train silently wrong: a negative clip reverses the gradient, a
    negative decay grows the weights, a floor above the peak makes the schedule climb."""
    if cfg.clip_grad is not None and cfg.clip_grad <= 0:
        raise ConfigError(f"`clip_grad` must be > 0 (leave it unset for no clipping), got {cfg.clip_grad}")
    if cfg.weight_decay < 0:
        raise ConfigError(f"`weight_decay` must be >= 0, got {cfg.weight_decay}")
    if cfg.min_lr < 0:
        raise ConfigError(f"`min_lr` must be >= 0, got {cfg.min_lr}")
    if cfg.lr is not None:
        check_min_lr(cfg.min_lr, cfg.lr)
    betas = cfg.betas
    if (not isinstance(betas, (tuple, list)) or len(betas) != 2
            or not all(isinstance(b, (int, float)) and 0.0 <= b < 1.0 for b in betas)):
        shown = list(betas) if isinstance(betas, (tuple, list)) else betas
        raise ConfigError(f"`betas` must be two numbers in [0, 1), got {shown!r}")


def check_min_lr(min_lr: float, peak_lr: float) -> None:
    """``min_lr`` is the floor of the cosine schedule: it may not exceed the peak (``lr``, or the one
    scaled from ``base_lr``)."""
    if min_lr > peak_lr:
        raise ConfigError(f"`min_lr` {min_lr:g} is above the peak learning rate {peak_lr:g} (`lr`); "
                          f"the schedule would rise instead of decay")


#: keys a run writes beside its settings: derived values and per-invocation switches
SAVED_ONLY_KEYS = ("resolved_model", "resolved_precision", "history", "overwrite", "allow_config_change")


def read_saved_settings(path: str | Path) -> dict[str, Any]:
    """The settings in a run's ``config.json`` (what ``resume`` starts from), without the keys the run
    derived; a truncated or foreign file is refused by name."""
    p = Path(path)
    try:
        saved = json.loads(p.read_text())
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{p}: not a readable run config ({str(exc).splitlines()[0][:120]})") from None
    if not isinstance(saved, dict):
        raise ConfigError(f"{p}: not a run config (a JSON object expected, found {type(saved).__name__})")
    return {k: v for k, v in saved.items() if k not in SAVED_ONLY_KEYS}


def load_toml(path: str | Path) -> dict[str, Any]:
    """Read a TOML run file; tables ``[masker_options]``, ``[modality_options]``, ``[model_options]``
    map to those fields (``[masker]``/``[modality]``/``[model]`` tables with ``name`` are accepted too)."""
    raw = read_toml(path, "`config`")
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


def layered_config(given: dict[str, Any], file_values: dict[str, Any] | None = None) -> TrainConfig:
    """A run's settings in one order of precedence, for ``maskkit train`` and ``maskkit.train`` alike:
    with ``resume``, the run's own saved settings (``OUT/config.json``) first, then the file's, then what
    was given (None = not given; option tables merge key by key). A masker other than the saved or
    file one drops that one's options, which would not fit it."""
    lower = dict(file_values or {})
    wanted = given.get("resume") if given.get("resume") is not None else lower.get("resume")
    out = Path(given.get("out") or lower.get("out") or TrainConfig.out)
    continues = bool(candidates_newest_first(out)) if wanted == "auto" else bool(wanted)  # auto: a checkpoint?
    if continues and (out / "config.json").is_file():
        lower = {**read_saved_settings(out / "config.json"), **lower}
    masker = given.get("masker")
    if lower.get("masker") and masker and masker != lower["masker"]:
        lower.pop("masker_options", None)
    return merge_config(lower, given)


TRAIN_FIELDS = [f.name for f in fields(TrainConfig)]
