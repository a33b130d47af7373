"""The trainer's own per-step duties, as callbacks: windowed step logging, mask diagnostics, masker events,
step checkpoints.

They run on every rank (the logging window's all-reduce is a collective; so is a checkpoint under FSDP)
and read the ``Trainer`` they serve (typed ``Any``: importing it here would close an import cycle); the
step loop itself only calls ``on_step_end``.
"""

from __future__ import annotations

import time
from typing import Any

import torch

from maskkit.maskers.stats import PositionFrequency, mask_statistics
from maskkit.train import distributed as dist_utils
from maskkit.train.callbacks import Callback, StepResult, TrainState
from maskkit.train.metrics import to_float
from maskkit.train.progress import TrainProgressBar


class StepLogging(Callback):
    """Every ``log_every`` batches (and at an epoch's last): a ``step`` line of metrics.jsonl with the window's
    loss and the masker's scalars averaged over every rank (one all-reduce: the logging sync), the mask
    statistics of the last batch, and the progress bar; over the epoch, the masker's scalar means."""

    def __init__(self, trainer: Any, bar: TrainProgressBar) -> None:
        self.trainer, self.bar = trainer, bar
        self.log_sums: dict[str, torch.Tensor] = {}
        self.log_counts: dict[str, int] = {}  # keys logged on some steps only
        self._reset_window()

    def _reset_window(self) -> None:
        self.window_loss = torch.zeros((), device=self.trainer.device)
        self.window_n, self.window_t0 = 0, time.perf_counter()

    def on_step_end(self, state: TrainState, step: StepResult) -> None:
        out, t = step.output, self.trainer
        self.window_loss += out.recon_loss.detach().float()
        self.window_n += 1
        for key, value in out.logs.items():
            if isinstance(value, torch.Tensor) and value.numel() == 1:
                self.log_sums[key] = self.log_sums.get(key, 0) + value.detach().float()
                self.log_counts[key] = self.log_counts.get(key, 0) + 1
        if self.window_n >= t.config.log_every or t.batch_in_epoch == t.steps_per_epoch:
            self._write(state, step)

    def _write(self, state: TrainState, step: StepResult) -> None:
        out, t = step.output, self.trainer
        elapsed = max(time.perf_counter() - self.window_t0, 1e-9)
        scalars = {k: v.detach().float().reshape(()) for k, v in out.logs.items()
                   if isinstance(v, torch.Tensor) and v.numel() == 1}
        reduced = dist_utils.all_reduce_mean(torch.stack([self.window_loss / self.window_n, *scalars.values()]),
                                             t.dist).tolist()
        rate = self.window_n * step.batch_size * t.dist.world_size / elapsed
        record = {"type": "step", "epoch": t.epoch, "step": t.global_step, "loss": reduced[0], "lr": step.lr,
                  "samples_per_s": rate}
        record.update({f"masker/{k}": v for k, v in zip(scalars, reduced[1:], strict=True)})
        stats = mask_statistics(out.plan, t.parts.model.tokenizer.layout, out.tokens.batched_positions())
        record.update({f"mask/{k}": to_float(v) for k, v in stats.items()})
        t.metrics.write(record)
        self.bar.update(t.batch_in_epoch, loss=reduced[0], lr=step.lr, rate=rate)
        self._reset_window()

    def epoch_metrics(self, state: TrainState) -> dict[str, float]:
        return {f"masker/{k}": float(v) / max(self.log_counts[k], 1) for k, v in self.log_sums.items()}


class MaskDiagnostics(Callback):
    """How often each position is hidden over the epoch; warns when an informed masker's masks follow
    position rather than content (``mask/collapse``)."""

    def __init__(self, trainer: Any) -> None:
        self.trainer = trainer
        self.frequency = PositionFrequency(trainer.parts.model.tokenizer.layout.num_tokens)

    def on_step_end(self, state: TrainState, step: StepResult) -> None:
        self.frequency.update(step.output.plan)

    def epoch_metrics(self, state: TrainState) -> dict[str, Any]:
        frequency, t = self.frequency, self.trainer
        if frequency.samples == 0:
            return {}
        verdict = frequency.verdict()
        out: dict[str, Any] = {
            "mask/ratio": float(frequency.ratio()), "mask/position_sd": verdict.position_sd,
            "mask/position_sd_random": verdict.position_sd_floor, "mask/iou": verdict.iou,
            "mask/iou_random": verdict.iou_random, "mask/collapse": verdict.level,
            "mask/position_frequency": [round(v, 4) for v in frequency.frequency().cpu().tolist()],
        }
        informed = t.config.masker != "random"
        if informed and verdict.level != "ok":
            message = f"masker {t.config.masker!r}, epoch {t.epoch}: {verdict.message}"
            t.metrics.write({"type": "warning", "epoch": t.epoch, "message": message})
            if t.console is not None and t.dist.is_main:
                t.console.print(f"[yellow]warning:[/] {message}")
        return out


class MaskerEvents(Callback):
    """What the masker reports after each step (e.g. self-guided's ``informed_start``, with its reason and
    step) as ``{"type": "event", ...}`` lines of metrics.jsonl. Every rank pops them; the main rank writes."""

    def __init__(self, trainer: Any) -> None:
        self.trainer = trainer

    def on_step_end(self, state: TrainState, step: StepResult) -> None:
        for event in self.trainer.parts.masker.pop_events():
            self.trainer.metrics.write({"type": "event", **event})


class StepCheckpoints(Callback):
    """``save_every_steps``: a checkpoint after every n-th batch that closes an optimiser step (the epoch's
    end is saved by the loop itself)."""

    def __init__(self, trainer: Any) -> None:
        self.trainer = trainer

    def on_step_end(self, state: TrainState, step: StepResult) -> None:
        t = self.trainer
        every = t.config.save_every_steps
        if (every and t.global_step % every == 0 and t.batch_in_epoch < t.steps_per_epoch
                and step.optimizer_stepped):
            t.save(t.wall_time())
