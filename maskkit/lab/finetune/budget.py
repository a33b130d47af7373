"""Fit MAE's fine-tuning regularisers and warm-up to the run's budget (steps) and token grid.

MAE's recipe (mixup 0.8, cutmix 1.0, label smoothing 0.1, drop-path 0.1, 5 warm-up epochs of 100)
is tuned for about 125 000 steps of ImageNet. On maskkit's embedded data a fine-tune is a few
hundred steps, and there the regularisers keep both arms far from convergence (docs/finetune.md:
330 steps on the digits, 0.649 held-out accuracy with them against 0.953 without). So a setting
left unset (None) is scaled: off up to ``REGULARISE_FROM_STEPS`` optimiser steps, MAE's value from
``FULL_RECIPE_STEPS`` on, log-linear in between. Cutmix is also off when the token grid is small,
where one box removes whole tokens out of a few dozen and with them most of what identifies the
sample. The head of a short fine-tune reads the pooled feature through a BatchNorm instead of
MAE's LayerNorm (``fc_norm``): the LayerNorm keeps the component every sample shares, which on
maskkit's small encoders is about ten times the part that differs between samples, so in a few
dozen steps the head never gets the logits apart (docs/finetune.md: 3 epochs on the digits stayed
at chance loss). A value given explicitly is always used as given.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

from maskkit.lab.finetune.config import FinetuneConfig

#: MAE's fine-tuning values (ViT-B, ImageNet), reached at FULL_RECIPE_STEPS
MAE_RECIPE = {"mixup": 0.8, "cutmix": 1.0, "label_smoothing": 0.1, "drop_path": 0.1}
#: at or below this many optimiser steps the regularisers are off (measured: 330 steps, see above)
REGULARISE_FROM_STEPS = 1_000
#: MAE's 100 ImageNet epochs at batch 1024: the full recipe from here on
FULL_RECIPE_STEPS = 100_000
#: cutmix needs at least this many tokens per sample (ViT-B/16 at 224 px has 196)
CUTMIX_MIN_TOKENS = 196
#: warm-up as a fraction of the run when ``warmup_epochs`` is unset (MAE: 5 of 100 epochs), but at
#: least one epoch (a few optimiser steps of warm-up learned nothing in a 3-epoch run on the digits)
#: and at most a third of the run
WARMUP_FRACTION = 0.05
#: up to this many optimiser steps the head standardises each feature over the batch (BatchNorm);
#: from here on it uses MAE's LayerNorm (fc_norm)
BATCH_NORM_HEAD_STEPS = REGULARISE_FROM_STEPS
#: below this many optimiser steps a fine-tune is announced as too short to learn reliably
TOO_SHORT_STEPS = 30
#: a fine-tune with ``epochs`` unset runs DEFAULT_EPOCHS epochs, or as many more as give it this many
#: optimiser steps: on the digits (22 steps per epoch) 10 epochs left an 8-px encoder at 0.78 held-out
#: accuracy, still climbing, and 660 steps reached 0.93 (docs/finetune.md)
MIN_DEFAULT_STEPS = 600
DEFAULT_EPOCHS = 10


def default_epochs(steps_per_epoch: int) -> int:
    """Epochs of a fine-tune whose ``epochs`` is unset: DEFAULT_EPOCHS, or enough for MIN_DEFAULT_STEPS."""
    return max(DEFAULT_EPOCHS, math.ceil(MIN_DEFAULT_STEPS / max(steps_per_epoch, 1)))


@dataclass
class FittedRecipe:
    """The values a fine-tune runs with, and one line per value that was scaled or switched off."""

    mixup: float
    cutmix: float
    label_smoothing: float
    drop_path: float
    warmup_epochs: float
    strength: float  # 0 = no regularisation, 1 = MAE's full recipe
    notes: list[str] = field(default_factory=list)
    head_norm: str = "layer"  # "layer" (MAE's fc_norm) or "batch" (BatchNorm, no affine)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def regularisation_strength(total_steps: int) -> float:
    """0 up to REGULARISE_FROM_STEPS, 1 from FULL_RECIPE_STEPS, linear in log(steps) between."""
    if total_steps <= REGULARISE_FROM_STEPS:
        return 0.0
    if total_steps >= FULL_RECIPE_STEPS:
        return 1.0
    return math.log(total_steps / REGULARISE_FROM_STEPS) / math.log(FULL_RECIPE_STEPS / REGULARISE_FROM_STEPS)


def fit_recipe(cfg: FinetuneConfig, total_steps: int, num_tokens: int, epochs: int | None = None) -> FittedRecipe:
    """Resolve every unset regulariser and the warm-up for a run of ``total_steps`` optimiser steps over
    ``epochs`` epochs (default: ``cfg.epochs``) on samples of ``num_tokens`` tokens. A linear probe
    (``freeze``) uses none of the regularisers."""
    epochs = epochs if epochs is not None else (cfg.epochs or DEFAULT_EPOCHS)
    strength = 0.0 if cfg.freeze else regularisation_strength(total_steps)
    values: dict[str, float] = {}
    scaled = []
    for name, full in MAE_RECIPE.items():
        given = getattr(cfg, name)
        values[name] = float(given) if given is not None else round(full * strength, 4)
        if given is None:
            scaled.append(name)
    notes = []
    if scaled and strength < 1.0 and not cfg.freeze:
        words = "off" if strength == 0.0 else f"at {strength:.0%} of MAE's values"
        notes.append(f"{total_steps} fine-tuning steps: {', '.join(scaled)} {words} (MAE's recipe is for "
                     f"~{FULL_RECIPE_STEPS:,} steps; set them explicitly to override)")
    if cfg.cutmix is None and values["cutmix"] > 0 and num_tokens < CUTMIX_MIN_TOKENS:
        values["cutmix"] = 0.0
        notes.append(f"cutmix off: {num_tokens} tokens per sample, so one box removes a large share of it "
                     f"(cutmix is used from {CUTMIX_MIN_TOKENS} tokens)")
    head_norm = cfg.head_norm
    if head_norm is None:
        head_norm = "batch" if total_steps <= BATCH_NORM_HEAD_STEPS and not cfg.freeze else "layer"
        if head_norm == "batch":
            notes.append(f"{total_steps} fine-tuning steps: the head reads the pooled feature through a "
                         f"BatchNorm instead of MAE's LayerNorm (`head_norm`; LayerNorm from "
                         f"{BATCH_NORM_HEAD_STEPS + 1:,} steps)")
    warmup = cfg.warmup_epochs
    if warmup is None:
        warmup = round(min(max(WARMUP_FRACTION * epochs, 1.0), epochs / 3), 4)
    if total_steps < TOO_SHORT_STEPS:
        notes.append(f"only {total_steps} optimiser steps: too short to learn reliably; give more "
                     f"`epochs` (at least {TOO_SHORT_STEPS} steps)")
    return FittedRecipe(mixup=values["mixup"], cutmix=values["cutmix"], label_smoothing=values["label_smoothing"],
                        drop_path=values["drop_path"], warmup_epochs=warmup, strength=strength, notes=notes,
                        head_norm=head_norm)


__all__ = ["BATCH_NORM_HEAD_STEPS", "CUTMIX_MIN_TOKENS", "DEFAULT_EPOCHS", "FULL_RECIPE_STEPS", "FittedRecipe",
           "MAE_RECIPE", "MIN_DEFAULT_STEPS", "REGULARISE_FROM_STEPS", "TOO_SHORT_STEPS", "WARMUP_FRACTION",
           "default_epochs", "fit_recipe", "regularisation_strength"]
