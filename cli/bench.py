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
    reference: Annotated[bool, typer.Option("--reference/--no-reference",
                                            help="Also time a plain eager MAE of the same size (image only)")] = False,
    json_out: Annotated[Path | None, typer.Option("--json", help="Append results as JSON lines")] = None,
) -> None:
    """Benchmark the training step: samples/s, tokens/s, peak memory, TFLOP/s and MFU."""

    from maskkit.bench import bench_step
    from maskkit.train.config import TrainConfig

    apply_threads(threads)
    models = model or [None]
    specs = masker or ["random"]
    opts = modality_options({"image_size": image_size, "patch_size": patch_size}, modality_opt)
    results = []
    for m in models:
        for spec in specs:
            name, mopts = parse_masker_spec(spec)
            cfg = TrainConfig(modality=modality, model=m, masker=name, masker_options=mopts,
                              mask_ratio=mask_ratio, batch_size=batch_size, device=device, precision=precision,
                              modality_options=opts, compile=compile,
                              model_options={"grad_checkpoint": grad_checkpoint} if grad_checkpoint else {},
                              progress=False)
            r = bench_step(cfg, steps=steps, warmup=warmup, peak_tflops=peak_tflops)
            r.masker = spec
            results.append(r)
        if reference:
            if modality != "image":
                from maskkit.config_utils import ConfigError

                raise ConfigError("--reference compares against a plain image MAE: use --modality image")
            from maskkit.bench import bench_reference
            from maskkit.train.build import build_run

            parts = build_run(TrainConfig(modality=modality, model=m, modality_options=opts, progress=False))
            tok = parts.model.tokenizer
            shape = (tok.channels, *tok.image_size)  # type: ignore[attr-defined]
            ref_cfg = TrainConfig(modality=modality, model=m, mask_ratio=mask_ratio, batch_size=batch_size,
                                  device=device, precision=precision, modality_options=opts, progress=False)
            results.append(bench_reference(ref_cfg, shape, steps=steps, warmup=warmup))
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
    if json_out is not None:
        with open(json_out, "a") as fh:
            for r in results:
                fh.write(json.dumps(r.to_dict()) + "\n")
