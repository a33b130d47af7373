"""Hooks the trainer calls, so that probes, pictures and trackers plug in from above.

The trainer knows nothing of the lab: ``maskkit.lab.training.standard_callbacks`` supplies the
clustering probe and the reconstruction picture, and a user can pass their own. Callbacks run on
the main rank only, except ``epoch_metrics`` under FSDP: there every rank calls it with the
parameters gathered (a collective) and the main rank's values are logged. A failing
``on_train_end`` is logged as a warning and never costs the run.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from maskkit.maskers.base import TrainingProgress

if TYPE_CHECKING:
    from maskkit.train.build import RunParts
    from maskkit.train.config import TrainConfig
    from maskkit.train.metrics import MetricsLog


@dataclass
class TrainState:
    """What a callback sees of the run."""

    config: TrainConfig
    parts: RunParts
    device: torch.device
    amp_dtype: torch.dtype | None
    out: Path
    epoch: int  # epochs completed
    step: int  # batches seen
    distributed: bool  # True under torchrun: modules are wrapped; read weights from checkpoints
    metrics: MetricsLog  # metrics.jsonl and the trackers: ``metrics.image(tag, path, step)`` sends a picture
    steps_per_epoch: int = 1  # batches per epoch (this rank's)

    @property
    def progress(self) -> TrainingProgress:
        """Where training stands after the last step taken (what the masker saw last)."""
        return TrainingProgress(epoch=max(self.epoch - 1, 0), step=max(self.step - 1, 0),
                                epochs=self.config.epochs, steps_per_epoch=self.steps_per_epoch)

    @property
    def last_checkpoint(self) -> Path:
        return self.out / "checkpoints" / "last.pt"


class Callback:
    """Override what you need; each default does nothing."""

    def epoch_metrics(self, state: TrainState) -> dict[str, float]:
        """Extra scalars for this epoch's line of ``metrics.jsonl``."""
        return {}

    def on_epoch_end(self, state: TrainState) -> None:
        """After each epoch's checkpoint; RNG and masker states are restored afterwards."""

    def on_train_end(self, state: TrainState) -> None:
        """After the last epoch and its checkpoint."""
