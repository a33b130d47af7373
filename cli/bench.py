"""`maskkit bench`: time the training step per modality, model and masker (a benchmark, not a test)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from maskkit.cli.errors import handle_errors
from maskkit.cli.options import Threads, apply_threads, modality_options


def register(app: typer.Typer) -> None:
    app.command("bench")(bench)


def parse_masker_spec(spec: str) -> tuple[str, dict[str, str]]:
    """``self-guided:feature_layer=5,partition=pca`` -> ("self-guided", {...})."""
    from maskkit.config_utils import parse_key_values

    name, _, rest = spec.partition(":")
    return name, parse_key_values([p for p in rest.split(",") if p], f"--masker {spec}")


@handle_errors
def bench(
    modality: Annotated[str, typer.Option(help="Modality")] = "image",
    model: Annotated[list[str] | None, typer.Option(help="Model preset(s); repeat to compare")] = None,
    masker: Annotated[list[str] | None, typer.Option(
        help="Masker spec(s) name[:k=v,...]; repeat to compare (ratios vs the first)")] = None,
    mask_ratio: Annotated[float | None, typer.Option(help="Mask ratio")] = None,
    batch_size: Annotated[int, typer.Option(help="Batch size")] = 32,
    steps: Annotated[int, typer.Option(help="Timed steps")] = 10,
    warmup: Annotated[int, typer.Option(help="Untimed warm-up steps")] = 3,
    image_size: Annotated[str | None, typer.Option(help="Image size (e.g. 224)")] = None,
    patch_size: Annotated[str | None, typer.Option(help="Patch size (e.g. 16)")] = None,
    modality_opt: Annotated[list[str] | None, typer.Option("--modality-opt", help="k=v")] = None,
    device: Annotated[str, typer.Option(help="auto | cpu | cuda")] = "auto",
    precision: Annotated[str, typer.Option(help="auto | fp32 | bf16 | fp16")] = "auto",
    compile: Annotated[bool, typer.Option("--compile/--no-compile", help="torch.compile the step")] = False,
    grad_checkpoint: Annotated[bool, typer.Option(help="Activation checkpointing")] = False,
    threads: Threads = None,
    peak_tflops: Annotated[float | None, typer.Option(help="Device peak TFLOP/s for MFU")] = None,
    reference: Annotated[bool, typer.Option(
        "--reference/--no-reference",
        help="Also time a plain eager MAE of the same size (any modality: it uses the run's tokenizer)")] = False,
    json_out: Annotated[Path | None, typer.Option("--json", help="Append results as JSON lines")] = None,
    data: Annotated[str | None, typer.Option(
        help="Also time the data pipeline alone on this data (path, shards, hf:PATH) beside the step")] = None,
    num_workers: Annotated[list[int] | None, typer.Option(
        help="DataLoader workers for the loader timing; repeat to compare (default 0)")] = None,
    loader_batches: Annotated[int, typer.Option(help="Timed loader batches")] = 20,
) -> None:
    """Benchmark the training step: samples/s, tokens/s, peak memory, TFLOP/s and MFU."""

    from maskkit.lab.bench import bench_reference, bench_step
    from maskkit.train.config import TrainConfig

    apply_threads(threads)
    models = model or [None]
    specs = masker or ["random"]
    opts = modality_options({"image_size": image_size, "patch_size": patch_size}, modality_opt)
    results = []
    for m in models:
        for spec in specs:
            name, mopts = parse_masker_spec(spec)
            cfg = TrainConfig(modality=modality, data=data, model=m, masker=name, masker_options=mopts,
                              mask_ratio=mask_ratio, batch_size=batch_size, device=device, precision=precision,
                              modality_options=opts, compile=compile,
                              model_options={"grad_checkpoint": grad_checkpoint} if grad_checkpoint else {},
                              progress=False)
            r = bench_step(cfg, steps=steps, warmup=warmup, peak_tflops=peak_tflops)
            r.masker = spec
            results.append(r)
        if reference:
            ref_cfg = TrainConfig(modality=modality, model=m, mask_ratio=mask_ratio, batch_size=batch_size,
                                  device=device, precision=precision, modality_options=opts, progress=False)
            results.append(bench_reference(ref_cfg, steps=steps, warmup=warmup))
    table = Table(title=f"maskkit bench: {modality}, batch {batch_size}, {results[0].device}, {results[0].precision}")
    for col in ("model", "masker", "tokens (visible)", "ms/step", "samples/s", "tokens/s", "peak MB",
                "TFLOP/step", "TFLOP/s", "MFU", "× first"):
        table.add_column(col)
    first = {}
    for r in results:
        base = first.setdefault(r.model, r.ms_per_step)
        table.add_row(r.model, r.masker, f"{r.num_tokens} ({r.visible_tokens})", f"{r.ms_per_step:.1f}",
                      f"{r.samples_per_s:.1f}", f"{r.tokens_per_s:.0f}", f"{r.peak_memory_mb:.0f}",
                      f"{r.tflops_per_step:.3f}", f"{r.achieved_tflops:.2f}",
                      f"{r.mfu:.1%}" if r.mfu is not None else "n/a", f"{r.ms_per_step / base:.2f}")
    Console().print(table)
    loaders = _bench_data(modality, data, opts, batch_size, num_workers or [0], loader_batches, results) \
        if data is not None else []
    if json_out is not None:
        with open(json_out, "a") as fh:
            for r in results:
                fh.write(json.dumps(r.to_dict()) + "\n")
            for lr in loaders:
                fh.write(json.dumps({"loader": lr.to_dict()}) + "\n")


def _bench_data(modality: str, data: str, opts: dict, batch_size: int, workers: list[int], batches: int,
                steps: list) -> list:
    """Loader samples/s per worker count beside the step's, and which one bounds the run."""
    from maskkit.config_utils import ConfigError
    from maskkit.lab.bench_data import bench_loader, bound_by
    from maskkit.train.config import TrainConfig

    if any(w < 0 for w in workers):
        raise ConfigError(f"--num-workers must be >= 0, got {min(workers)}")
    cfg = TrainConfig(modality=modality, data=data, batch_size=batch_size, modality_options=opts, progress=False)
    results = [bench_loader(cfg, w, batches=batches) for w in workers]
    step = min(r.samples_per_s for r in steps)
    table = Table(title=f"data pipeline: {data}, batch {batch_size}")
    for col in ("workers", "loader samples/s", "ms/batch", "step samples/s", "open (s)", "bound by"):
        table.add_column(col)
    for r in results:
        verdict = "data loading" if r.samples_per_s < step else "training step"
        table.add_row(str(r.num_workers), f"{r.samples_per_s:.1f}", f"{r.ms_per_batch:.1f}", f"{step:.1f}",
                      f"{r.start_s:.2f}", verdict)
    console = Console()
    console.print(table)
    best = max(results, key=lambda r: r.samples_per_s)
    console.print(f"with {best.num_workers} worker(s): {bound_by(best.samples_per_s, step)}")
    return results
