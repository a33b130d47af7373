"""`maskkit analyze`: the paper's token-clustering metrics for a run's checkpoints, as JSON and plots."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from maskkit.cli.errors import handle_errors
from maskkit.cli.options import Threads, apply_threads


def register(app: typer.Typer) -> None:
    app.command("analyze")(analyze)


@handle_errors
def analyze(
    run: Annotated[Path, typer.Argument(help="Run directory or checkpoint file")],
    checkpoints: Annotated[str, typer.Option(help="last | all (every kept checkpoint, over epochs)")] = "last",
    batches: Annotated[int, typer.Option(help="Batches of fixed samples to measure on")] = 2,
    batch_size: Annotated[int, typer.Option(help="Samples per batch")] = 16,
    out: Annotated[Path | None, typer.Option(help="Output folder (default RUN/analysis)")] = None,
    data: Annotated[str | None, typer.Option(help="Data to measure on (default: the run's)")] = None,
    seed: Annotated[int, typer.Option(help="Seed of the random masks used for exploitation rates")] = 0,
    device: Annotated[str, typer.Option(help="auto | cpu | cuda")] = "auto",
    plots: Annotated[bool, typer.Option("--plots/--no-plots", help="Write PNG plots")] = True,
    threads: Threads = None,
) -> None:
    """Feature/similarity variance, cluster gaps, token-relation KL, attention distance and NMI and the
    Fourier high-frequency amplitude for every encoder and decoder layer, plus mask-token variance and
    exploitation rates per decoder layer; writes analysis.json and PNGs."""
    apply_threads(threads)
    from maskkit.errors import CheckpointError, ConfigError
    from maskkit.lab.analysis import analyze_run
    from maskkit.train.runtime import resolve_device

    if checkpoints not in ("last", "all"):
        raise ConfigError(f"--checkpoints must be last or all, got {checkpoints!r}")
    if not run.exists():
        raise CheckpointError(f"{run}: no such run directory or checkpoint")
    result = analyze_run(run, checkpoints=checkpoints, batches=batches,  # type: ignore[arg-type]
                         batch_size=batch_size, out=out, device=resolve_device(device), seed=seed, data=data,
                         plots=plots)
    console = Console()
    table = Table(title=f"{result['modality']} · masker {result['masker']} · last encoder layer")
    for name in ("epoch", "σF", "σs", "gap sim", "gap attn", "attn dist", "NMI", "KL→final", "R V→O", "R M→O"):
        table.add_column(name, justify="right")
    for ck in result["checkpoints"]:
        enc, dec = ck["encoder"], ck["decoder"]
        kl = ck["kl_to_final"]
        table.add_row(str(ck["epoch"]), *(f"{enc[k][-1]:.4g}" for k in (
            "feature_var", "similarity_var", "gap_similarity", "gap_attention", "attention_distance",
            "attention_nmi")), f"{sum(kl) / len(kl):.4g}",
            f"{sum(dec['exploit_visible']) / len(dec['exploit_visible']):.4g}",
            f"{sum(dec['exploit_mask']) / len(dec['exploit_mask']):.4g}")
    console.print(table)
    part = result.get("partition", {})
    console.print("cuts: " + ", ".join(f"{k}={v}" for k, v in part.items()))
    written = result.get("plots", [])
    console.print(f"wrote {Path(result['out_dir']) / 'analysis.json'}"
                  + (f" and {len(written)} plot(s)" if written else ""))
