"""`maskkit data check PATH --modality M` and `maskkit data shard PATH --out DIR`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from maskkit.cli.errors import handle_errors
from maskkit.cli.options import Threads, apply_threads

data_app = typer.Typer(no_args_is_help=True, help="Check data folders and shards; write WebDataset shards.")

#: what `data shard` packs per modality (the suffixes each modality's folder loader reads)
SHARD_SUFFIXES = {
    "image": (".png", ".jpg", ".jpeg", ".webp"),
    "audio": (".wav", ".flac", ".ogg"),
    "video": (".mp4", ".avi", ".webm", ".mkv", ".mov"),
    "pointcloud": (".npy", ".ply"),
}


def register(app: typer.Typer) -> None:
    app.add_typer(data_app, name="data")


@data_app.command("check")
@handle_errors
def check(
    path: Annotated[str, typer.Argument(help="Folder, file, shards ('x-{000..009}.tar') or hf:PATH")],
    modality: Annotated[str, typer.Option(help="image | video | audio | pointcloud | any installed")] = "image",
    threads: Threads = None,
) -> None:
    """Scan every file or record the way training does (same checks, same cached index) and list
    every bad one. Exit code 1 when any is bad, 0 when all are readable."""
    import time
    import warnings

    from maskkit.train.build import build_dataset, build_modality

    apply_threads(threads)
    t0 = time.perf_counter()
    mod = build_modality(modality, {})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # listed below, one line each
        dataset = build_dataset(mod, path, train=True, seed=0, on_bad_file="skip")  # the training split
    skipped = list(getattr(dataset, "skipped", []) or [])
    for where, reason in skipped:
        typer.echo(f"bad: {where}: {reason}")
    typer.echo(f"{path}: {len(dataset)} readable, {len(skipped)} bad ({time.perf_counter() - t0:.1f}s)")
    if skipped:
        raise typer.Exit(1)


@data_app.command("shard")
@handle_errors
def shard(
    path: Annotated[Path, typer.Argument(help="Folder of files (class sub-folders become labels)")],
    out: Annotated[Path, typer.Option(help="Folder for the .tar shards")],
    modality: Annotated[str, typer.Option(help=f"Which files to pack: {' | '.join(SHARD_SUFFIXES)}")] = "image",
    max_count: Annotated[int, typer.Option(help="Samples per shard")] = 1000,
    prefix: Annotated[str, typer.Option(help="Shard name prefix (PREFIX-000000.tar)")] = "shard",
    threads: Threads = None,
) -> None:
    """Write WebDataset tar shards (<key>.<ext> + .cls + .json per sample) from a folder."""
    from maskkit.config_utils import ConfigError
    from maskkit.lab.shard_writer import folder_samples, write_shards
    from maskkit.modality import DataError

    apply_threads(threads)
    if modality not in SHARD_SUFFIXES:
        raise ConfigError(f"--modality must be one of {', '.join(SHARD_SUFFIXES)}, got {modality!r}")
    if max_count < 1:
        raise ConfigError(f"--max-count must be >= 1, got {max_count}")
    if not path.is_dir():
        raise DataError(f"{path}: not a folder")
    samples = folder_samples(path, SHARD_SUFFIXES[modality])
    if not samples:
        raise DataError(f"{path}: no {'/'.join(SHARD_SUFFIXES[modality])} files found")
    written = write_shards(samples, out, prefix=prefix, max_count=max_count)
    last = len(written) - 1
    typer.echo(f"wrote {len(samples)} samples in {len(written)} shard(s): "
               f"{out / f'{prefix}-{{000000..{last:06d}}}.tar'}")
