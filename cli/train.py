"""`maskkit train`: parse, merge TOML + CLI into a TrainConfig, run the trainer."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from maskkit.cli.errors import handle_errors
from maskkit.cli.options import modality_options

Opt = typer.Option


def register(app: typer.Typer) -> None:
    app.command("train")(train)


@handle_errors
def train(
    modality: Annotated[str | None, Opt(help="image | video | audio | pointcloud | any installed")] = None,
    data: Annotated[str | None, Opt(help="Path (folder / array / media files) or builtin:NAME")] = None,
    masker: Annotated[str | None, Opt(help="Masker name (maskkit list --maskers)")] = None,
    masker_opt: Annotated[list[str] | None, Opt("--masker-opt", "-O", help="Masker option key=value")] = None,
    mask_ratio: Annotated[float | None, Opt(help="Fraction of tokens hidden, in (0,1)")] = None,
    model: Annotated[str | None, Opt(help="nano | micro | tiny | small | base | large | huge")] = None,
    model_opt: Annotated[list[str] | None, Opt("--model-opt", help="Model override key=value")] = None,
    image_size: Annotated[str | None, Opt(help="Image/frame size: 32 or HxW")] = None,
    patch_size: Annotated[str | None, Opt(help="Token patch size")] = None,
    channels: Annotated[int | None, Opt(help="Input channels (default: from data)")] = None,
    num_frames: Annotated[int | None, Opt(help="Video frames per clip / spectrogram frames")] = None,
    frame_stride: Annotated[int | None, Opt(help="Video frame stride")] = None,
    sample_rate: Annotated[int | None, Opt(help="Audio sample rate")] = None,
    num_points: Annotated[int | None, Opt(help="Points per cloud")] = None,
    num_groups: Annotated[int | None, Opt(help="Point groups (tokens) per cloud")] = None,
    group_size: Annotated[int | None, Opt(help="Points per group")] = None,
    modality_opt: Annotated[list[str] | None, Opt("--modality-opt", help="Other modality option k=v")] = None,
    epochs: Annotated[int | None, Opt(help="Training epochs")] = None,
    batch_size: Annotated[int | None, Opt(help="Per-process batch size")] = None,
    lr: Annotated[float | None, Opt(help="Absolute peak lr (default base-lr x batch/256)")] = None,
    base_lr: Annotated[float | None, Opt(help="Base lr for the batch/256 rule")] = None,
    warmup_epochs: Annotated[float | None, Opt(help="Linear warmup epochs")] = None,
    accum_steps: Annotated[int | None, Opt(help="Gradient accumulation steps")] = None,
    weight_decay: Annotated[float | None, Opt(help="AdamW weight decay")] = None,
    clip_grad: Annotated[float | None, Opt(help="Clip gradient norm")] = None,
    device: Annotated[str | None, Opt(help="auto | cpu | cuda")] = None,
    precision: Annotated[str | None, Opt(help="auto (bf16 on CUDA, fp32 on CPU) | fp32 | bf16 | fp16")] = None,
    seed: Annotated[int | None, Opt(help="Seed: init, data order, augmentation and masks")] = None,
    out: Annotated[str | None, Opt(help="Run directory")] = None,
    init_from: Annotated[str | None, Opt(help="Start from weights on disk: timm / Hugging Face ViT or ViT-MAE "
                                              "(file or directory) or a maskkit run")] = None,
    resume: Annotated[bool, Opt("--resume", help="Continue the run in --out from its last checkpoint")] = False,
    config: Annotated[Path | None, Opt(help="TOML file; command-line options override it")] = None,
    save_every: Annotated[int | None, Opt(help="Keep a checkpoint every N epochs")] = None,
    save_every_steps: Annotated[int | None, Opt(help="Also refresh last.pt every N steps")] = None,
    keep_checkpoints: Annotated[int | None, Opt(help="How many periodic checkpoints to keep")] = None,
    log_every: Annotated[int | None, Opt(help="Steps between metric lines")] = None,
    probe_every: Annotated[int | None, Opt(help="Epochs between clustering-metric probes (0 = off)")] = None,
    num_workers: Annotated[int | None, Opt(help="DataLoader worker processes")] = None,
    max_steps_per_epoch: Annotated[int | None, Opt(help="Cap batches per epoch")] = None,
    compile: Annotated[bool | None, Opt("--compile/--no-compile", help="torch.compile the step")] = None,
    grad_checkpoint: Annotated[bool | None, Opt("--grad-checkpoint/--no-grad-checkpoint",
                                                help="Recompute block activations in backward (saves memory)")] = None,
    strategy: Annotated[str | None, Opt(help="auto | ddp | fsdp (under torchrun)")] = None,
    on_nonfinite: Annotated[str | None, Opt(help="skip | stop")] = None,
    on_bad_file: Annotated[str | None, Opt(help="error | skip")] = None,
    progress: Annotated[bool | None, Opt("--progress/--no-progress", help="Show the progress bar")] = None,
) -> None:
    """Pretrain a masked autoencoder."""
    from maskkit.config_utils import parse_key_values
    from maskkit.train.config import load_toml, merge_config
    from maskkit.train.trainer import run_training

    file_values = load_toml(config) if config is not None else {}
    if resume:
        run_dir = Path(out or file_values.get("out") or "runs/latest")
        saved = run_dir / "config.json"
        if saved.is_file():  # the run's own settings, then the file, then the command line
            base = json.loads(saved.read_text())
            base.pop("resolved_model", None)
            file_values = {**base, **file_values}
    cli_values = {
        "modality": modality, "data": data, "masker": masker, "mask_ratio": mask_ratio, "model": model,
        "epochs": epochs, "batch_size": batch_size, "lr": lr, "base_lr": base_lr,
        "warmup_epochs": warmup_epochs, "accum_steps": accum_steps, "weight_decay": weight_decay,
        "clip_grad": clip_grad, "device": device, "precision": precision, "seed": seed, "out": out,
        "init_from": init_from,
        "resume": True if resume else None, "save_every": save_every, "save_every_steps": save_every_steps,
        "keep_checkpoints": keep_checkpoints,
        "log_every": log_every, "probe_every": probe_every, "num_workers": num_workers,
        "max_steps_per_epoch": max_steps_per_epoch, "compile": compile, "strategy": strategy,
        "on_nonfinite": on_nonfinite, "on_bad_file": on_bad_file, "progress": progress,
        "masker_options": parse_key_values(masker_opt, "--masker-opt") or None,
        "model_options": {**parse_key_values(model_opt, "--model-opt"),
                          **({"grad_checkpoint": grad_checkpoint} if grad_checkpoint is not None else {})} or None,
        "modality_options": modality_options(
            {"image_size": image_size, "patch_size": patch_size, "channels": channels, "num_frames": num_frames,
             "frame_stride": frame_stride, "sample_rate": sample_rate, "num_points": num_points,
             "num_groups": num_groups, "group_size": group_size}, modality_opt) or None,
    }
    if file_values.get("masker") and masker and masker != file_values.get("masker"):
        file_values.pop("masker_options", None)  # options of another masker would not fit
    cfg = merge_config(file_values, cli_values)
    console = Console(stderr=True)
    result = run_training(cfg, console=console)
    if int(__import__("os").environ.get("RANK", "0")) == 0:
            console.print(f"[green]done[/]: {result.epochs} epochs, {result.steps} steps, final loss "
                      f"{result.final_loss:.4f}, {result.wall_time:.1f}s -> {result.out_dir}")
