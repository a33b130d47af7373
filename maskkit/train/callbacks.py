"""Hooks the trainer calls, so that probes, pictures and trackers plug in from above.

The trainer knows nothing of the lab: ``maskkit.lab.training.standard_callbacks`` supplies the
clustering probe and the reconstruction picture, and a user can pass their own. The trainer's own
per-step duties (windowed logging, mask diagnostics, step checkpoints) are callbacks too
(``maskkit.train.step_callbacks``), so the step loop reads as the algorithm.

Where each hook runs: ``on_epoch_start`` and ``on_step_end`` on every rank (keep them cheap and free of
host syncs, or sync every n steps on every rank alike); ``epoch_metrics`` on the main rank, or under FSDP
on every rank with the parameters gathered (a collective), the main rank's values logged;
``on_epoch_end`` and ``on_train_end`` on the main rank, where a failure is logged as a warning and never
costs the run.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from maskkit.maskers.base import TrainingProgress
from maskkit.train import distributed as dist_utils
from maskkit.train.checkpoint import rng_state, set_rng_state

if TYPE_CHECKING:
    from maskkit.train.build import RunParts
    from maskkit.train.config import TrainConfig
    from maskkit.train.metrics import MetricsLog
    from maskkit.train.step import StepOutput


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


@dataclass
class StepResult:
    """One batch's outcome, as ``on_step_end`` sees it (tensors on the device; nothing synced yet)."""

    output: StepOutput  # loss, recon_loss, per_token, plan, tokens, logs
    batch_size: int  # this rank's samples in the batch
    optimizer_stepped: bool  # the batch closed an accumulation group, so an optimiser step was taken
    lr: float


class Callback:
    """Override what you need; each default does nothing."""

    def on_epoch_start(self, state: TrainState) -> None:
        """Before an epoch's first batch (every rank)."""

    def on_step_end(self, state: TrainState, step: StepResult) -> None:
        """After each batch and its optimiser step, when one was due (every rank)."""

    def epoch_metrics(self, state: TrainState) -> dict[str, float]:
        """Extra scalars for this epoch's line of ``metrics.jsonl``."""
        return {}

    def on_epoch_end(self, state: TrainState) -> None:
        """After each epoch's checkpoint; RNG and masker states are restored afterwards."""

    def on_train_end(self, state: TrainState) -> None:
        """After the last epoch and its checkpoint."""


class CallbackList:
    """Runs a list of callbacks at each hook, with the rules in the module docstring."""

    def __init__(self, callbacks: Sequence[Callback], is_main: bool) -> None:
        self.callbacks = list(callbacks)
        self.is_main = is_main

    def on_epoch_start(self, state: TrainState) -> None:
        for callback in self.callbacks:
            callback.on_epoch_start(state)

    def on_step_end(self, state: TrainState, step: StepResult) -> None:
        for callback in self.callbacks:
            callback.on_step_end(state, step)

    def epoch_metrics(self, state: TrainState, wrapped: Any) -> dict[str, float]:
        """Callbacks' epoch scalars. Under FSDP every rank runs them with the parameters gathered (a
        collective); otherwise only the writer does. The writer's values are kept."""
        sharded = dist_utils.is_fsdp(wrapped)
        if not self.callbacks or not (self.is_main or sharded):
            return {}
        out: dict[str, float] = {}
        with dist_utils.unsharded(wrapped):
            for callback in self.callbacks:
                out.update(callback.epoch_metrics(state))
        return out if self.is_main else {}

    def on_epoch_end(self, state: TrainState, wrapped: Any) -> None:
        """After an epoch's checkpoint, on the writer. RNG and masker states are restored afterwards, so a
        run with epoch pictures trains exactly as one without (and resumes bit-identically)."""
        if not self.is_main or not self.callbacks:
            return
        saved_rng = rng_state()
        masker_state = copy.deepcopy(state.parts.masker.state_dict())
        try:
            self._guarded("on_epoch_end", state)
        finally:
            set_rng_state(saved_rng)
            state.parts.masker.load_state_dict(masker_state)
            wrapped.train()

    def on_train_end(self, state: TrainState) -> None:
        self._guarded("on_train_end", state)

    def _guarded(self, hook: str, state: TrainState) -> None:
        for callback in self.callbacks:
            try:
                getattr(callback, hook)(state)
            except Exception as exc:  # a picture or a tracker must never cost a run
                state.metrics.write({"type": "warning", "message": f"{type(callback).__name__} failed: {exc}"})
