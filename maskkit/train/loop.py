"""The loop skeleton that pretraining and fine-tuning share.

Both loops are "epochs of steps, a checkpoint after each epoch, stop cleanly on a signal, continue
exactly where a checkpoint left off". What differs is the step and what a checkpoint holds, so a loop
provides ``train_epoch`` and ``save``; this class owns the rest: the stop signals (SIGINT, SIGTERM and
SLURM's SIGUSR1, with the exit code each asks for), the progress bar, the epoch counter and the position
inside an epoch, the wall time carried across resumes, the checkpoint after every epoch, and the
save-then-raise on a signal. Loading a checkpoint is :func:`maskkit.train.checkpoint.load_checkpoint`
for both (verified checksum, no pickled code); each loop restores its own fields from it.
"""

from __future__ import annotations

import math
import time
from abc import ABC, abstractmethod
from typing import Any

from maskkit.train.cluster import interrupt_exit_code
from maskkit.train.progress import TrainProgressBar
from maskkit.train.signals import catch_stop_signals, restore_signals


class TrainingInterrupted(RuntimeError):
    """SIGINT/SIGTERM/SIGUSR1: a checkpoint was saved; ``resume`` continues from it."""

    def __init__(self, message: str, exit_code: int = 130) -> None:
        super().__init__(message)
        self.exit_code = exit_code  # what the CLI exits with (75 after SIGUSR1: requeue me)


class EpochLoop(ABC):
    """Epochs of steps with a checkpoint after each epoch and a clean stop on a signal.

    A subclass sets ``console`` and ``epochs``, provides :meth:`train_epoch` (calling
    :meth:`stop_if_asked` after each optimiser step) and :meth:`save`, and may override
    :meth:`after_epoch`, :meth:`stop_requested` (e.g. an all-reduce under torchrun) and
    :meth:`resume_hint`.
    """

    console: Any = None
    epochs: int = 0
    #: the exception a signal raises (a subclass of :class:`TrainingInterrupted`)
    interrupted: type[TrainingInterrupted] = TrainingInterrupted

    def start_position(self) -> None:
        """Epoch 0, step 0 of the epoch, no wall time yet (a resume then overwrites them)."""
        self.epoch = 0
        self.batch_in_epoch = 0
        self.wall_time_before = 0.0
        self._stop_signal: int | None = None
        self._start = time.perf_counter()

    # ------------------------------------------------------------------ what a loop provides
    @abstractmethod
    def train_epoch(self, bar: TrainProgressBar) -> float:
        """One epoch from ``batch_in_epoch`` on; the epoch's mean loss."""

    @abstractmethod
    def save(self, wall: float, periodic: bool = False) -> None:
        """Write the loop's checkpoint (``periodic``: also keep a numbered copy)."""

    def periodic_save(self) -> bool:
        """Whether the checkpoint after the epoch just ended is also kept as a numbered copy."""
        return False

    def after_epoch(self) -> None:  # noqa: B027 (an optional hook: most loops need nothing here)
        """After the epoch's checkpoint (callbacks, evaluation records)."""

    def stop_requested(self) -> bool:
        return self._stop_signal is not None

    def resume_hint(self) -> str:
        return "continue with `resume`"

    # ------------------------------------------------------------------ the skeleton
    def run_epochs(self, show_progress: bool, steps_per_epoch: int) -> float:
        """Train from the current position to ``epochs``; the last epoch's loss (NaN if none ran)."""
        self._stop_signal = None
        previous = catch_stop_signals(self._on_stop_signal)
        bar = TrainProgressBar(enabled=show_progress, console=self.console, epochs=self.epochs,
                               steps_per_epoch=steps_per_epoch)
        self._start = time.perf_counter()
        last_loss = math.nan
        try:
            with bar:
                while self.epoch < self.epochs:
                    last_loss = self.train_epoch(bar)
                    self.epoch += 1
                    self.batch_in_epoch = 0
                    self.save(self.wall_time(), periodic=self.periodic_save())
                    self.after_epoch()
        finally:
            restore_signals(previous)
        return last_loss

    def wall_time(self) -> float:
        """Seconds trained: this process's since the loop started, plus what the resumed run had."""
        return self.wall_time_before + time.perf_counter() - self._start

    def stop_if_asked(self, step: int) -> None:
        """After an optimiser step: if a stop signal came, save a checkpoint and raise ``interrupted``."""
        if not self.stop_requested():
            return
        self.save(self.wall_time())
        raise self.interrupted(
            f"stopped by signal {self._stop_signal or 'on another rank'} at epoch {self.epoch} step {step}; "
            f"checkpoint saved, {self.resume_hint()}", exit_code=interrupt_exit_code(self._stop_signal))

    def _on_stop_signal(self, signum: int) -> None:
        self._stop_signal = signum


__all__ = ["EpochLoop", "TrainingInterrupted"]
