"""The study grid: one training run per masker x seed x mask ratio x patch size, and the baselines.

Every run of a cell shares data, model, budget and seed-driven data order; only the masker differs.
Baselines (random-init encoder, raw input) are evaluated once per seed and patch size: they do not
depend on the masker or the mask ratio.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from maskkit.lab.study.config import StudyConfig
from maskkit.registry import get_modality
from maskkit.train.config import TrainConfig


@dataclass(frozen=True, order=True)
class Cell:
    """One point of the ratio x patch-size sweep (patch None: the modality's default)."""

    mask_ratio: float
    patch_size: int | None = None

    @property
    def slug(self) -> str:
        base = f"r{self.mask_ratio:g}"
        return base if self.patch_size is None else f"{base}_p{self.patch_size}"

    @property
    def label(self) -> str:
        base = f"mask ratio {self.mask_ratio:g}"
        return base if self.patch_size is None else f"{base}, patch size {self.patch_size}"


@dataclass(frozen=True)
class RunSpec:
    masker: str
    seed: int
    cell: Cell

    @property
    def run_id(self) -> str:
        return f"{self.masker}__{self.cell.slug}__s{self.seed}"


@dataclass(frozen=True)
class BaselineSpec:
    """Random-init encoder and raw input for one seed at one patch size."""

    seed: int
    patch_size: int | None

    @property
    def key(self) -> str:
        return f"s{self.seed}" if self.patch_size is None else f"p{self.patch_size}__s{self.seed}"


def mask_ratios(study: StudyConfig) -> list[float]:
    if study.mask_ratios:
        return list(study.mask_ratios)

    return [float(get_modality(study.modality).default_mask_ratio)]


def cells(study: StudyConfig) -> list[Cell]:
    patches: list[int | None] = list(study.patch_sizes) or [None]
    return [Cell(r, p) for r in mask_ratios(study) for p in patches]


def plan_runs(study: StudyConfig) -> list[RunSpec]:
    """Seed-major order, so a study stopped half-way has every masker at the first seeds."""
    return [RunSpec(m, s, c) for s in study.seed_list for c in cells(study) for m in study.maskers]


def plan_baselines(study: StudyConfig) -> list[BaselineSpec]:
    patches: list[int | None] = list(study.patch_sizes) or [None]
    return [BaselineSpec(s, p) for s in study.seed_list for p in patches]


def run_dir(study: StudyConfig, spec: RunSpec) -> Path:
    return Path(study.out) / "runs" / spec.run_id


def baseline_path(study: StudyConfig, spec: BaselineSpec) -> Path:
    return Path(study.out) / "baselines" / f"{spec.key}.json"


def modality_options(study: StudyConfig, patch_size: int | None) -> dict[str, Any]:
    opts = dict(study.modality_options)
    if patch_size is not None:
        opts["patch_size"] = patch_size
    return opts


def train_config(study: StudyConfig, spec: RunSpec, device: str = "auto", progress: bool | None = None,
                 resume: bool = False) -> TrainConfig:
    """The run's TrainConfig: the study's shared settings plus this run's masker, seed and cell.

    ``device`` is the TrainConfig kind (auto/cpu/cuda); the CUDA index is chosen by the caller.
    With learning curves on, every periodic checkpoint is kept so it can be probed afterwards.
    """
    values: dict[str, Any] = {k.replace("-", "_"): v for k, v in study.train_options.items()}
    curve_every = study.resolved_curve_every()
    if curve_every:
        values["save_every"] = curve_every
        values["keep_checkpoints"] = 0
    values.update(
        modality=study.modality, data=study.data, masker=spec.masker,
        masker_options=dict(study.masker_options.get(spec.masker, {})), mask_ratio=spec.cell.mask_ratio,
        modality_options=modality_options(study, spec.cell.patch_size), model=study.model,
        model_options=dict(study.model_options), epochs=study.epochs, batch_size=study.batch_size,
        seed=spec.seed, out=str(run_dir(study, spec)), max_steps_per_epoch=study.max_steps_per_epoch,
        device=device, progress=study.progress if progress is None else progress, resume=resume,
        holdout_fraction=study.holdout if study.eval_data is None else 0.0,
    )
    return TrainConfig.from_dict(values)


def baseline_train_config(study: StudyConfig, spec: BaselineSpec) -> TrainConfig:
    """A TrainConfig that builds exactly the initial model of the runs with this seed and patch size."""
    first = RunSpec(study.maskers[0], spec.seed, Cell(mask_ratios(study)[0], spec.patch_size))
    return train_config(study, first, device="cpu", progress=False)


__all__ = ["BaselineSpec", "Cell", "RunSpec", "baseline_path", "baseline_train_config", "cells",
           "mask_ratios", "plan_baselines", "plan_runs", "run_dir", "train_config"]
