"""`maskkit compare`: maskers x seeds (x mask ratios x patch sizes) under one budget, one report."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from maskkit.cli.errors import fail, handle_errors
from maskkit.cli.options import Threads, apply_threads, given_fields

Opt = typer.Option


def register(app: typer.Typer) -> None:
    app.command("compare")(compare)


@handle_errors
def compare(
    config: Annotated[Path | None, typer.Argument(help="Study TOML file (command-line options override it)")] = None,
    modality: Annotated[str | None, Opt(help="image | video | audio | pointcloud | any installed")] = None,
    data: Annotated[str | None, Opt(help="Training data: path or builtin:NAME")] = None,
    eval_data: Annotated[str | None, Opt(help="Held-out data for probes and reconstruction "
                                                 "(default: the training data, no augmentation)")] = None,
    holdout: Annotated[float | None, Opt(help="Without --eval-data: fraction of training samples every run "
                                              "leaves out, for the reconstruction loss (default 0.1)")] = None,
    model: Annotated[str | None, Opt(help="Model preset (nano | micro | tiny | small | base ...)")] = None,
    maskers: Annotated[str | None, Opt(help="Comma-separated maskers, e.g. random,block,self-guided")] = None,
    masker_opt: Annotated[list[str] | None, Opt("--masker-opt", "-O",
                                                   help="MASKER.key=value, e.g. self-guided.start_epoch=5")] = None,
    reference: Annotated[str | None, Opt(help="Masker the others are compared with (default random)")] = None,
    seeds: Annotated[str | None, Opt(help="Number of seeds (3 = seeds 0,1,2) or a list (0,5,7)")] = None,
    epochs: Annotated[int | None, Opt(help="Training epochs of every run")] = None,
    batch_size: Annotated[int | None, Opt(help="Batch size of every run")] = None,
    max_steps_per_epoch: Annotated[int | None, Opt(help="Cap batches per epoch")] = None,
    mask_ratios: Annotated[str | None, Opt(help="Comma-separated mask ratios to sweep, e.g. 0.5,0.75,0.9")] = None,
    patch_sizes: Annotated[str | None, Opt(help="Comma-separated patch sizes to sweep, e.g. 2,4,8")] = None,
    modality_opt: Annotated[list[str] | None, Opt("--modality-opt", help="Modality option k=v")] = None,
    model_opt: Annotated[list[str] | None, Opt("--model-opt", help="Model override k=v")] = None,
    train_opt: Annotated[list[str] | None, Opt("--train-opt", help="Other training option k=v "
                                                                   "(base_lr, warmup_epochs, precision, ...)")] = None,
    devices: Annotated[str | None, Opt(help="auto | cpu | cuda | cuda:0,cuda:1 (one worker per device)")] = None,
    out: Annotated[str | None, Opt(help="Study directory (re-running it resumes)")] = None,
    probe_feature: Annotated[str | None, Opt(help="mean | cls: features for probes")] = None,
    eval_max_samples: Annotated[int | None, Opt(help="Labelled samples for probes")] = None,
    knn_k: Annotated[int | None, Opt(help="Neighbours for k-NN")] = None,
    recon_max_samples: Annotated[int | None, Opt(help="Samples for the reconstruction loss")] = None,
    eval_seed: Annotated[int | None, Opt(help="Seed of the evaluation subset, folds and shared masks")] = None,
    curve_every: Annotated[int | None, Opt(help="Epochs between learning-curve probes (0 = final only)")] = None,
    eval: Annotated[str | None, Opt("--eval", help="Protocols: probe (frozen features) and/or finetune "
                                                   "(end-to-end, beside random-init), e.g. probe,finetune")] = None,
    finetune_epochs: Annotated[int | None, Opt(help="Fine-tuning epochs per run (with --eval finetune)")] = None,
    finetune_opt: Annotated[list[str] | None, Opt(
        "--finetune-opt", help="Fine-tuning option k=v (lr, layer_decay, mixup, freeze, ...)")] = None,
    analysis: Annotated[bool | None, Opt("--analysis/--no-analysis",
                                            help="Token-clustering metrics (maskkit.lab.analysis)")] = None,
    interval: Annotated[str | None, Opt(help="t | bootstrap: interval of paired differences")] = None,
    confidence: Annotated[float | None, Opt(help="Interval confidence level")] = None,
    progress: Annotated[bool | None, Opt("--progress/--no-progress", help="Per-run progress bars")] = None,
    sweep: Annotated[list[str] | None, Opt("--sweep", help="Recipe sweep KEY=v1,v2 (repeatable; base_lr, epochs, "
                                                            "warmup_epochs, model, data, ...): one study per "
                                                            "combination, summed up in sweep.md")] = None,
    report_only: Annotated[bool, Opt("--report-only", help="Rewrite results.csv, figures and report.md "
                                                           "from what the study directory holds")] = False,
    shard: Annotated[str | None, Opt(help="I/N: run only jobs I, I+N, I+2N... (task I of a job array of N; "
                                           "with --sweep, of every point's jobs; no report: build it with "
                                           "--report-only once all tasks are done)")
                     ] = None,
    threads: Threads = None,
) -> None:
    """Compare maskers under the same data, model, budget and evaluation; writes results.csv,
    report.md and figures. Re-running the same command resumes: finished runs are not redone."""
    arguments = dict(locals())
    apply_threads(threads)
    from rich.console import Console

    from maskkit.config_utils import parse_key_values
    from maskkit.lab.study.config import StudyConfig, load_study_toml, merge_study, parse_masker_options
    from maskkit.lab.study.pipeline import run_study
    from maskkit.lab.study.sweep import parse_sweep, run_sweep, sweep_outputs_note

    file_values = load_study_toml(config) if config is not None else {}
    if report_only and config is None:  # the study's own settings, as its last run saved them
        saved = Path(out or "studies/latest") / "study.json"
        if not saved.is_file():
            fail(f"--report-only: {saved} does not exist (give the study file or the --out of a study)")
        file_values = json.loads(saved.read_text())
    cli_values = given_fields(arguments, StudyConfig)
    cli_values.update({
        "masker_options": parse_masker_options(masker_opt) or None,
        "modality_options": parse_key_values(modality_opt, "--modality-opt") or None,
        "model_options": parse_key_values(model_opt, "--model-opt") or None,
        "train_options": parse_key_values(train_opt, "--train-opt") or None,
        "finetune_options": parse_key_values(finetune_opt, "--finetune-opt") or None,
        "sweep": parse_sweep(sweep) or None,
    })
    study = merge_study(file_values, cli_values)
    console = Console(stderr=True)
    if shard is not None:
        _run_shard(study, shard, console)
        return
    if study.sweep:
        outcomes = run_sweep(study, console=console, report_only=report_only)
        console.print(sweep_outputs_note(study))
        failures = [f.name for o in outcomes for f in o.progress.failures]
        if failures:
            fail(f"{len(failures)} run(s) failed ({', '.join(failures)}); re-run the command to retry them", code=1)
        return
    outcome = run_study(study, console=console, report_only=report_only)
    print_summary(console, outcome)
    if outcome.progress.failures:
        names = ", ".join(f.name for f in outcome.progress.failures)
        fail(f"{len(outcome.progress.failures)} run(s) failed ({names}); the report lists the errors and covers "
             f"the runs that finished. Re-run the command to retry them", code=1)


def _run_shard(study, shard: str, console) -> None:
    """``--shard I/N``: this task's share of the jobs (of every sweep point's, with ``--sweep``), then
    a one-line account."""
    from maskkit.lab.study.pipeline import run_study_shard
    from maskkit.lab.study.sweep import run_sweep_shard

    try:
        index, count = (int(v) for v in shard.split("/"))
    except ValueError:
        fail(f"--shard must be I/N (e.g. 3/8), got {shard!r}")
    run = run_sweep_shard if study.sweep else run_study_shard
    progress = run(study, (index, count), console=console)
    console.print(f"[green]done[/]: shard {index}/{count}: {progress.trained} trained, {progress.evaluated} "
                  f"evaluated, {progress.skipped} already done")
    if progress.failures:
        fail(f"{len(progress.failures)} run(s) failed ({', '.join(f.name for f in progress.failures)})", code=1)


def print_summary(console, outcome) -> None:
    """The verdicts in a table, then where the files are."""
    from rich.table import Table

    from maskkit.lab.study.tables import METRIC_BY_COLUMN, fmt, fmt_p

    if outcome.comparisons:
        table = Table(title="paired differences vs the reference (masker − reference, per seed)")
        for col in ("setting", "masker", "metric", "mean", "interval", "p_holm", "verdict"):
            table.add_column(col)
        for pc in outcome.comparisons:
            table.add_row(pc.setting, pc.masker, METRIC_BY_COLUMN[pc.metric].label, fmt(pc.mean, 4, True),
                          f"[{fmt(pc.low, 4, True)}, {fmt(pc.high, 4, True)}]", fmt_p(pc.decisive_p), pc.verdict)
        console.print(table)
    p = outcome.progress
    console.print(f"[green]done[/]: {p.trained} trained, {p.evaluated} evaluated, {p.skipped} already done")
    console.print(f"report: {outcome.report}\nresults: {outcome.results}")
