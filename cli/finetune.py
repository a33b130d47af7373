"""`maskkit finetune`: fine-tune (or linear-probe with SGD) a pretrained encoder with a classification
head, beside the same recipe from random init; held-out accuracy of both."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from maskkit.cli.errors import handle_errors
from maskkit.cli.options import (
    BatchSize,
    ClipGrad,
    Device,
    MaxStepsPerEpoch,
    MinLr,
    NumWorkers,
    OnBadFile,
    PeakLr,
    Progress,
    WarmupEpochs,
    WeightDecay,
)

Opt = typer.Option


def register(app: typer.Typer) -> None:
    app.command("finetune")(finetune)


@handle_errors
def finetune(
    run: Annotated[Path, typer.Argument(help="Pretrained run directory or checkpoint file")],
    data: Annotated[str | None, Opt(help="Labelled data (default: the run's data)")] = None,
    epochs: Annotated[int | None, Opt(help="Fine-tuning epochs")] = None,
    batch_size: BatchSize = None,
    lr: PeakLr = None,
    base_lr: Annotated[float | None, Opt(help="Base lr (default 5e-3 fine-tune, 0.1 linear probe)")] = None,
    min_lr: MinLr = None,
    weight_decay: WeightDecay = None,
    layer_decay: Annotated[float | None, Opt(help="Layer-wise lr decay (MAE: 0.75)")] = None,
    warmup_epochs: WarmupEpochs = None,
    drop_path: Annotated[float | None, Opt(help="Stochastic depth rate of the last block")] = None,
    label_smoothing: Annotated[float | None, Opt(help="Label smoothing")] = None,
    mixup: Annotated[float | None, Opt(help="Mixup Beta alpha (0 = off)")] = None,
    cutmix: Annotated[float | None, Opt(help="Cutmix Beta alpha (0 = off): boxes on images/frames, "
                                            "time spans on spectrograms")] = None,
    ema: Annotated[float | None, Opt(help="Weight EMA decay, e.g. 0.999 (0 = off)")] = None,
    freeze: Annotated[bool, Opt("--freeze", help="Linear probe: frozen encoder, BatchNorm + linear head, SGD")] = False,
    pool: Annotated[str | None, Opt(help="mean | cls: feature the head reads")] = None,
    clip_grad: ClipGrad = None,
    baseline: Annotated[bool, Opt("--baseline/--no-baseline",
                                  help="Also run the recipe from the run's random initial weights")] = True,
    init_from: Annotated[str | None, Opt(help="Start the pretrained arm from these weights (timm / Hugging "
                                              "Face / maskkit) instead of the run's")] = None,
    image_size: Annotated[str | None, Opt(help="Another image/frame size than pretraining (N or HxW)")] = None,
    num_frames: Annotated[int | None, Opt(help="Another frame count / spectrogram length")] = None,
    modality_opt: Annotated[list[str] | None, Opt("--modality-opt", help="Other size option k=v "
                                                                          "(num_points, num_groups)")] = None,
    test_fraction: Annotated[float | None, Opt(help="Held-out fraction when the run kept none")] = None,
    max_test_samples: Annotated[int | None, Opt(help="Cap on held-out samples")] = None,
    max_steps_per_epoch: MaxStepsPerEpoch = None,
    seed: Annotated[int | None, Opt(help="Seed of data order and mixing (default: the run's)")] = None,
    device: Device = None,
    precision: Annotated[str | None, Opt(help="auto (bf16 on CUDA, fp32 on CPU) | fp32 | bf16")] = None,
    num_workers: NumWorkers = None,
    on_bad_file: OnBadFile = None,
    out: Annotated[Path | None, Opt(help="Output directory (default RUN/finetune or RUN/linprobe)")] = None,
    resume: Annotated[bool, Opt("--resume", help="Continue both arms from their last checkpoints")] = False,
    progress: Progress = None,
) -> None:
    """Fine-tune a pretrained encoder end to end (MAE recipe) or linear-probe it with SGD (--freeze)."""
    from rich.console import Console
    from rich.table import Table

    from maskkit.config_utils import parse_key_values
    from maskkit.interop.resize import check_size_overrides, size_overrides
    from maskkit.lab.finetune.arms import finetune_arms
    from maskkit.lab.finetune.config import FinetuneConfig
    from maskkit.train.checkpoint import resolve_checkpoint_path

    resolve_checkpoint_path(run)  # a missing run is one line, before anything else
    overrides = size_overrides(image_size, num_frames, parse_key_values(modality_opt, "--modality-opt"))
    check_size_overrides(overrides)
    name = "linprobe" if freeze else "finetune"
    default_out = Path(run) / name if Path(run).is_dir() else Path(run).parent / f"{Path(run).stem}_{name}"
    values = {"run": str(run), "data": data, "epochs": epochs, "batch_size": batch_size, "lr": lr,
              "base_lr": base_lr, "min_lr": min_lr, "weight_decay": weight_decay, "layer_decay": layer_decay,
              "warmup_epochs": warmup_epochs, "drop_path": drop_path, "label_smoothing": label_smoothing,
              "mixup": mixup, "cutmix": cutmix, "ema": ema, "freeze": freeze, "pool": pool, "clip_grad": clip_grad,
              "init_from": init_from, "modality_overrides": overrides, "test_fraction": test_fraction,
              "max_test_samples": max_test_samples, "max_steps_per_epoch": max_steps_per_epoch, "seed": seed,
              "device": device, "precision": precision, "num_workers": num_workers, "on_bad_file": on_bad_file,
              "out": str(out or default_out), "resume": resume, "progress": progress}
    cfg = FinetuneConfig.from_dict({k: v for k, v in values.items() if v is not None})
    console = Console(stderr=True)
    results = finetune_arms(cfg, baseline=baseline, console=console)
    first = next(iter(results.values()))
    table = Table(title=f"{cfg.protocol_name} of {run}: held-out accuracy ({first.test_samples} samples, "
                        f"{first.num_classes} classes; test set: {first.test_on})")
    for col in ("arm", "accuracy", "EMA accuracy", "epochs", "steps", "Δ vs random-init"):
        table.add_column(col)
    ref = results.get("random-init")
    for arm, r in results.items():
        gain = f"{r.accuracy - ref.accuracy:+.3f}" if ref is not None and arm == "pretrained" else ""
        ema_text = f"{r.ema_accuracy:.3f}" if r.ema_accuracy is not None else "–"
        table.add_row(arm, f"{r.accuracy:.3f}", ema_text, str(r.epochs), str(r.steps), gain)
    Console().print(table)
    if first.init_report:
        console.print(first.init_report)
    typer.echo(f"wrote {Path(cfg.out) / 'summary.json'}")
