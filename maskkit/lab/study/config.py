"""Typed study configuration: which maskers, seeds, ratios and patch sizes, under one budget and protocol.

A study file is TOML with the same names as the fields below; ``[masker_options.<masker>]``,
``[modality_options]``, ``[model_options]`` and ``[train]`` (any other ``TrainConfig`` field) are
tables. Command-line values override the file (``merge_study``).
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from maskkit.config_utils import ConfigError, build_dataclass, dataclass_to_dict, read_toml
from maskkit.lab.finetune.config import FinetuneConfig
from maskkit.lab.study.stats import BOOTSTRAP_MIN_SEEDS
from maskkit.plan import check_mask_ratio
from maskkit.train.config import TRAIN_FIELDS

#: TrainConfig fields the study sets itself for every run (not allowed in ``[train]``)
STUDY_CONTROLLED = frozenset({
    "modality", "data", "masker", "masker_options", "mask_ratio", "modality_options", "model",
    "model_options", "epochs", "batch_size", "seed", "out", "resume", "max_steps_per_epoch", "device",
    "progress",
})

_DEVICE = re.compile(r"^(auto|cpu|cuda(:\d+)?)$")


@dataclass
class StudyConfig:
    """Every masker x seed x mask ratio x patch size, trained and evaluated the same way."""

    modality: str = "image"
    data: str | None = None  # training data (path or builtin:NAME); None = the modality's default
    #: data for probes and reconstruction loss; None = the training data without augmentation
    eval_data: str | None = None
    #: without eval_data: fraction of the training samples every run leaves out (one fixed split), on
    #: which the reconstruction loss is measured; 0 = measure on the training data
    holdout: float = 0.1
    model: str | None = None
    maskers: list[str] = field(default_factory=lambda: ["random"])
    #: per-masker options: {"self-guided": {"start_epoch": 5}}
    masker_options: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: the masker every other masker is compared with, seed by seed
    reference: str = "random"
    #: an int n means seeds 0..n-1; a list names them
    seeds: int | list[int] = 3
    mask_ratios: list[float] = field(default_factory=list)  # empty = the modality's default ratio
    patch_sizes: list[int] = field(default_factory=list)  # empty = the modality's default patch size
    modality_options: dict[str, Any] = field(default_factory=dict)
    model_options: dict[str, Any] = field(default_factory=dict)
    epochs: int = 10
    batch_size: int = 64
    max_steps_per_epoch: int | None = None
    #: any other TrainConfig field (lr, base_lr, warmup_epochs, precision, num_workers, ...)
    train_options: dict[str, Any] = field(default_factory=dict)
    #: one entry: runs one after another; several (cuda:0,cuda:1): one worker process per entry
    devices: list[str] = field(default_factory=lambda: ["auto"])
    out: str = "studies/latest"
    # ---- evaluation protocol (identical for every run and baseline)
    probe_feature: Literal["mean", "cls"] = "mean"
    eval_max_samples: int = 2000
    knn_k: int = 10
    recon_max_samples: int = 512
    eval_seed: int = 0  # subset, folds and the shared random masks
    #: epochs between probe points on the learning curves; None = about 4 points, 0 = final only
    curve_every: int | None = None
    analysis: bool = True  # token-clustering metrics (maskkit.lab.analysis) when available
    #: evaluation protocols: "probe" (frozen features: linear probe + k-NN) and/or "finetune"
    #: (end-to-end fine-tuning of every run and of the random-init baseline, same recipe)
    eval: list[str] = field(default_factory=lambda: ["probe"])
    finetune_epochs: int = 5
    #: other FinetuneConfig fields (lr, layer_decay, drop_path, mixup, freeze, ...)
    finetune_options: dict[str, Any] = field(default_factory=dict)
    # ---- statistics
    interval: Literal["t", "bootstrap"] = "t"
    confidence: float = 0.95
    bootstrap_samples: int = 10000
    mask_examples: int = 4
    progress: bool = True
    #: recipe sweep: {key: [values]} over study axes (model, data, epochs, ...) or training options
    #: (base_lr, warmup_epochs, ...); one sub-study per combination (maskkit.lab.study.sweep)
    sweep: dict[str, list[Any]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if isinstance(self.seeds, int):
            if self.seeds < 1:
                raise ConfigError(f"`seeds` must be >= 1 (a count) or a list of seeds, got {self.seeds}")
            self.seeds = list(range(self.seeds))
        # option keys may be written with dashes (TOML, CLI); runs store them with underscores
        for name in ("modality_options", "model_options", "train_options"):
            setattr(self, name, _underscored(getattr(self, name)))
        self.masker_options = {m: _underscored(o) for m, o in self.masker_options.items()}
        self.finetune_options = _underscored(self.finetune_options)
        if isinstance(self.eval, str):
            self.eval = [e.strip() for e in self.eval.split(",") if e.strip()]
        self.validate()

    # ------------------------------------------------------------------ validation
    def validate(self) -> None:
        if not 0.0 <= self.holdout < 0.9:
            raise ConfigError(f"`holdout` must be in [0, 0.9), got {self.holdout}")
        if not self.maskers:
            raise ConfigError("`maskers`: give at least one masker name")
        if len(set(self.maskers)) != len(self.maskers):
            raise ConfigError(f"`maskers` lists a masker twice: {','.join(self.maskers)}")
        if len(self.maskers) > 1 and self.reference not in self.maskers:
            raise ConfigError(f"`reference` {self.reference} is not among `maskers` {','.join(self.maskers)}; "
                              f"add it or pick one of them")
        unknown = sorted(set(self.masker_options) - set(self.maskers))
        if unknown:
            raise ConfigError(f"masker_options for {', '.join(unknown)}, which is not in `maskers` "
                              f"{','.join(self.maskers)}")
        if len(set(self.seed_list)) != len(self.seed_list):
            raise ConfigError(f"`seeds` lists a seed twice: {self.seed_list}")
        for r in self.mask_ratios:
            check_mask_ratio(r, "mask_ratios")
        for p in self.patch_sizes:
            if p < 1:
                raise ConfigError(f"`patch_sizes` values must be >= 1, got {p}")
        if self.patch_sizes and "patch_size" in self.modality_options:
            raise ConfigError("give the patch size either in `patch_sizes` or in modality_options, not both")
        for name in ("epochs", "batch_size", "eval_max_samples", "knn_k", "recon_max_samples",
                     "bootstrap_samples"):
            if getattr(self, name) < 1:
                raise ConfigError(f"`{name}` must be >= 1, got {getattr(self, name)}")
        if self.max_steps_per_epoch is not None and self.max_steps_per_epoch < 1:
            raise ConfigError(f"`max_steps_per_epoch` must be >= 1, got {self.max_steps_per_epoch}")
        if self.curve_every is not None and self.curve_every < 0:
            raise ConfigError(f"`curve_every` must be >= 0, got {self.curve_every}")
        if self.mask_examples < 0:
            raise ConfigError(f"mask_examples must be >= 0, got {self.mask_examples}")
        if not 0.0 < self.confidence < 1.0:
            raise ConfigError(f"`confidence` must be in (0, 1), got {self.confidence}")
        if self.interval == "bootstrap" and len(self.seed_list) < BOOTSTRAP_MIN_SEEDS:
            raise ConfigError(f"`interval` bootstrap needs at least {BOOTSTRAP_MIN_SEEDS} seeds, got "
                              f"{len(self.seed_list)}: with fewer the percentile bootstrap interval is far too "
                              f"narrow; use t")
        if not self.devices:
            raise ConfigError("`devices`: give at least one device (cpu, cuda, cuda:N)")
        for d in self.devices:
            if not _DEVICE.match(d):
                raise ConfigError(f"`devices`: {d!r} is not a device; use auto, cpu, cuda or cuda:N")
        self._validate_train_options()
        self._validate_eval()
        check_sweep(self.sweep)

    def _validate_eval(self) -> None:
        unknown = [e for e in self.eval if e not in ("probe", "finetune")]
        if unknown or not self.eval:
            raise ConfigError(f"`eval` takes probe and/or finetune (comma-separated), got {','.join(self.eval)}")
        if self.finetune_epochs < 1:
            raise ConfigError(f"`finetune_epochs` must be >= 1, got {self.finetune_epochs}")
        controlled = {"run", "init", "init_from", "out", "resume", "epochs", "progress", "device", "data",
                      "modality_overrides"}
        bad = sorted(set(self.finetune_options) & controlled)
        if bad:
            raise ConfigError(f"[finetune_options] {', '.join(bad)}: the study sets this itself")
        FinetuneConfig.from_dict(self.finetune_options)  # unknown keys / bad values: one line now

    @property
    def finetunes(self) -> bool:
        return "finetune" in self.eval

    def _validate_train_options(self) -> None:

        for key in self.train_options:
            name = key.replace("-", "_")
            if name in STUDY_CONTROLLED:
                raise ConfigError(f"[train] {key}: the study sets this itself; use the study's own "
                                  f"option ({name.replace('_', '-')}) instead")
            if name not in TRAIN_FIELDS:
                raise ConfigError(f"[train] {key}: not a training option; valid: "
                                  f"{', '.join(sorted(set(TRAIN_FIELDS) - STUDY_CONTROLLED))}")

    # ------------------------------------------------------------------ derived values
    @property
    def seed_list(self) -> list[int]:
        return list(self.seeds) if not isinstance(self.seeds, int) else list(range(self.seeds))

    @property
    def parallel(self) -> bool:
        return len(self.devices) > 1

    def resolved_curve_every(self) -> int:
        """Epochs between learning-curve probe points (0 = final model only)."""
        if self.curve_every is not None:
            return self.curve_every
        return max(1, -(-self.epochs // 4))

    def protocol(self) -> dict[str, Any]:
        """What an evaluation depends on; a cached evaluation is reused only when this matches."""
        return {"eval_data": self.eval_data, "holdout": self.holdout, "probe_feature": self.probe_feature,
                "eval_max_samples": self.eval_max_samples, "knn_k": self.knn_k,
                "recon_max_samples": self.recon_max_samples, "eval_seed": self.eval_seed,
                "curve_every": self.resolved_curve_every(), "analysis": self.analysis,
                "mask_examples": self.mask_examples, "latent_probes": 1,
                **({"eval": list(self.eval)} if self.eval != ["probe"] else {}),
                **({"finetune_epochs": self.finetune_epochs, "finetune_options": dict(self.finetune_options)}
                   if self.finetunes else {})}

    def to_dict(self) -> dict[str, Any]:
        return dataclass_to_dict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> StudyConfig:
        return build_dataclass(cls, values)


def _underscored(options: dict[str, Any]) -> dict[str, Any]:
    return {str(k).replace("-", "_"): v for k, v in dict(options).items()}


STUDY_FIELDS = [f.name for f in dataclasses.fields(StudyConfig)]
_TABLES = {"masker_options", "modality_options", "model_options", "train_options", "finetune_options", "sweep"}


def load_study_toml(path: str | Path) -> dict[str, Any]:
    """Read a study file. Top-level keys may use dashes; masker names inside tables keep theirs."""
    p = Path(path)
    raw = read_toml(p, "study file")
    out: dict[str, Any] = {}
    for key, value in raw.items():
        name = key.replace("-", "_")
        if name == "train":
            name = "train_options"
        if name not in STUDY_FIELDS:
            raise ConfigError(f"study file {p}: unknown key {key!r}; valid keys: "
                              f"{', '.join(sorted(STUDY_FIELDS))}, [train]")
        if name in _TABLES and not isinstance(value, dict):
            raise ConfigError(f"study file {p}: {key} must be a table ([{key}])")
        if name == "masker_options":
            for masker, opts in value.items():
                if not isinstance(opts, dict):
                    raise ConfigError(f"study file {p}: masker_options.{masker} must be a table "
                                      f"([masker_options.{masker}])")
        out[name] = value
    return out


def merge_study(file_values: dict[str, Any], cli_values: dict[str, Any]) -> StudyConfig:
    """File values, then every command-line value that was given (not None); option tables merge."""
    merged = dict(file_values)
    chosen = cli_values.get("maskers")
    if chosen is not None and "masker_options" in merged:  # options of maskers the CLI left out
        names = [m.strip() for m in chosen.split(",")] if isinstance(chosen, str) else list(chosen)
        merged["masker_options"] = {m: o for m, o in merged["masker_options"].items() if m in names}
    for key, value in cli_values.items():
        if value is None:
            continue
        if key == "masker_options":
            combined = {m: dict(o) for m, o in merged.get(key, {}).items()}
            for masker, opts in value.items():
                combined.setdefault(masker, {}).update(opts)
            merged[key] = combined
        elif key in _TABLES:
            merged[key] = {**merged.get(key, {}), **value}
        else:
            merged[key] = value
    return StudyConfig.from_dict(merged)


def parse_masker_options(items: list[str] | None) -> dict[str, dict[str, str]]:
    """``["self-guided.start_epoch=5"]`` -> ``{"self-guided": {"start_epoch": "5"}}``."""
    out: dict[str, dict[str, str]] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        masker, dot, option = key.partition(".")
        if not sep or not dot or not masker.strip() or not option.strip():
            raise ConfigError(f"`masker_opt` expects MASKER.key=value (e.g. self-guided.start_epoch=5), "
                              f"got {item!r}")
        out.setdefault(masker.strip(), {})[option.strip()] = value.strip()
    return out


#: what a `sweep` may vary besides the training options a study does not set itself
STUDY_AXES = ("model", "data", "epochs", "batch_size", "max_steps_per_epoch", "holdout")


def check_sweep(sweep: dict[str, list[Any]]) -> None:
    """Each key is a study axis or a training option the study does not set itself; values differ."""
    for key, values in sweep.items():
        name = key.replace("-", "_")
        if name not in STUDY_AXES and (name not in TRAIN_FIELDS or name in STUDY_CONTROLLED):
            raise ConfigError(f"`sweep` {key}: sweep one of {', '.join(STUDY_AXES)} or a training option "
                              f"(base_lr, lr, warmup_epochs, weight_decay, ...)")
        if not isinstance(values, list) or not values:
            raise ConfigError(f"`sweep` {key}: give a list of values")
        if len({str(v) for v in values}) != len(values):
            raise ConfigError(f"`sweep` {key} lists a value twice: {','.join(str(v) for v in values)}")


__all__ = ["STUDY_AXES", "STUDY_CONTROLLED", "StudyConfig", "check_sweep", "load_study_toml", "merge_study",
           "parse_masker_options"]
