"""The fine-tuning loop: one arm (pretrained or random-init weights), checkpointed and resumable.

Checkpoints (``OUT/checkpoints/last.pt``, atomic, with a checksum record) hold the classifier, EMA,
optimizer, RNG states and the position inside the epoch. The epochs, the stop signals (SIGINT/SIGTERM,
SIGUSR1 with its requeue exit code), the progress bar and the save-then-stop are the skeleton it shares
with pretraining (:class:`maskkit.train.loop.EpochLoop`); ``resume`` continues from the checkpoint.
The data order, the mixing draws and drop-path depend on (seed, epoch, step) only, so a resumed run
continues exactly as an uninterrupted one (tested on CPU).
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Subset

from maskkit.interop.resize import load_resized
from maskkit.lab.finetune.budget import DEFAULT_EPOCHS, default_epochs, fit_recipe
from maskkit.lab.finetune.config import FinetuneConfig
from maskkit.lab.finetune.data import split_indices
from maskkit.lab.finetune.recipe import (
    PRECISE_BN_SAMPLES,
    Classifier,
    WeightEMA,
    freeze_decoder,
    layer_decay_groups,
    mix_axes,
    mix_batch,
    mixing_allowed,
    refresh_batch_norm,
    set_drop_path,
    soft_cross_entropy,
    soft_targets,
)
from maskkit.modality import MaskkitDataset, collate_samples
from maskkit.model.weights import init_model_options, load_into, read_weights
from maskkit.safe_io import write_text
from maskkit.train.build import build_dataset, build_model
from maskkit.train.checkpoint import (
    CheckpointError,
    atomic_save,
    load_checkpoint,
    resolve_checkpoint_path,
    rng_state,
    set_rng_state,
)
from maskkit.train.data import EpochOrderSampler, build_loader
from maskkit.train.loop import EpochLoop, TrainingInterrupted
from maskkit.train.metrics import MetricsLog
from maskkit.train.progress import SampleRate, TrainProgressBar
from maskkit.train.runtime import autocast, resolve_device, resolve_precision, seed_everything, step_seed
from maskkit.train.schedule import lr_at, scaled_lr

FORMAT = "maskkit-finetune"
VERSION = 1


@dataclass
class FinetuneResult:
    out: str
    init: str
    protocol: str
    accuracy: float
    ema_accuracy: float | None
    epochs: int
    steps: int
    train_samples: int
    test_samples: int
    num_classes: int
    test_on: str
    final_loss: float
    wall_time: float
    history: list[dict[str, Any]] = field(default_factory=list)
    init_report: str | None = None
    #: the regularisers and warm-up it ran with (maskkit.lab.finetune.budget), and why
    recipe: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class FinetuneInterrupted(TrainingInterrupted):
    """A signal stopped fine-tuning; a checkpoint was saved."""


@dataclass
class EncoderSource:
    """A model already in memory (e.g. a study's random-init baseline, built before any run exists)."""

    model: Any
    modality: Any
    run_config: Any  # the TrainConfig the model belongs to
    run_dir: Path | None = None


def build_encoder(cfg: FinetuneConfig, device: torch.device, source: EncoderSource | None = None):
    """(model, modality, run TrainConfig, run dir, init report) for this arm."""
    if source is not None:
        return source.model.to(device), source.modality, source.run_config, source.run_dir, None
    if not cfg.run:
        raise CheckpointError("fine-tuning needs a pretrained run (directory or checkpoint)")
    path = resolve_checkpoint_path(cfg.run)
    model, modality, run_cfg, _ = load_resized(path, cfg.modality_overrides or None, "cpu")
    run_dir = path.parent.parent if path.parent.name == "checkpoints" else None
    report = None
    if cfg.init == "random":
        torch.manual_seed(run_cfg.seed)  # exactly the weights the run started from (see build_run)
        model = build_model(modality, model.config)
    elif cfg.init_from:
        weights = read_weights(cfg.init_from)
        options = init_model_options(weights, {})
        if options.get("pos_embed") and options["pos_embed"] != model.config.pos_embed:
            torch.manual_seed(run_cfg.seed)
            model = build_model(modality, replace(model.config, pos_embed=options["pos_embed"]))
        report = load_into(model, weights).summary()
    return model.to(device), modality, run_cfg, run_dir, report


class FinetuneTrainer(EpochLoop):
    """Fine-tuning (or a linear probe): a classification step inside the loop skeleton of pretraining."""

    interrupted = FinetuneInterrupted

    def __init__(self, config: FinetuneConfig, console: Any = None, source: EncoderSource | None = None) -> None:
        self.config = config
        self.source = source
        self.console = console
        self.device = resolve_device(config.device)
        self.amp_dtype = resolve_precision(config.precision, self.device)
        if not config.out:
            raise CheckpointError("fine-tuning needs an output directory (`out`)")
        self.out = Path(config.out)
        self.epochs = config.epochs or 0  # unset: fitted to the data in setup()
        self.start_position()

    # ------------------------------------------------------------------ setup
    def setup(self) -> None:
        cfg = self.config
        model, modality, run_cfg, run_dir, self.init_report = build_encoder(cfg, self.device, self.source)
        self.seed = cfg.seed if cfg.seed is not None else run_cfg.seed
        seed_everything(self.seed)
        source = cfg.data if cfg.data is not None else run_cfg.data
        self.train_data: MaskkitDataset = build_dataset(modality, source, train=True, seed=self.seed,
                                                        on_bad_file=cfg.on_bad_file)
        self.test_data: MaskkitDataset = build_dataset(modality, source, train=False, seed=self.seed,
                                                       on_bad_file=cfg.on_bad_file)
        self.train_idx, self.test_idx, self.test_on = split_indices(
            self.test_data, run_dir, cfg.test_fraction, same_data=cfg.data is None or cfg.data == run_cfg.data,
            max_test=cfg.max_test_samples)
        labels = np.asarray(self.test_data.labels)
        self.num_classes = int(labels[labels >= 0].max()) + 1
        freeze_decoder(model)
        if cfg.freeze:
            for p in model.parameters():
                p.requires_grad_(False)
        layout = model.tokenizer.layout
        self.sampler = EpochOrderSampler(len(self.train_data), cfg.batch_size, self.seed,
                                         max_batches=cfg.max_steps_per_epoch, indices=self.train_idx)
        self.steps_per_epoch = self.sampler.batches_per_epoch
        self.epochs = cfg.epochs if cfg.epochs is not None else default_epochs(self.steps_per_epoch)
        self.total_steps = self.steps_per_epoch * self.epochs
        self.recipe = fit_recipe(cfg, self.total_steps, layout.num_tokens, self.epochs)
        if cfg.epochs is None and self.epochs > DEFAULT_EPOCHS:
            self.recipe.notes.append(f"{self.epochs} epochs ({self.total_steps} optimiser steps): on "
                                     f"{len(self.train_idx)} training samples {DEFAULT_EPOCHS} epochs are too few "
                                     f"steps to converge (`epochs` sets it)")
        self.classifier = Classifier(model, self.num_classes, cfg.pool, probe=cfg.freeze,
                                     head_norm=self.recipe.head_norm).to(self.device)
        sample_dims = self.train_data[int(self.train_idx[0])][0].dim() + 1
        self.axes = mix_axes(layout.axes, layout.has_grid, sample_dims)
        self.peak_lr = cfg.lr if cfg.lr is not None else scaled_lr(cfg.peak_base_lr, cfg.batch_size)
        if cfg.freeze:
            params = [p for p in self.classifier.head.parameters() if p.requires_grad]
            groups = [{"params": params, "weight_decay": cfg.decay, "lr_scale": 1.0}]
            self.optimizer: torch.optim.Optimizer = torch.optim.SGD(groups, lr=self.peak_lr, momentum=0.9)
        else:
            groups = layer_decay_groups(self.classifier, cfg.decay, cfg.layer_decay)
            self.optimizer = torch.optim.AdamW(groups, lr=self.peak_lr, betas=(0.9, 0.999))
        self.ema = WeightEMA(self.classifier, cfg.ema) if cfg.ema > 0 else None
        if not cfg.freeze:
            set_drop_path(model, self.recipe.drop_path)
        self.mixing = (not cfg.freeze and mixing_allowed(layout.has_grid)
                       and (self.recipe.mixup > 0 or self.recipe.cutmix > 0))
        self.warmup_steps = self.recipe.warmup_epochs * self.steps_per_epoch
        self.out.mkdir(parents=True, exist_ok=True)
        if not cfg.resume:  # a fresh start replaces what an earlier run left in this folder
            (self.out / "metrics.jsonl").unlink(missing_ok=True)
        self.metrics = MetricsLog(self.out / "metrics.jsonl")
        self.start_position()
        self.step = 0
        self.history: list[dict[str, Any]] = []
        if cfg.resume:
            self._resume()
        write_text(self.out / "config.json", json.dumps(cfg.to_dict(), indent=2))
        self.metrics.write({"type": "recipe", **self.recipe.to_dict()})
        for note in self.recipe.notes if self.console is not None else ():
            self.console.print(f"[yellow]notice[/]: {note}")

    # ------------------------------------------------------------------ checkpoints
    def _state(self, wall: float) -> dict[str, Any]:
        return {"format": FORMAT, "version": VERSION, "classifier": self.classifier.state_dict(),
                "ema": self.ema.module.state_dict() if self.ema is not None else {},
                "optimizer": self.optimizer.state_dict(), "config": self.config.to_dict(),
                "position": {"epoch": self.epoch, "batch_in_epoch": self.batch_in_epoch, "step": self.step,
                             "global_step": self.step,  # the name the checksum record reads (integrity)
                             "wall_time": wall},
                "history": json.dumps(self.history), "rng": rng_state()}

    def save(self, wall: float, periodic: bool = False) -> None:  # noqa: ARG002 (one file: last.pt)
        atomic_save(self._state(wall), self.out / "checkpoints" / "last.pt")

    def _resume(self) -> None:
        path = self.out / "checkpoints" / "last.pt"
        if not path.is_file():
            raise CheckpointError(f"`resume`: {path} does not exist (nothing to resume in {self.out})")
        ckpt = load_checkpoint(path, kind=FORMAT, version=VERSION, required=("classifier", "config", "position"))
        saved = ckpt["config"]
        for key in ("run", "init", "freeze", "epochs", "batch_size", "pool"):
            if saved.get(key) != getattr(self.config, key):
                raise CheckpointError(f"`resume`: {path} was made with {key}={saved.get(key)!r}, this run asks for "
                                      f"{key}={getattr(self.config, key)!r}")
        try:
            self.classifier.load_state_dict(ckpt["classifier"])
        except RuntimeError as exc:
            raise CheckpointError(f"`resume`: {path} does not fit ({str(exc).splitlines()[0]})") from None
        if self.ema is not None and ckpt.get("ema"):
            self.ema.module.load_state_dict(ckpt["ema"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        pos = ckpt["position"]
        self.epoch, self.batch_in_epoch, self.step = int(pos["epoch"]), int(pos["batch_in_epoch"]), int(pos["step"])
        self.wall_time_before = float(pos.get("wall_time", 0.0))
        self.history = json.loads(ckpt.get("history", "[]"))
        set_rng_state(ckpt["rng"])
        self.metrics.write({"type": "resume", "epoch": self.epoch, "step": self.step})

    # ------------------------------------------------------------------ evaluation
    def _samples(self, indices: np.ndarray) -> DataLoader:
        """Un-augmented samples (the evaluation view of the data), in order."""
        return DataLoader(Subset(self.test_data, indices.tolist()), batch_size=256, shuffle=False,
                          collate_fn=collate_samples)

    @torch.no_grad()
    def accuracy(self, module: torch.nn.Module) -> float:
        """Held-out accuracy; a BatchNorm head first gets the statistics of the current features
        (``refresh_batch_norm``), measured on training samples."""
        if isinstance(module, Classifier):
            batches = (x.to(self.device) for x, _ in self._samples(self.train_idx[:PRECISE_BN_SAMPLES]))
            with autocast(self.device, self.amp_dtype):
                refresh_batch_norm(module, batches)
        module.eval()
        loader = self._samples(self.test_idx)
        correct = torch.zeros((), dtype=torch.long, device=self.device)
        for x, y in loader:
            with autocast(self.device, self.amp_dtype):
                logits = module(x.to(self.device))
            correct += (logits.argmax(-1) == y.to(self.device)).sum()
        return int(correct) / len(self.test_idx)

    # ------------------------------------------------------------------ loop
    def train(self) -> FinetuneResult:
        self.setup()
        cfg = self.config
        loss = self.run_epochs(cfg.progress, self.steps_per_epoch)
        wall = self.wall_time()
        final = self.history[-1] if self.history else {}
        result = FinetuneResult(
            out=str(self.out), init=cfg.init if not cfg.init_from else f"init-from {cfg.init_from}",
            protocol=cfg.protocol_name, accuracy=float(final.get("test_acc", self.accuracy(self.classifier))),
            ema_accuracy=final.get("test_acc_ema"), epochs=self.epoch, steps=self.step,
            train_samples=len(self.train_idx), test_samples=len(self.test_idx), num_classes=self.num_classes,
            test_on=self.test_on, final_loss=float(final.get("loss", loss)), wall_time=wall, history=self.history,
            init_report=self.init_report, recipe=self.recipe.to_dict())
        write_text(self.out / "finetune.json", json.dumps(result.to_dict(), indent=2))
        return result

    def train_epoch(self, bar: TrainProgressBar) -> float:
        cfg = self.config
        self.train_data.set_epoch(self.epoch)
        self.sampler.set_epoch(self.epoch, self.batch_in_epoch)
        loader = build_loader(self.train_data, self.sampler, cfg.num_workers, pin_memory=self.device.type == "cuda")
        self.classifier.train()
        if cfg.freeze:
            self.classifier.model.eval()
        total = torch.zeros((), device=self.device)
        count = 0
        bar.start_epoch(self.epoch, self.batch_in_epoch)
        rate = SampleRate()
        for x, y in loader:
            x, y = x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)
            targets = soft_targets(y, self.num_classes, 0.0 if cfg.freeze else self.recipe.label_smoothing)
            if self.mixing:
                rng = np.random.default_rng([self.seed, 7, self.step])
                x, targets, _ = mix_batch(x, targets, rng, self.recipe.mixup, self.recipe.cutmix, cfg.mix_prob,
                                          cfg.switch_prob, self.axes)
            torch.manual_seed(step_seed(self.seed, self.step))  # drop-path draws depend on (seed, step) only
            lr = lr_at(self.step, self.total_steps, self.warmup_steps, self.peak_lr, cfg.min_lr)
            for group in self.optimizer.param_groups:
                group["lr"] = lr * group.get("lr_scale", 1.0)
            with autocast(self.device, self.amp_dtype):
                if cfg.freeze:
                    with torch.no_grad():
                        feats = self.classifier.features(x)
                    logits = self.classifier.head(feats.float())
                else:
                    logits = self.classifier(x)
            loss = soft_cross_entropy(logits, targets)
            loss.backward()
            params = [p for g in self.optimizer.param_groups for p in g["params"] if p.grad is not None]
            norm = torch.nn.utils.clip_grad_norm_(params, cfg.clip_grad if cfg.clip_grad else float("inf"))
            if bool(torch.isfinite(norm)):
                self.optimizer.step()
                if self.ema is not None:
                    self.ema.update(self.classifier)
            else:
                self.metrics.write({"type": "nonfinite", "epoch": self.epoch, "step": self.step})
            self.optimizer.zero_grad(set_to_none=True)
            total += loss.detach()
            count += 1
            self.step += 1
            self.batch_in_epoch += 1
            if bar.enabled:
                bar.update(self.batch_in_epoch, loss=float(loss.detach()), lr=lr, rate=rate.add(x.shape[0]))
            self.stop_if_asked(self.step)
        epoch_loss = float(total) / max(count, 1) if count else math.nan
        self._record_epoch(epoch_loss)
        return epoch_loss

    def _record_epoch(self, loss: float) -> None:
        """Held-out accuracy after the epoch (and of the EMA weights): logged, and kept in the history that
        the epoch's checkpoint holds."""
        record = {"type": "epoch", "epoch": self.epoch, "step": self.step, "loss": loss,
                  "test_acc": self.accuracy(self.classifier)}
        if self.ema is not None:
            record["test_acc_ema"] = self.accuracy(self.ema.module)
        self.metrics.write(record)
        self.history.append(record)


def run_finetune(config: FinetuneConfig, console: Any = None, source: EncoderSource | None = None) -> FinetuneResult:
    """Fine-tune (or linear-probe) one arm and return its held-out accuracy. ``source``: start from a
    model in memory instead of ``config.run``."""
    return FinetuneTrainer(config, console=console, source=source).train()
