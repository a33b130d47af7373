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
    from maskkit.config_utils import parse_key_values
    from maskkit.interop.resize import size_overrides
    from maskkit.lab.visualize_run import visualize_run
    from maskkit.train.runtime import resolve_device

    overrides = size_overrides(image_size, num_frames, parse_key_values(modality_opt, "--modality-opt"))
    result = visualize_run(run, out=out, num_samples=num_samples, masker=masker,
                           masker_options=parse_key_values(masker_opt, "--masker-opt") if masker_opt is not None
                           else None, mask_ratio=mask_ratio, data=data, seed=seed, overrides=overrides,
                           device=resolve_device(device))
    for line in result.lines:
        typer.echo(line)
    typer.echo(f"wrote {result.path}")
