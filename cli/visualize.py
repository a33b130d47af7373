"""`maskkit visualize`: PNG of original / masked input / reconstruction for N samples."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from maskkit.cli.errors import handle_errors
from maskkit.cli.options import Threads, apply_threads


def register(app: typer.Typer) -> None:
    app.command("visualize")(visualize)


@handle_errors
def visualize(
    run: Annotated[Path, typer.Argument(help="Run directory or checkpoint file")],
    out: Annotated[Path | None, typer.Option(help="PNG path (default RUN/visualize.png)")] = None,
    num_samples: Annotated[int, typer.Option("--num-samples", "-n", help="Samples (rows)")] = 8,
    masker: Annotated[str | None, typer.Option(help="Masker to show (default: the run's)")] = None,
    masker_opt: Annotated[list[str] | None, typer.Option("--masker-opt", "-O", help="key=value")] = None,
    mask_ratio: Annotated[float | None, typer.Option(help="Mask ratio (default: the run's)")] = None,
    data: Annotated[str | None, typer.Option(help="Data to draw from (default: the run's)")] = None,
    seed: Annotated[int, typer.Option(help="Seed of the mask draw")] = 0,
    image_size: Annotated[str | None, typer.Option(help="Another image/frame size than pretraining (N or HxW)")] = None,
    num_frames: Annotated[int | None, typer.Option(help="Another frame count / spectrogram length")] = None,
    modality_opt: Annotated[list[str] | None, typer.Option(
        "--modality-opt", help="Other size option k=v (num_points, num_groups)")] = None,
    device: Annotated[str, typer.Option(help="auto | cpu | cuda")] = "auto",
    threads: Threads = None,
) -> None:
    """Draw reconstructions of a trained model."""
    apply_threads(threads)
    from maskkit.config_utils import ConfigError, parse_key_values
    from maskkit.interop.resize import load_resized, size_overrides
    from maskkit.lab.coverage import coverage_probe, object_coverage, random_coverage
    from maskkit.lab.visualize import build_visual_batch, pick_samples, render
    from maskkit.maskers.base import TrainingProgress
    from maskkit.registry import build_masker
    from maskkit.train.build import build_dataset
    from maskkit.train.checkpoint import resolve_checkpoint_path
    from maskkit.train.runtime import resolve_device

    if num_samples < 1:
        raise ConfigError(f"--num-samples must be >= 1, got {num_samples}")
    dev = resolve_device(device)
    ckpt_path = resolve_checkpoint_path(run)
    overrides = size_overrides(image_size, num_frames, parse_key_values(modality_opt, "--modality-opt"))
    model, modality, config, ckpt = load_resized(ckpt_path, overrides or None, dev)
    ratio = mask_ratio if mask_ratio is not None else config.mask_ratio
    if ratio is None or not 0 < ratio < 1:
        raise ConfigError(f"--mask-ratio must be in (0, 1), got {ratio}")
    if masker is None or masker == config.masker:
        options = {**config.masker_options, **parse_key_values(masker_opt, "--masker-opt")}
        m = build_masker(config.masker, options)
        if masker_opt is None and "masker" in ckpt:
            m.load_state_dict(ckpt["masker"], strict=False)  # e.g. self-guided "started" state
    else:
        m = build_masker(masker, parse_key_values(masker_opt, "--masker-opt"))
    m.to(dev)
    dataset = build_dataset(modality, data if data is not None else config.data, train=False, seed=config.seed)
    x = pick_samples(dataset, num_samples)
    pos = ckpt.get("position", {})
    steps_per_epoch = max(1, int(pos.get("global_step", 0)) // max(1, int(pos.get("epoch", 0)) or 1))
    progress = TrainingProgress(epoch=int(pos.get("epoch", 0)), step=int(pos.get("global_step", 0)),
                                epochs=max(config.epochs, 1), steps_per_epoch=steps_per_epoch)
    if m.last_progress.step > 0:
        progress = m.last_progress  # where the masker's own schedule stood when the checkpoint was written
    loss = modality.build_loss()
    probe = coverage_probe(dataset, modality, model.tokenizer, num_samples)  # None without object masks
    if probe is not None:
        x = probe.inputs  # the same evenly spaced samples, un-augmented, with their object masks
    batch = build_visual_batch(model, loss, m, ratio, x, seed=seed, progress=progress)
    title = f"{config.modality} · masker {m.name} · ratio {ratio:g}"
    if probe is not None:
        fractions = probe.fractions.to(batch.plan.mask.device)
        batch.object_fraction = fractions
        batch.extra_rows = {**(batch.extra_rows or {}), "object": fractions}
        cov = object_coverage(batch.plan.mask, fractions)
        expected = random_coverage(fractions.shape[1], ratio)
        title += f" · object coverage {float(cov.nanmean()):.2f} (random {expected:.2f})"
        typer.echo(f"object coverage (share of object tokens hidden): {float(cov.nanmean()):.3f} over "
                   f"{int(cov.isfinite().sum())} samples; random masking: {expected:.3f}; per sample: "
                   + " ".join(f"{v:.2f}" for v in cov.tolist()))
    target = out or (Path(run) / "visualize.png" if Path(run).is_dir() else ckpt_path.with_suffix(".png"))
    render(modality, batch, target, title=title)
    typer.echo(f"wrote {target}")
