"""The one training loop: any modality, any masker, CPU or CUDA, one process or torchrun (DDP/FSDP)."""

from __future__ import annotations

import copy
import json
import math
import signal
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from maskkit.config_utils import ConfigError
from maskkit.interop.weights import init_model_options, load_into, read_weights
from maskkit.maskers.base import TrainingProgress
from maskkit.maskers.stats import PositionFrequency, mask_statistics
from maskkit.threads import configure_threads, oversubscription
from maskkit.train import distributed as dist_utils
from maskkit.train.build import RunParts, build_run
from maskkit.train.callbacks import Callback, TrainState
from maskkit.train.checkpoint import (
    FORMAT,
    VERSION,
    CheckpointError,
    atomic_save,
    candidates_newest_first,
    newest_intact,
    prune_checkpoints,
    rng_state,
    set_rng_state,
)
from maskkit.train.compat import check_resume, resume_entry, run_settings, start_history
from maskkit.train.config import TrainConfig
from maskkit.train.data import EpochOrderSampler, build_loader, holdout_split
from maskkit.train.loggers import build_loggers
from maskkit.train.metrics import MetricsLog, to_float
from maskkit.train.progress import TrainProgressBar
from maskkit.train.rundir import owned, prepare_run_dir
from maskkit.train.runtime import (
    autocast,
    dist_info_from_env,
    precision_name,
    resolve_device,
    resolve_num_workers,
    resolve_precision,
    seed_everything,
    step_seed,
)
from maskkit.train.schedule import lr_at, scaled_lr
from maskkit.train.step import TrainingModule


class TrainingStopped(RuntimeError):
    """Raised when the run stops on purpose (non-finite loss with on_nonfinite=stop)."""


class TrainingInterrupted(RuntimeError):
    """SIGINT/SIGTERM: a checkpoint was saved; ``resume`` continues from it."""


@dataclass
class RunResult:
    out_dir: Path
    epochs: int
    steps: int
    final_loss: float
    wall_time: float
    samples_seen: int


def param_groups(module: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """No weight decay on biases, norms, tokens and position tables (as MAE does)."""
    decay, no_decay = [], []
    for name, p in module.named_parameters():
        if not p.requires_grad:
            continue
        if p.ndim <= 1 or name.endswith(("cls_token", "mask_token")) or "pos" in name.split(".")[-1] \
                or name.endswith("_pos.table"):
            no_decay.append(p)
        else:
            decay.append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def check_writable(out: Path) -> None:
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".write-test"
        probe.write_text("ok")
        probe.unlink()
    except OSError as exc:
        raise ConfigError(f"`out` {out}: cannot write there ({exc.strerror or exc})") from None


class Trainer:
    def __init__(self, config: TrainConfig, console: Any = None,
                 callbacks: Sequence[Callback] = ()) -> None:
        self.config = config
        self.console = console
        self.callbacks = list(callbacks)
        self.dist = dist_info_from_env()
        self.device = resolve_device(config.device, self.dist)
        self.amp_dtype = resolve_precision(config.precision, self.device)
        self.out = Path(config.out)
        self._stop_signal: int | None = None

    # ------------------------------------------------------------------ setup
    def setup(self) -> None:
        cfg = self.config
        configure_threads(cfg.threads)
        dist_utils.init_process_group(self.dist, self.device)
        if self.dist.is_main:
            check_writable(self.out)
            moved = prepare_run_dir(self.out, cfg.resume, cfg.overwrite)
            if moved is not None:
                self._say(f"`overwrite`: moved the previous run in {self.out} to {moved}")
        seed_everything(cfg.seed)  # same seed -> same initial weights on every rank
        weights = self._init_weights_source()
        self.parts: RunParts = build_run(cfg, with_data=True, train=True)
        if weights is not None:
            self._load_init_weights(weights)
        self.resolved = run_settings(self.parts.resolved())
        self.resolved["resolved_precision"] = precision_name(self.amp_dtype)
        self.history = start_history(self.resolved)
        if self.device.type == "cuda" and self.amp_dtype is None:
            torch.set_float32_matmul_precision("high")  # TF32 tensor cores for fp32 runs
        self.module = TrainingModule(self.parts.model, self.parts.masker, self.parts.loss,
                                     self.parts.mask_ratio).to(self.device)
        self.module.rank, self.module.world_size = self.dist.rank, self.dist.world_size
        if cfg.compile:  # encoder + decoder + loss; the masker stays eager (see compile_reconstruction)
            self.module.compile_reconstruction()
        self.wrapped = dist_utils.wrap(self.module, self.dist, self.device, cfg.strategy, self.amp_dtype)
        self.forward = self.wrapped
        effective_batch = cfg.batch_size * cfg.accum_steps * self.dist.world_size
        self.peak_lr = cfg.lr if cfg.lr is not None else scaled_lr(float(self.resolved["base_lr"]), effective_batch)
        self.effective_batch = effective_batch
        fused = self.device.type == "cuda" and cfg.strategy != "fsdp"
        self.optimizer = torch.optim.AdamW(param_groups(self.wrapped, cfg.weight_decay), lr=self.peak_lr,
                                           betas=cfg.betas, fused=fused or None, foreach=None if fused else True)
        self.scaler = torch.amp.GradScaler(self.device.type) if self.amp_dtype == torch.float16 else None
        self._group_loss = torch.zeros((), device=self.device)  # this accumulation group's loss
        assert self.parts.dataset is not None
        train_idx, held = holdout_split(len(self.parts.dataset), cfg.holdout_fraction)
        self.sampler = EpochOrderSampler(len(self.parts.dataset), cfg.batch_size, cfg.seed,
                                         self.dist.rank, self.dist.world_size, cfg.max_steps_per_epoch,
                                         indices=train_idx if len(held) else None)
        if len(held) and self.dist.is_main:
            self.out.mkdir(parents=True, exist_ok=True)
            (self.out / "holdout.json").write_text(json.dumps(
                {"num_samples": len(self.parts.dataset), "fraction": cfg.holdout_fraction,
                 "indices": held.tolist()}))
        self.steps_per_epoch = self.sampler.batches_per_epoch
        self.opt_steps_per_epoch = math.ceil(self.steps_per_epoch / cfg.accum_steps)
        self.total_opt_steps = self.opt_steps_per_epoch * cfg.epochs
        self.warmup_opt_steps = cfg.warmup_epochs * self.opt_steps_per_epoch
        self.loader = None  # built on first use; persistent workers live across epochs
        sinks = []
        if self.dist.is_main and cfg.logger:
            sinks = build_loggers(cfg.logger, self.out, self.resolved)
        self.metrics = MetricsLog(self.out / "metrics.jsonl", enabled=self.dist.is_main, sinks=sinks)
        crowded = oversubscription()
        if crowded and self.dist.is_main:
            self.metrics.write({"type": "warning", "message": crowded})
            if self.console is not None:
                self.console.print(f"[yellow]warning:[/] {crowded}")
        self.epoch = 0
        self.batch_in_epoch = 0
        self.global_step = 0  # batches seen (one mask draw each)
        self.opt_step = 0
        self.samples_seen = 0
        self.wall_time_before = 0.0
        if cfg.resume:
            self._resume()
        if self.dist.is_main:
            (self.out / "checkpoints").mkdir(parents=True, exist_ok=True)
            (self.out / "config.json").write_text(json.dumps({**self.resolved, "history": self.history},
                                                             indent=2))

    def _say(self, message: str) -> None:
        if self.console is not None and self.dist.is_main:
            self.console.print(f"[yellow]warning:[/] {message}", highlight=False, soft_wrap=True)

    def _init_weights_source(self) -> Any:
        """``init_from``: read the weights first (they may need a learned position table)."""
        cfg = self.config
        if not cfg.init_from or cfg.resume:  # a resumed run's checkpoint already holds them
            return None

        weights = read_weights(cfg.init_from)
        cfg.model_options = init_model_options(weights, cfg.model_options)
        return weights

    def _load_init_weights(self, weights: Any) -> None:
        report = load_into(self.parts.model, weights)
        if self.dist.is_main:
            self.out.mkdir(parents=True, exist_ok=True)
            (self.out / "init_report.json").write_text(json.dumps(report.to_dict(), indent=1))
            if self.console is not None:
                self.console.print(report.summary())

    def _resume(self) -> None:
        if not candidates_newest_first(self.out):
            path = self.out / "checkpoints" / "last.pt"
            raise CheckpointError(f"`resume`: {path} does not exist (nothing to resume in {self.out})")
        found = newest_intact(self.out, load=True, warn=None)  # every rank picks the same file
        ckpt = found.checkpoint
        assert ckpt is not None
        changes = check_resume(ckpt["config"], self.resolved, self.config.allow_config_change)
        if found.damaged:
            message = found.warning()
            self._say(f"`resume`: {message}")
            self.metrics.write({"type": "warning", "message": message})
        try:  # shapes were checked above; what can still differ is the masker's state under new options
            dist_utils.load_full_state(self.wrapped, self.module, self.optimizer, ckpt["model"], ckpt["masker"],
                                       ckpt["optimizer"])
        except (RuntimeError, KeyError, ValueError) as exc:
            raise CheckpointError(f"`resume`: the saved state does not fit the new settings "
                                  f"({str(exc).splitlines()[0][:200]})") from None
        if self.scaler is not None and ckpt.get("scaler"):
            self.scaler.load_state_dict(ckpt["scaler"])
        pos = ckpt["position"]
        self.epoch, self.batch_in_epoch = int(pos["epoch"]), int(pos["batch_in_epoch"])
        self.global_step, self.opt_step = int(pos["global_step"]), int(pos["opt_step"])
        self.samples_seen = int(pos.get("samples_seen", 0))
        self.wall_time_before = float(pos.get("wall_time", 0.0))
        if self.dist.world_size == int(pos.get("world_size", 1)):
            set_rng_state(ckpt["rng"])
        self.metrics.write({"type": "resume", "epoch": self.epoch, "step": self.global_step,
                            "checkpoint": found.path.name})
        if changes:
            listed = ", ".join(f"{k} {v['from']!r} -> {v['to']!r}" for k, v in changes.items())
            self._say(f"`allow_config_change`: from step {self.global_step} on, {listed}")
            self.metrics.write({"type": "config_change", "epoch": self.epoch, "step": self.global_step,
                                "changes": changes})
        self.history = list(ckpt.get("history") or start_history(run_settings(ckpt["config"])))
        self.history.append(resume_entry(self.epoch, self.global_step, found.path.name,
                                         [f"{s.path.name}: {s.reason}" for s in found.damaged], changes))

    # ------------------------------------------------------------------ checkpoints
    def _checkpoint_dict(self, wall: float) -> dict[str, Any]:
        main = self.dist.is_main
        return {
            "format": FORMAT, "version": VERSION,
            "model": dist_utils.full_state_dict(self.wrapped, self.parts.model, "model", main),
            "masker": dist_utils.full_state_dict(self.wrapped, self.parts.masker, "masker", main),
            "optimizer": dist_utils.optimizer_state(self.wrapped, self.optimizer, main),
            "scaler": self.scaler.state_dict() if self.scaler is not None else {},
            "config": self.resolved,
            "position": {"epoch": self.epoch, "batch_in_epoch": self.batch_in_epoch,
                         "global_step": self.global_step, "opt_step": self.opt_step,
                         "samples_seen": self.samples_seen, "wall_time": wall,
                         "world_size": self.dist.world_size},
            "rng": rng_state(),
            "history": self.history,
        }

    def save(self, wall: float, periodic: bool = False) -> None:
        state = self._checkpoint_dict(wall)  # collective under FSDP: every rank calls it
        if not self.dist.is_main:
            return
        bad = [k for k, v in state["model"].items() if v.is_floating_point() and not torch.isfinite(v).all()]
        if bad:
            raise TrainingStopped(f"refusing to save non-finite weights ({bad[0]}); last good checkpoint kept")
        ckdir = self.out / "checkpoints"
        atomic_save(state, ckdir / "last.pt")
        if periodic:
            atomic_save(state, ckdir / f"epoch_{self.epoch:04d}.pt")
            prune_checkpoints(self.out, self.config.keep_checkpoints)

    # ------------------------------------------------------------------ loop
    def _install_signal_handlers(self) -> dict[int, Any]:
        previous = {}

        def handler(signum: int, frame: Any) -> None:  # noqa: ARG001
            self._stop_signal = signum

        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                previous[sig] = signal.signal(sig, handler)
            except ValueError:  # not the main thread (e.g. inside a test runner thread)
                pass
        return previous

    def train(self) -> RunResult:
        """Own the run directory (rank 0; released on any exit), then set up and train."""
        if self.dist.is_main:
            check_writable(self.out)
        with owned(self.out, "train", enabled=self.dist.is_main):
            return self._train()

    def _train(self) -> RunResult:
        self.setup()
        cfg = self.config
        previous = self._install_signal_handlers()
        bar = TrainProgressBar(enabled=cfg.progress and self.dist.is_main, console=self.console,
                               epochs=cfg.epochs, steps_per_epoch=self.steps_per_epoch)
        start = time.perf_counter()
        last_loss = float("nan")
        try:
            with bar:
                while self.epoch < cfg.epochs:
                    last_loss = self._train_epoch(bar, start)
                    self.epoch += 1
                    self.batch_in_epoch = 0
                    wall = self.wall_time_before + time.perf_counter() - start
                    self.save(wall, periodic=(self.epoch % cfg.save_every == 0 or self.epoch == cfg.epochs))
                    self._epoch_end_callbacks()
            wall = self.wall_time_before + time.perf_counter() - start
            if self.dist.is_main:
                self._finish(wall, last_loss)
            dist_utils.barrier(self.dist)
        finally:
            for sig, prev in previous.items():
                signal.signal(sig, prev)
            self.metrics.close()
            dist_utils.destroy_process_group()
        return RunResult(out_dir=self.out, epochs=self.epoch, steps=self.global_step, final_loss=last_loss,
                         wall_time=wall, samples_seen=self.samples_seen)

    def _train_epoch(self, bar: TrainProgressBar, start: float) -> float:
        cfg = self.config
        dataset = self.parts.dataset
        assert dataset is not None
        dataset.set_epoch(self.epoch)
        progress = TrainingProgress(epoch=self.epoch, step=self.global_step, epochs=cfg.epochs,
                                    steps_per_epoch=self.steps_per_epoch)
        self.parts.masker.on_epoch_start(progress)
        self.sampler.set_epoch(self.epoch, self.batch_in_epoch)
        if self.loader is None:
            self.loader = build_loader(dataset, self.sampler,
                                      resolve_num_workers(cfg.num_workers, self.device, self.dist),
                                      pin_memory=self.device.type == "cuda")
        loader = self.loader
        self.wrapped.train()
        generator = torch.Generator(device=self.device)
        host_generator = torch.Generator()  # host-side choices (mixture) without a device sync
        loss_sum = torch.zeros((), device=self.device)
        loss_count = 0
        window_loss = torch.zeros((), device=self.device)
        window_n, window_t0 = 0, time.perf_counter()
        log_sums: dict[str, torch.Tensor] = {}
        log_counts: dict[str, int] = {}
        layout = self.parts.model.tokenizer.layout
        frequency = PositionFrequency(layout.num_tokens)
        bar.start_epoch(self.epoch, self.batch_in_epoch)
        for x, _labels in loader:
            x = x.to(self.device, non_blocking=True)
            micro = self.batch_in_epoch % cfg.accum_steps
            group = min(cfg.accum_steps, self.steps_per_epoch - (self.batch_in_epoch - micro))
            last_micro = micro == group - 1
            generator.manual_seed(step_seed(cfg.seed, self.global_step))  # same on every rank: see MaskContext.uniform
            host_generator.manual_seed(step_seed(cfg.seed, self.global_step))
            progress = TrainingProgress(epoch=self.epoch, step=self.global_step, epochs=cfg.epochs,
                                        steps_per_epoch=self.steps_per_epoch)
            with dist_utils.maybe_no_sync(self.wrapped, enabled=not last_micro), \
                    autocast(self.device, self.amp_dtype):
                out = self.forward(x, generator, progress, host_generator)
            loss = out.loss.float() / group
            self._group_loss = loss.detach() if micro == 0 else self._group_loss + loss.detach()
            if self.scaler is not None:
                self.scaler.scale(loss).backward()
            else:
                loss.backward()
            if last_micro:
                self._optimizer_step()
            self.parts.masker.on_step_end(None, out.per_token.detach())  # type: ignore[arg-type]
            detached = out.recon_loss.detach().float()
            loss_sum += detached
            window_loss += detached
            loss_count += 1
            window_n += 1
            frequency.update(out.plan)
            for key, value in out.logs.items():
                if isinstance(value, torch.Tensor) and value.numel() == 1:
                    log_sums[key] = log_sums.get(key, 0) + value.detach().float()
                    log_counts[key] = log_counts.get(key, 0) + 1  # keys logged on some steps only
            self.global_step += 1
            self.batch_in_epoch += 1
            self.samples_seen += x.shape[0] * self.dist.world_size
            if window_n >= cfg.log_every or self.batch_in_epoch == self.steps_per_epoch:
                elapsed = max(time.perf_counter() - window_t0, 1e-9)
                scalars = {k: v.detach().float().reshape(()) for k, v in out.logs.items()
                           if isinstance(v, torch.Tensor) and v.numel() == 1}
                # every rank's mean, not rank 0's shard: one all-reduce for the loss and the logs
                reduced = dist_utils.all_reduce_mean(torch.stack([window_loss / window_n, *scalars.values()]),
                                                     self.dist).tolist()  # the logging sync
                mean_loss = reduced[0]
                rate = window_n * x.shape[0] * self.dist.world_size / elapsed
                record = {"type": "step", "epoch": self.epoch, "step": self.global_step,
                          "loss": mean_loss, "lr": self.optimizer.param_groups[0]["lr"],
                          "samples_per_s": rate}
                record.update({f"masker/{k}": v for k, v in zip(scalars, reduced[1:], strict=True)})
                stats = mask_statistics(out.plan, layout, out.tokens.batched_positions())
                record.update({f"mask/{k}": to_float(v) for k, v in stats.items()})
                self.metrics.write(record)
                bar.update(self.batch_in_epoch, loss=mean_loss, lr=record["lr"], rate=rate)
                window_loss = torch.zeros((), device=self.device)
                window_n, window_t0 = 0, time.perf_counter()
            if (cfg.save_every_steps and self.global_step % cfg.save_every_steps == 0
                    and self.batch_in_epoch < self.steps_per_epoch and last_micro):
                self.save(self.wall_time_before + time.perf_counter() - start)
            if last_micro and self._should_stop():
                wall = self.wall_time_before + time.perf_counter() - start
                self.save(wall)
                raise TrainingInterrupted(
                    f"stopped by signal {self._stop_signal or 'on another rank'} at epoch {self.epoch} "
                    f"step {self.global_step}; checkpoint saved, continue with `resume` `out` {self.out}")
        mean = float(dist_utils.all_reduce_mean(loss_sum, self.dist)) / max(loss_count, 1)
        record = {"type": "epoch", "epoch": self.epoch, "step": self.global_step, "loss": mean,
                  "lr": self.optimizer.param_groups[0]["lr"], "samples_seen": self.samples_seen,
                  "wall_time": self.wall_time_before + time.perf_counter() - start}
        record.update({f"masker/{k}": float(v) / max(log_counts[k], 1) for k, v in log_sums.items()})
        record.update(self._mask_diagnostics(frequency, layout))
        record.update(self._callback_metrics())
        self.metrics.write(record)
        return mean

    def _should_stop(self) -> bool:
        """Whether to stop after this optimiser step, decided together: under torchrun a signal
        reaches the ranks at different moments, and checkpointing is a collective under FSDP, so
        every rank must stop at the same step (one small all-reduce per optimiser step, next to
        the non-finite check's sync)."""
        return dist_utils.any_rank(self._stop_signal is not None, self.dist, self.device)

    def _mask_diagnostics(self, frequency: PositionFrequency, layout: Any) -> dict[str, Any]:
        """Per-epoch masker diagnostics; warns when an informed masker's masks follow position."""
        if frequency.samples == 0:
            return {}
        verdict = frequency.verdict()
        out: dict[str, Any] = {
            "mask/ratio": float(frequency.ratio()), "mask/position_sd": verdict.position_sd,
            "mask/position_sd_random": verdict.position_sd_floor, "mask/iou": verdict.iou,
            "mask/iou_random": verdict.iou_random, "mask/collapse": verdict.level,
            "mask/position_frequency": [round(v, 4) for v in frequency.frequency().cpu().tolist()],
        }
        informed = self.config.masker != "random"
        if informed and verdict.level != "ok":
            message = f"masker {self.config.masker!r}, epoch {self.epoch}: {verdict.message}"
            self.metrics.write({"type": "warning", "epoch": self.epoch, "message": message})
            if self.console is not None and self.dist.is_main:
                self.console.print(f"[yellow]warning:[/] {message}")
        return out

    def state(self, epochs_done: int) -> TrainState:
        return TrainState(config=self.config, parts=self.parts, device=self.device, amp_dtype=self.amp_dtype,
                          out=self.out, epoch=epochs_done, step=self.global_step, distributed=self.dist.enabled,
                          metrics=self.metrics, steps_per_epoch=self.steps_per_epoch)

    def _callback_metrics(self) -> dict[str, float]:
        """Callbacks' epoch scalars. Under FSDP every rank runs them with the parameters gathered (a
        collective); otherwise only the writer does. The writer's values are kept."""
        sharded = dist_utils.is_fsdp(self.wrapped)
        if not self.callbacks or not (self.dist.is_main or sharded):
            return {}
        out: dict[str, float] = {}
        state = self.state(self.epoch + 1)  # called as the epoch closes, before the counter moves
        with dist_utils.unsharded(self.wrapped):
            for callback in self.callbacks:
                out.update(callback.epoch_metrics(state))
        return out if self.dist.is_main else {}

    def _epoch_end_callbacks(self) -> None:
        """Callbacks after an epoch's checkpoint, on the writer. RNG and masker states are restored
        afterwards, so a run with epoch pictures trains exactly as one without (and resumes
        bit-identically)."""
        if not self.dist.is_main or not self.callbacks:
            return
        saved_rng = rng_state()
        masker_state = copy.deepcopy(self.parts.masker.state_dict())
        state = self.state(self.epoch)
        try:
            for callback in self.callbacks:
                try:
                    callback.on_epoch_end(state)
                except Exception as exc:  # a picture or a tracker must never cost a run
                    self.metrics.write({"type": "warning", "message": f"{type(callback).__name__} failed: {exc}"})
        finally:
            set_rng_state(saved_rng)
            self.parts.masker.load_state_dict(masker_state)
            self.wrapped.train()

    def _optimizer_step(self) -> None:
        cfg = self.config
        lr = lr_at(self.opt_step, self.total_opt_steps, self.warmup_opt_steps, self.peak_lr, cfg.min_lr)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        if self.scaler is not None:
            self.scaler.unscale_(self.optimizer)
        params = [p for g in self.optimizer.param_groups for p in g["params"] if p.grad is not None]
        max_norm = cfg.clip_grad if cfg.clip_grad is not None else float("inf")
        grad_norm = torch.nn.utils.clip_grad_norm_(params, max_norm)
        # the one deliberate host sync per optimiser step: a non-finite step must never be applied.
        # With fp16's GradScaler, inf/NaN gradients from a finite loss are the scaler's overflow
        # (it skips that step and lowers the scale): only a non-finite *loss* is a real failure
        # there. The loss is reduced over ranks so every rank takes the same branch.
        if self.scaler is not None:
            group_loss = dist_utils.all_reduce_mean(self._group_loss, self.dist)
            finite = bool(torch.isfinite(group_loss))
        else:
            finite = bool(torch.isfinite(grad_norm))
        if not finite:
            self.metrics.write({"type": "nonfinite", "epoch": self.epoch, "step": self.global_step,
                                "policy": cfg.on_nonfinite})
            self.optimizer.zero_grad(set_to_none=True)
            if self.scaler is not None:
                self.scaler.update()
            if cfg.on_nonfinite == "stop":
                raise TrainingStopped(f"non-finite loss or gradient at epoch {self.epoch} step {self.global_step}; "
                                      f"stopped (last good checkpoint kept in {self.out / 'checkpoints'})")
            if self.console is not None and self.dist.is_main:
                self.console.print(f"[yellow]warning:[/] non-finite loss or gradient at step "
                                   f"{self.global_step}; step skipped")
            return
        if self.scaler is not None:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.opt_step += 1

    def _finish(self, wall: float, last_loss: float) -> None:
        state = self.state(self.epoch)
        for callback in self.callbacks:
            try:
                callback.on_train_end(state)
            except Exception as exc:  # a picture or a tracker must never cost a finished run
                self.metrics.write({"type": "warning", "message": f"{type(callback).__name__} failed: {exc}"})
        summary = {"epochs": self.epoch, "steps": self.global_step, "samples_seen": self.samples_seen,
                   "final_loss": last_loss, "wall_time": wall, "effective_batch": self.effective_batch,
                   "peak_lr": self.peak_lr, "device": str(self.device),
                   "precision": str(self.amp_dtype or "fp32"), "world_size": self.dist.world_size}
        (self.out / "summary.json").write_text(json.dumps(summary, indent=2))


def run_training(config: TrainConfig, console: Any = None, callbacks: Sequence[Callback] = ()) -> RunResult:
    """Train one run. ``callbacks`` add probes, pictures or trackers (``maskkit.lab.training`` has the
    standard ones that ``maskkit train`` uses)."""
    return Trainer(config, console=console, callbacks=callbacks).train()
