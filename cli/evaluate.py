"""`maskkit eval`: frozen-encoder linear probe and k-NN, beside random-init and raw-input baselines."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from maskkit.cli.errors import handle_errors
from maskkit.cli.options import Threads, apply_threads
from maskkit.safe_io import check_can_write, write_text


def register(app: typer.Typer) -> None:
    app.command("eval")(evaluate)


@handle_errors
def evaluate(
    run: Annotated[Path, typer.Argument(help="Run directory or checkpoint file")],
    data: Annotated[str | None, typer.Option(help="Labelled data (default: the run's data)")] = None,
    max_samples: Annotated[int, typer.Option(help="Labelled samples used (stratified folds)")] = 2000,
    k: Annotated[int, typer.Option(help="Neighbours for k-NN")] = 10,
    baselines: Annotated[bool, typer.Option("--baselines/--no-baselines",
                                            help="Also probe the random-init encoder and the raw input")] = True,
    image_size: Annotated[str | None, typer.Option(help="Another image/frame size than pretraining (N or HxW)")] = None,
    num_frames: Annotated[int | None, typer.Option(help="Another frame count / spectrogram length")] = None,
    modality_opt: Annotated[list[str] | None, typer.Option(
        "--modality-opt", help="Other size option k=v (num_points, num_groups)")] = None,
    device: Annotated[str, typer.Option(help="auto | cpu | cuda")] = "auto",
    json_out: Annotated[Path | None, typer.Option(
        "--json", help="Where to write results (default RUN/eval.json)")] = None,
    threads: Threads = None,
) -> None:
    """Linear-probe and k-NN accuracy of a pretrained encoder's frozen features."""
    apply_threads(threads)
    from maskkit.config_utils import parse_key_values
    from maskkit.interop.resize import size_overrides
    from maskkit.lab.evaluate_run import evaluate_run
    from maskkit.lab.gain_words import gain_sentences
    from maskkit.train.checkpoint import resolve_checkpoint_path
    from maskkit.train.runtime import resolve_device

    ckpt_path = resolve_checkpoint_path(run)
    target = json_out or (Path(run) / "eval.json" if Path(run).is_dir() else ckpt_path.with_suffix(".eval.json"))
    check_can_write(target)  # a read-only folder fails now, not after the probes
    overrides = size_overrides(image_size, num_frames, parse_key_values(modality_opt, "--modality-opt"))
    result = evaluate_run(run, data=data, max_samples=max_samples, k=k, baselines=baselines, overrides=overrides,
                          device=resolve_device(device))
    rows, ckpt, config, modality, latents = (result.rows, result.checkpoint, result.config, result.modality,
                                             result.latents)
    reference = {r.feature: r for r in rows if r.arm == "random-init"}
    table = Table(title=f"Frozen-feature evaluation of {ckpt_path} ({rows[0].num_samples} samples, "
                        f"{rows[0].num_classes} classes, stratified CV)")
    for col in ("arm", "feature", "linear probe", "k-NN", "Δ linear vs random-init"):
        table.add_column(col)
    for r in rows:
        ref = reference.get(r.feature)
        gain = f"{r.linear_acc - ref.linear_acc:+.3f}" if ref is not None and r.arm == "pretrained" else ""
        table.add_row(r.arm, r.feature, f"{r.linear_acc:.3f} ± {r.linear_std:.3f}",
                      f"{r.knn_acc:.3f} ± {r.knn_std:.3f}", gain)
    Console().print(table)
    for sentence in gain_sentences(rows):
        typer.echo(sentence)
    if latents:
        Console().print(latent_table(latents))
    position = ckpt.get("position", {})
    payload = {"checkpoint": str(ckpt_path), "data": data or config.data or modality.default_data,
               "epoch": position.get("epoch"), "results": [r.to_dict() for r in rows],
               **({"latents": [r.to_dict() for r in latents]} if latents else {})}
    write_text(target, json.dumps(payload, indent=2))
    typer.echo(f"wrote {target}")


def latent_table(latents: list) -> Table:
    """One row per latent the data declares: its probe score for each arm (NaN arms left blank)."""
    table = Table(title="Latent probes (accuracy for categorical, R² for continuous latents; 5-fold CV)")
    for col in ("latent", "level", "metric", "pretrained", "random-init", "raw input"):
        table.add_column(col)
    for r in latents:
        cells = [f"{v:.3f}" if math.isfinite(v) else "" for v in (r.pretrained, r.random_init, r.raw_input)]
        table.add_row(r.name, str(r.level), r.metric, *cells)
    return table
