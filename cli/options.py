"""Options shared by several commands (modality shape options, masker options)."""

from __future__ import annotations

import dataclasses
from typing import Annotated, Any

import typer

from maskkit.config_utils import ConfigError, parse_key_values

#: command-line arguments that fill a modality option (train and bench have dedicated flags for them)
SHAPE_FLAGS = ("image_size", "patch_size", "channels", "num_frames", "frame_stride", "sample_rate", "num_points",
               "num_groups", "group_size")

#: ``--threads N`` on every command that computes (see maskkit.threads for the default)
Threads = Annotated[int | None, typer.Option(
    help="CPU threads for torch (default: $MASKKIT_THREADS, else $OMP_NUM_THREADS, else the usable CPUs "
         "divided by the ranks on this node)")]


# --- the optimisation and run options that `train` and `finetune` share (declared once, used by both) ---
BatchSize = Annotated[int | None, typer.Option(help="Per-process batch size")]
PeakLr = Annotated[float | None, typer.Option(help="Absolute peak lr [default: base-lr x batch/256]")]
MinLr = Annotated[float | None, typer.Option(help="Floor of the cosine schedule")]
WarmupEpochs = Annotated[float | None, typer.Option(help="Linear warmup epochs")]
WeightDecay = Annotated[float | None, typer.Option(help="AdamW weight decay")]
ClipGrad = Annotated[float | None, typer.Option(help="Clip gradient norm")]
Device = Annotated[str | None, typer.Option(help="auto | cpu | cuda")]
MaxStepsPerEpoch = Annotated[int | None, typer.Option(help="Cap batches per epoch")]
NumWorkers = Annotated[int | None, typer.Option(
    help="DataLoader worker processes (default: 0 on CPU; on CUDA the rank's spare cores, at most 8)")]
OnBadFile = Annotated[str | None, typer.Option(help="error | skip: stop on an unreadable file, or leave it out")]
Progress = Annotated[bool | None, typer.Option("--progress/--no-progress", help="Show progress bars")]


def given_fields(arguments: dict[str, Any], config_cls: type) -> dict[str, Any]:
    """The command's arguments named like fields of ``config_cls``, unchanged (None = not given).

    A setting is then written twice only: once in the dataclass (default, validation, meaning)
    and once as a typer option; ``tests/test_settings_once.py`` checks that the two sets agree.
    """
    names = {f.name for f in dataclasses.fields(config_cls)}
    return {k: v for k, v in arguments.items() if k in names}


def apply_threads(threads: int | None) -> int:
    """Set torch's thread count for this command; a bad value is a one-line error."""
    from maskkit.threads import configure_threads  # imports torch: only once a command runs

    try:
        return configure_threads(threads)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


def modality_options(values: dict[str, Any], extra: list[str] | None) -> dict[str, Any]:
    """Given CLI modality options (None = not given) plus ``--modality-opt k=v`` items."""
    out = {k: v for k, v in values.items() if v is not None}
    out.update(parse_key_values(extra, "--modality-opt"))
    return out
