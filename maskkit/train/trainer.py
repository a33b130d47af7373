"""The one training loop: any modality, any masker, CPU or CUDA, one process or torchrun (DDP/FSDP)."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from maskkit.maskers.base import TrainingProgress
from maskkit.safe_io import write_text
from maskkit.threads import configure_threads
from maskkit.train import distributed as dist_utils
from maskkit.train.build import RunParts, build_run
from maskkit.train.callbacks import Callback, CallbackList, StepResult, TrainState
from maskkit.train.cluster import settle_auto_resume
from maskkit.train.compat import run_settings, start_history
from maskkit.train.config import TrainConfig, check_min_lr
from maskkit.train.data import build_loader, build_train_sampler
from maskkit.train.init_weights import load_init_weights, read_init_weights
from maskkit.train.loop import EpochLoop, TrainingInterrupted
from maskkit.train.metrics import open_run_metrics
from maskkit.train.optim import TrainingStopped, build_optimizer, optimizer_step, param_groups
from maskkit.train.progress import TrainProgressBar
from maskkit.train.resume import resume, write_checkpoint
from maskkit.train.rundir import check_out_location, check_writable, owned, prepare_run_dir
from maskkit.train.runtime import (
    autocast,
    dist_info_from_env,
    precision_name,
    resolve_device,
    resolve_num_workers,
    resolve_precision,
    seed_everything,
    step_seed,
    tf32_for_fp32_runs,
)
from maskkit.train.schedule import scaled_lr
from maskkit.train.step import TrainingModule
from maskkit.train.step_callbacks import MaskDiagnostics, MaskerEvents, StepCheckpoints, StepLogging

__all__ = ["RunResult", "Trainer", "TrainingInterrupted", "TrainingStopped", "param_groups", "run_training"]


@dataclass
class RunResult:
    out_dir: Path
    epochs: int
    steps: int
    final_loss: float
    wall_time: float
    samples_seen: int


class Trainer(EpochLoop):
    """Pretraining: the MAE step inside the loop skeleton it shares with fine-tuning (``train.loop``)."""

    def __init__(self, config: TrainConfig, console: Any = None,
                 callbacks: Sequence[Callback] = ()) -> None:
        settle_auto_resume(config)
        self.config = config
        self.console = console
        self.dist = dist_info_from_env()
        self.callbacks = CallbackList(callbacks, is_main=self.dist.is_main)
        self.device = resolve_device(config.device, self.dist)
        self.amp_dtype = resolve_precision(config.precision, self.device)
        self.out = Path(config.out)
        self.epochs = config.epochs
        self.start_position()

    # ------------------------------------------------------------------ setup
    def setup(self) -> None:
        """Own and prepare the run directory, build the run's parts, then resume if asked."""
        cfg = self.config
        configure_threads(cfg.threads)
        dist_utils.init_process_group(self.dist, self.device)
        if self.dist.is_main:
            check_out_location(self.out, cfg.data)
            check_writable(self.out)
            moved = prepare_run_dir(self.out, cfg.resume, cfg.overwrite)
            if moved is not None:
                self._say(f"`overwrite`: moved the previous run in {self.out} to {moved}")
        seed_everything(cfg.seed)  # same seed -> same initial weights on every rank
        weights = read_init_weights(cfg)  # before building: they may need a learned position table
        self.parts: RunParts = build_run(cfg, with_data=True, train=True)
        if weights is not None:
            load_init_weights(self.parts.model, weights, self.out if self.dist.is_main else None, self.console)
        self.resolved = run_settings(self.parts.resolved())
        self.resolved["resolved_precision"] = precision_name(self.amp_dtype)
        self.history = start_history(self.resolved)
        self._build_module()
        self.effective_batch = cfg.batch_size * cfg.accum_steps * self.dist.world_size
        self.peak_lr = cfg.lr if cfg.lr is not None else scaled_lr(float(self.resolved["base_lr"]),
                                                                   self.effective_batch)
        check_min_lr(cfg.min_lr, self.peak_lr)
        self.optimizer, self.scaler = build_optimizer(self.wrapped, cfg, self.peak_lr, self.device, self.amp_dtype)
        self._group_loss = torch.zeros((), device=self.device)  # this accumulation group's loss
        assert self.parts.dataset is not None
        self.sampler = build_train_sampler(cfg, len(self.parts.dataset), self.dist, self.out)
        self.steps_per_epoch = self.sampler.batches_per_epoch
        self.opt_steps_per_epoch = math.ceil(self.steps_per_epoch / cfg.accum_steps)
        self.total_opt_steps = self.opt_steps_per_epoch * cfg.epochs
        self.warmup_opt_steps = cfg.warmup_epochs * self.opt_steps_per_epoch
        self.loader = None
        self.metrics = open_run_metrics(cfg, self.out, self.resolved, self.dist.is_main, self.console)
        self.start_position()
        self.global_step, self.opt_step = 0, 0  # batches seen (one mask draw each), optimiser steps
        self.samples_seen = 0
        if cfg.resume:
            resume(self)
        if self.dist.is_main:
            (self.out / "checkpoints").mkdir(parents=True, exist_ok=True)
            write_text(self.out / "config.json", json.dumps({**self.resolved, "history": self.history}, indent=2))

    def _build_module(self) -> None:
        """Model + masker + loss as one module, compiled and wrapped (DDP/FSDP) as the settings say."""
        cfg = self.config
        tf32_for_fp32_runs(self.device, self.amp_dtype)
        self.module = TrainingModule(self.parts.model, self.parts.masker, self.parts.loss,
                                     self.parts.mask_ratio).to(self.device)
        self.module.rank, self.module.world_size = self.dist.rank, self.dist.world_size
        per_block = cfg.compile and dist_utils.compiles_per_block(cfg.strategy, self.dist)
        if cfg.compile and not per_block:  # encoder + decoder + loss; the masker stays eager
            self.module.compile_reconstruction()
        self.wrapped = dist_utils.wrap(self.module, self.dist, self.device, cfg.strategy, self.amp_dtype)
        if per_block:  # after wrapping: graphs end where FSDP's hooks begin (see compile_blocks)
            dist_utils.compile_blocks(self.module)
        self.forward = self.wrapped

    def _say(self, message: str) -> None:
        if self.console is not None and self.dist.is_main:
            self.console.print(f"[yellow]warning:[/] {message}", highlight=False, soft_wrap=True)

    # ------------------------------------------------------------------ checkpoints
    def save(self, wall: float, periodic: bool = False) -> None:
        """``checkpoints/last.pt`` (and ``epoch_NNNN.pt`` when ``periodic``); every rank calls it."""
        write_checkpoint(self, wall, periodic)

    # ------------------------------------------------------------------ loop
    def train(self) -> RunResult:
        """Own the run directory (rank 0; released on any exit), then set up and train."""
        if self.dist.is_main:
            check_out_location(self.out, self.config.data)  # before the lock writes anything there
            check_writable(self.out)
        with owned(self.out, "train", enabled=self.dist.is_main):
            return self._train()

    def _train(self) -> RunResult:
        self.setup()
        try:
            last_loss = self.run_epochs(self.config.progress and self.dist.is_main, self.steps_per_epoch)
            wall = self.wall_time()
            if self.dist.is_main:
                self._finish(wall, last_loss)
            dist_utils.barrier(self.dist)
        finally:
            self.metrics.close()
            dist_utils.destroy_process_group()
        return RunResult(out_dir=self.out, epochs=self.epoch, steps=self.global_step, final_loss=last_loss,
                         wall_time=wall, samples_seen=self.samples_seen)

    def periodic_save(self) -> bool:
        return self.epoch % self.config.save_every == 0 or self.epoch == self.config.epochs

    def after_epoch(self) -> None:
        self.callbacks.on_epoch_end(self.state(self.epoch), self.wrapped)

    def train_epoch(self, bar: TrainProgressBar) -> float:
        """One epoch: the MAE step (mask, encode the visible tokens, decode, loss on the hidden ones) per
        batch, an optimiser step per accumulation group; logging, diagnostics and step checkpoints are
        the step callbacks'. Returns the epoch's mean reconstruction loss over every rank."""
        cfg = self.config
        loader = self._start_epoch()
        own = [StepLogging(self, bar), MaskDiagnostics(self), MaskerEvents(self), StepCheckpoints(self)]
        hooks = CallbackList([*own, *self.callbacks.callbacks], self.dist.is_main)
        hooks.on_epoch_start(self.state(self.epoch))
        generator = torch.Generator(device=self.device)
        host_generator = torch.Generator()  # host-side choices (mixture) without a device sync
        loss_sum, loss_count = torch.zeros((), device=self.device), 0
        bar.start_epoch(self.epoch, self.batch_in_epoch)
        for x, _labels in loader:
            x = x.to(self.device, non_blocking=True)
            micro = self.batch_in_epoch % cfg.accum_steps
            group = min(cfg.accum_steps, self.steps_per_epoch - (self.batch_in_epoch - micro))
            last_micro = micro == group - 1
            generator.manual_seed(step_seed(cfg.seed, self.global_step))  # same on every rank: see MaskContext.uniform
            host_generator.manual_seed(step_seed(cfg.seed, self.global_step))
            with dist_utils.maybe_no_sync(self.wrapped, enabled=not last_micro), \
                    autocast(self.device, self.amp_dtype):
                out = self.forward(x, generator, self.progress(), host_generator)
            self._backward(out.loss.float() / group, first=micro == 0)
            if last_micro:
                self._optimizer_step()
            loss_sum += out.recon_loss.detach().float()
            loss_count += 1
            self.global_step += 1
            self.batch_in_epoch += 1
            self.samples_seen += x.shape[0] * self.dist.world_size
            hooks.on_step_end(self.state(self.epoch), StepResult(out, x.shape[0], last_micro,
                                                                 self.optimizer.param_groups[0]["lr"]))
            if last_micro:
                self.stop_if_asked(self.global_step)
        mean = float(dist_utils.all_reduce_mean(loss_sum, self.dist)) / max(loss_count, 1)
        record = {"type": "epoch", "epoch": self.epoch, "step": self.global_step, "loss": mean,
                  "lr": self.optimizer.param_groups[0]["lr"], "samples_seen": self.samples_seen,
                  "wall_time": self.wall_time()}
        for hook in own:  # the trainer's own: every rank, each its share
            record.update(hook.epoch_metrics(self.state(self.epoch)))
        record.update(self.callbacks.epoch_metrics(self.state(self.epoch + 1), self.wrapped))
        self.metrics.write(record)
        return mean

    def _start_epoch(self) -> Any:
        """Data order and augmentation for this epoch (from where a resumed run stopped); the loader."""
        dataset = self.parts.dataset
        assert dataset is not None
        dataset.set_epoch(self.epoch)
        self.sampler.set_epoch(self.epoch, self.batch_in_epoch)
        if self.loader is None:  # built on first use; persistent workers live across epochs
            self.loader = build_loader(dataset, self.sampler,
                                       resolve_num_workers(self.config.num_workers, self.device, self.dist),
                                       pin_memory=self.device.type == "cuda")
        self.wrapped.train()
        return self.loader

    def progress(self) -> TrainingProgress:
        return TrainingProgress(epoch=self.epoch, step=self.global_step, epochs=self.config.epochs,
                                steps_per_epoch=self.steps_per_epoch)

    def _backward(self, loss: torch.Tensor, first: bool) -> None:
        self._group_loss = loss.detach() if first else self._group_loss + loss.detach()
        if self.scaler is not None:
            self.scaler.scale(loss).backward()
        else:
            loss.backward()

    def _optimizer_step(self) -> None:
        optimizer_step(self)

    def stop_requested(self) -> bool:
        """Whether to stop after this optimiser step, decided together: under torchrun a signal
        reaches the ranks at different moments, and checkpointing is a collective under FSDP, so
        every rank must stop at the same step (one small all-reduce per optimiser step, next to
        the non-finite check's sync)."""
        return dist_utils.any_rank(self._stop_signal is not None, self.dist, self.device)

    def resume_hint(self) -> str:
        return f"continue with `resume` `out` {self.out}"

    def state(self, epochs_done: int) -> TrainState:
        return TrainState(config=self.config, parts=self.parts, device=self.device, amp_dtype=self.amp_dtype,
                          out=self.out, epoch=epochs_done, step=self.global_step, distributed=self.dist.enabled,
                          metrics=self.metrics, steps_per_epoch=self.steps_per_epoch)

    def _finish(self, wall: float, last_loss: float) -> None:
        self.callbacks.on_train_end(self.state(self.epoch))
        summary = {"epochs": self.epoch, "steps": self.global_step, "samples_seen": self.samples_seen,
                   "final_loss": last_loss if math.isfinite(last_loss) else None,  # null, never NaN (not JSON)
                   "wall_time": wall, "effective_batch": self.effective_batch,
                   "peak_lr": self.peak_lr, "device": str(self.device),
                   "precision": str(self.amp_dtype or "fp32"), "world_size": self.dist.world_size}
        write_text(self.out / "summary.json", json.dumps(summary, indent=2))


def run_training(config: TrainConfig, console: Any = None, callbacks: Sequence[Callback] = ()) -> RunResult:
    """Train one run. ``callbacks`` add probes, pictures or trackers (``maskkit.lab.training`` has the
    standard ones that ``maskkit train`` uses)."""
    return Trainer(config, console=console, callbacks=callbacks).train()
