"""`maskkit export`: a run's encoder for timm, Hugging Face, ONNX, or as plain safetensors (every modality)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from maskkit.cli.errors import handle_errors

Opt = typer.Option


def register(app: typer.Typer) -> None:
    app.command("export")(export)


@handle_errors
def export(
    run: Annotated[Path, typer.Argument(help="Run directory or checkpoint file")],
    format: Annotated[str, Opt("--format", help="timm | hf | safetensors | onnx")] = "safetensors",
    out: Annotated[Path | None, Opt(help="Output directory (default RUN/export-FORMAT)")] = None,
    decoder: Annotated[bool, Opt("--decoder/--no-decoder", help="hf: write a ViT-MAE checkpoint with the "
                                                                "decoder (ViTMAEForPreTraining)")] = False,
    image_size: Annotated[str | None, Opt(help="Export at another image size (N or HxW)")] = None,
    num_frames: Annotated[int | None, Opt(help="Export at another frame count / spectrogram length")] = None,
    modality_opt: Annotated[list[str] | None, Opt("--modality-opt", help="Other size option k=v")] = None,
) -> None:
    """Write the encoder in another library's format, with the input normalisation it expects."""
    from maskkit.config_utils import ConfigError, parse_key_values
    from maskkit.interop.export import export_run
    from maskkit.interop.resize import size_overrides
    from maskkit.train.checkpoint import resolve_checkpoint_path

    if decoder and format != "hf":
        raise ConfigError("--decoder applies to --format hf only (timm's VisionTransformer has no decoder)")
    path = resolve_checkpoint_path(run)
    target = out or ((Path(run) if Path(run).is_dir() else path.parent) / f"export-{format}")
    overrides = size_overrides(image_size, num_frames, parse_key_values(modality_opt, "--modality-opt"))
    files = export_run(path, format, target, overrides or None, decoder=decoder)
    for f in files:
        typer.echo(f"wrote {f}")
