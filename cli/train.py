"""`maskkit train`: parse, merge TOML + CLI into a TrainConfig, run the trainer."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from maskkit.cli.errors import handle_errors
from maskkit.cli.options import (
    SHAPE_FLAGS,
    BatchSize,
    ClipGrad,
    Device,
    MaxStepsPerEpoch,
    MinLr,
    NumWorkers,
    OnBadFile,
    PeakLr,
    Progress,
    Threads,
    WarmupEpochs,
    WeightDecay,
    given_fields,
    modality_options,
)

Opt = typer.Option


def register(app: typer.Typer) -> None:
    app.command("train", help=_help_with_defaults())(train)


def _help_with_defaults() -> str:
    """The command's help plus the defaults of every option left unset (options default to None so
    a TOML file can fill them; the real defaults live in TrainConfig and the modality)."""
    import inspect
    from dataclasses import fields

    from maskkit.registry import get_modality, modality_names
    from maskkit.train.config import TrainConfig
    from maskkit.train.schedule import DEFAULT_BASE_LR, PRESET_BASE_LR

    per_model = ", ".join([*(f"{name} {lr:g}" for name, lr in PRESET_BASE_LR.items()),
                           f"{'others' if PRESET_BASE_LR else 'every preset'} {DEFAULT_BASE_LR:g}"])
    by_modality = ", ".join(f"{name} {rate:g}" for name in modality_names()
                            if (rate := get_modality(name).default_base_lr) is not None)
    cfg = TrainConfig()
    skip = {"modality", "data", "masker_options", "modality_options", "model_options", "lr", "base_lr",
            "mask_ratio", "model", "resume", "betas", "progress", "visualize_samples", "min_lr"}
    options = inspect.signature(train).parameters
    shown = [f"--{f.name.replace('_', '-')} {getattr(cfg, f.name)}" for f in fields(cfg)
             if f.name in options and f.name not in skip and getattr(cfg, f.name) is not None]
    image = get_modality("image")
    plain, digits = image.Config(), image.data_defaults(image.default_data, set())
    return ("Pretrain a masked autoencoder.\n\nDefaults when an option is not given (command line, then "
            "--config): --modality image; --data, --model and --mask-ratio: the modality's (image: "
            f"{image.default_data}, {image.default_model}, {image.default_mask_ratio}); --image-size and "
            f"--patch-size: {plain.image_size} and {plain.patch_size}, but for {image.default_data} "
            f"{digits.get('image_size')} and {digits.get('patch_size')} (its own size) unless either is given; "
            f"--lr: base-lr x batch/256, --base-lr: the modality's where one was measured "
            f"({by_modality or 'none'}), else by model: {per_model}. "
            + "; ".join(shown) + ".")


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
    batch_size: BatchSize = None,
    lr: PeakLr = None,
    base_lr: Annotated[float | None, Opt(help="Base lr for the batch/256 rule [default: by model preset, "
                                              "see the defaults above]")] = None,
    min_lr: MinLr = None,
    warmup_epochs: WarmupEpochs = None,
    accum_steps: Annotated[int | None, Opt(help="Gradient accumulation steps")] = None,
    weight_decay: WeightDecay = None,
    clip_grad: ClipGrad = None,
    device: Device = None,
    precision: Annotated[str | None, Opt(help="auto (bf16 on CUDA, fp32 on CPU) | fp32 | bf16 | fp16")] = None,
    seed: Annotated[int | None, Opt(help="Seed: init, data order, augmentation and masks")] = None,
    out: Annotated[str | None, Opt(help="Run directory")] = None,
    init_from: Annotated[str | None, Opt(help="Start from weights on disk: timm / Hugging Face ViT or ViT-MAE "
                                              "(file or directory) or a maskkit run")] = None,
    resume: Annotated[bool, Opt("--resume", help="Continue the run in --out from its last checkpoint")] = False,
    resume_auto: Annotated[bool, Opt("--resume-auto", help="Continue the run in --out if it holds a checkpoint, "
                                                          "else start one (one command for a job and its "
                                                          "requeues; TOML: resume = \"auto\")")] = False,
    overwrite: Annotated[bool, Opt("--overwrite", help="--out holds a run: move it aside to "
                                                      "OUT.old-TIMESTAMP and start a new one")] = False,
    allow_config_change: Annotated[bool, Opt("--allow-config-change", help="With --resume: accept other "
                                             "epochs, lr, mask ratio, masker options... (recorded in config.json)")
                                   ] = False,
    config: Annotated[Path | None, Opt(help="TOML file; command-line options override it")] = None,
    save_every: Annotated[int | None, Opt(help="Keep a checkpoint every N epochs")] = None,
    save_every_steps: Annotated[int | None, Opt(help="Also refresh last.pt every N steps")] = None,
    keep_checkpoints: Annotated[int | None, Opt(help="How many periodic checkpoints to keep")] = None,
    log_every: Annotated[int | None, Opt(help="Steps between metric lines")] = None,
    probe_every: Annotated[int | None, Opt(help="Epochs between clustering-metric probes (0 = off)")] = None,
    num_workers: NumWorkers = None,
    max_steps_per_epoch: MaxStepsPerEpoch = None,
    holdout_fraction: Annotated[float | None, Opt(help="Fixed share of samples never trained on (held-out "
                                                       "metrics); the same split for every seed")] = None,
    visualize_samples: Annotated[int | None, Opt(help="Samples in the final reconstruction.png")] = None,
    compile: Annotated[bool | None, Opt("--compile/--no-compile",
                                        help="torch.compile encoder, decoder and loss (masker stays eager)")] = None,
    grad_checkpoint: Annotated[bool | None, Opt("--grad-checkpoint/--no-grad-checkpoint",
                                                help="Recompute block activations in backward (saves memory)")] = None,
    strategy: Annotated[str | None, Opt(help="auto | ddp | fsdp (under torchrun)")] = None,
    on_nonfinite: Annotated[str | None, Opt(help="skip | stop")] = None,
    on_bad_file: OnBadFile = None,
    progress: Progress = None,
    logger: Annotated[str | None, Opt(help="Trackers beside metrics.jsonl: tensorboard,wandb,mlflow "
                                           "(any combination; W&B offline, MLflow in RUN/mlruns)")] = None,
    picture_every: Annotated[int | None, Opt(help="Epochs between reconstruction pictures for the trackers "
                                                  "(0 = at the end only)")] = None,
    threads: Threads = None,
) -> None:
    """Pretrain a masked autoencoder."""
    arguments = dict(locals())
    from maskkit.config_utils import parse_key_values
    from maskkit.lab.training import train as train_run
    from maskkit.train.cluster import is_main_process
    from maskkit.train.config import TrainConfig, layered_config, load_toml

    file_values = load_toml(config) if config is not None else {}
    cli_values = given_fields(arguments, TrainConfig)
    cli_values.update({
        "resume": True if resume else "auto" if resume_auto else None,
        "overwrite": True if overwrite else None,
        "allow_config_change": True if allow_config_change else None,
        "masker_options": parse_key_values(masker_opt, "--masker-opt") or None,
        "model_options": {**parse_key_values(model_opt, "--model-opt"),
                          **({"grad_checkpoint": grad_checkpoint} if grad_checkpoint is not None else {})} or None,
        "modality_options": modality_options({k: arguments[k] for k in SHAPE_FLAGS}, modality_opt) or None,
    })
    cfg = layered_config(cli_values, file_values)  # with resume: the run's saved settings, file, command line
    console = Console(stderr=True)
    result = train_run(cfg, console=console)
    if is_main_process():
        console.print(f"[green]done[/]: {result.epochs} epochs, {result.steps} steps, final loss "
                      f"{result.final_loss:.4f}, {result.wall_time:.1f}s -> {result.out_dir}")
