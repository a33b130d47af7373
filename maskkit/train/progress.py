"""Rich progress bar for training: epoch, step, loss, lr and samples/s."""

from __future__ import annotations

import time
from typing import Any

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn


class TrainProgressBar:
    def __init__(self, enabled: bool, console: Any, epochs: int, steps_per_epoch: int) -> None:
        self.enabled = enabled
        self.epochs = epochs
        self.steps_per_epoch = steps_per_epoch
        self.progress: Progress | None = None
        self.task: Any = None
        if enabled:
            self.progress = Progress(
                TextColumn("[bold]epoch {task.fields[epoch]}/{task.fields[epochs]}"),
                BarColumn(), MofNCompleteColumn(),
                TextColumn("loss {task.fields[loss]:.4f}  lr {task.fields[lr]:.2e}  {task.fields[rate]:.0f} samples/s"),
                TimeElapsedColumn(), TimeRemainingColumn(), console=console, transient=False)

    def __enter__(self) -> TrainProgressBar:
        if self.progress is not None:
            self.progress.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.progress is not None:
            self.progress.__exit__(*exc)  # type: ignore[arg-type]

    def start_epoch(self, epoch: int, completed: int = 0) -> None:
        if self.progress is None:
            return
        if self.task is not None:
            self.progress.remove_task(self.task)
        self.task = self.progress.add_task("train", total=self.steps_per_epoch, completed=completed,
                                           epoch=epoch + 1, epochs=self.epochs, loss=float("nan"),
                                           lr=0.0, rate=0.0)

    def update(self, completed: int, loss: float, lr: float, rate: float) -> None:
        if self.progress is None or self.task is None:
            return
        self.progress.update(self.task, completed=completed, loss=loss, lr=lr, rate=rate)


class SampleRate:
    """Samples per second since the epoch (re)started, for the progress bar."""

    def __init__(self) -> None:
        self.start, self.seen = time.perf_counter(), 0

    def add(self, samples: int) -> float:
        self.seen += samples
        return self.seen / max(time.perf_counter() - self.start, 1e-9)
