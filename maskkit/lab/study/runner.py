"""Run a study: train what is not finished, evaluate what is not evaluated, then write the report.

Resuming is the default: a run whose ``summary.json`` exists (with the study's epochs) is not
trained again, one with a checkpoint but no summary continues from it, and an evaluation is
reused while its protocol matches. One device: runs go one after another in this process.
Several (``devices`` = cuda:0,cuda:1): one worker process per device, each running one job at a
time.
"""

from __future__ import annotations

import json
import multiprocessing
import shutil
import time
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from maskkit.config_utils import ConfigError
from maskkit.lab.study.config import StudyConfig
from maskkit.lab.study.evaluation import (
    EVAL_FILE,
    evaluate_baseline,
    evaluate_run,
    is_current,
    read_json,
)
from maskkit.lab.study.grid import (
    BaselineSpec,
    RunSpec,
    baseline_path,
    baseline_train_config,
    plan_baselines,
    plan_runs,
    run_dir,
    train_config,
)
from maskkit.lab.training import train
from maskkit.modality import DataError
from maskkit.registry import RegistryError, build_masker, get_masker, get_modality
from maskkit.safe_io import write_text
from maskkit.threads import configured_threads
from maskkit.train.build import build_modality
from maskkit.train.checkpoint import CheckpointError
from maskkit.train.config import TrainConfig
from maskkit.train.rundir import DirectoryLock
from maskkit.train.runtime import precision_name, resolve_precision
from maskkit.train.schedule import default_base_lr
from maskkit.train.trainer import TrainingInterrupted

#: fields of a run's saved config.json that must match the study for the run to count as its own
#: (everything that changes what the run learns; not where it ran or how often it logged)
MATCH_FIELDS = ("modality", "data", "masker", "mask_ratio", "model", "model_options", "epochs", "batch_size",
                "seed", "max_steps_per_epoch", "lr", "base_lr", "min_lr", "weight_decay", "betas",
                "warmup_epochs", "accum_steps", "clip_grad", "precision")


@dataclass
class Job:
    kind: str  # "run" | "baseline"
    run: RunSpec | None = None
    baseline: BaselineSpec | None = None

    @property
    def name(self) -> str:
        if self.run is not None:
            return self.run.run_id
        assert self.baseline is not None
        return f"baselines {self.baseline.key}"


@dataclass
class JobOutcome:
    name: str
    trained: bool = False
    evaluated: bool = False
    seconds: float = 0.0
    error: str | None = None


@dataclass
class StudyProgress:
    trained: int = 0
    evaluated: int = 0
    skipped: int = 0
    failures: list[JobOutcome] = field(default_factory=list)


# --------------------------------------------------------------------------- devices
def pin_device(device: str) -> tuple[str, torch.device]:
    """``auto``/``cpu``/``cuda``/``cuda:N`` -> (TrainConfig device kind, torch device); selects the GPU."""
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ConfigError(f"`devices` {device}: no CUDA device is available")
        index = int(device.split(":", 1)[1]) if ":" in device else torch.cuda.current_device()
        if index >= torch.cuda.device_count():
            raise ConfigError(f"`devices` {device}: only {torch.cuda.device_count()} CUDA device(s) here")
        torch.cuda.set_device(index)
        return "cuda", torch.device("cuda", index)
    return "cpu", torch.device("cpu")


# --------------------------------------------------------------------------- run state
def expected_precision(config: TrainConfig) -> str:
    """The precision a run of ``config`` resolves to here (fp32, bf16 or fp16)."""
    if config.precision != "auto":
        return config.precision
    cuda = config.device == "cuda" or (config.device == "auto" and torch.cuda.is_available())
    return precision_name(resolve_precision("auto", torch.device("cuda" if cuda else "cpu")))


def check_run_matches(directory: Path, expected: TrainConfig) -> None:
    """Refuse to mix a run made with other settings into this study (it would not be comparable)."""
    saved = read_json(directory / "config.json")
    if saved is None:
        return
    want = expected.to_dict()
    for key in MATCH_FIELDS:
        if key not in saved:  # a field newer than the run: nothing to compare
            continue
        if key == "mask_ratio":
            same = abs(float(saved[key]) - float(want[key])) < 1e-12
        elif key == "precision":  # what the run computed in: "auto" is fp32 on CPU and bf16 on CUDA
            have = saved.get("resolved_precision") or expected_precision(  # runs saved before it was recorded
                TrainConfig(precision=saved[key], device=saved.get("device", "auto")))
            wanted = expected_precision(expected)
            if have != wanted:
                raise ConfigError(f"{directory} was trained in {have} but this study runs in {wanted} "
                                  f"(precision={expected.precision!r} here); use another `out`, or set "
                                  f"precision so that every run uses the same one")
            continue
        elif key == "model":
            same = want[key] is None or saved[key] == want[key]
        elif key == "base_lr" and want[key] is None:  # unset: the modality's or preset's, resolved in training
            rate = default_base_lr(saved.get("model"), get_modality(expected.modality).default_base_lr)
            same = saved[key] is None or float(saved[key]) == rate
        else:
            same = json.dumps(saved[key], sort_keys=True) == json.dumps(want[key], sort_keys=True)
        if not same:
            raise ConfigError(f"{directory} was trained with {key}={saved.get(key)!r} but this study asks for "
                              f"{key}={want[key]!r}; use another `out` for a different study")

    mine = build_masker(expected.masker, expected.masker_options).describe_config()
    theirs = build_masker(saved["masker"], saved.get("masker_options", {})).describe_config()
    if json.dumps(mine, default=str, sort_keys=True) != json.dumps(theirs, default=str, sort_keys=True):
        raise ConfigError(f"{directory} was trained with masker options {theirs} but this study asks for {mine}; "
                          f"use another `out` for a different study")
    # compared as the modality parses them: "false" on a command line is the run's saved False
    parsed = build_modality(expected.modality, dict(expected.modality_options), expected.data).options_dict()
    for key, value in expected.modality_options.items():
        have = saved.get("modality_options", {}).get(key)
        if json.dumps(have, sort_keys=True, default=str) != json.dumps(parsed.get(key, value), sort_keys=True,
                                                                       default=str):
            raise ConfigError(f"{directory} was trained with {key}={have!r} "
                              f"but this study asks for {key}={value!r}; use another `out`")


def run_state(directory: Path, epochs: int) -> str:
    """"done" (trained), "resume" (a checkpoint to continue from) or "fresh"."""
    summary = read_json(directory / "summary.json")
    if summary is not None and int(summary.get("epochs", -1)) >= epochs:
        return "done"
    if (directory / "checkpoints" / "last.pt").is_file():
        return "resume"
    return "fresh"


def job_pending(study: StudyConfig, job: Job) -> bool:
    if job.kind == "baseline":
        assert job.baseline is not None
        return not is_current(read_json(baseline_path(study, job.baseline)), study)
    assert job.run is not None
    directory = run_dir(study, job.run)
    return run_state(directory, study.epochs) != "done" or not is_current(read_json(directory / EVAL_FILE), study)


# --------------------------------------------------------------------------- one job
def execute_job(job: Job, study: StudyConfig, device: str, console: Any = None,
                progress: bool | None = None) -> JobOutcome:
    """Train (if needed) and evaluate (if needed) one run, or evaluate one baseline."""
    start = time.perf_counter()
    outcome = JobOutcome(job.name)
    kind, torch_device = pin_device(device)
    if job.kind == "baseline":
        assert job.baseline is not None
        evaluate_baseline(baseline_train_config(study, job.baseline), study, torch_device,
                          baseline_path(study, job.baseline))
        outcome.evaluated = True
    else:
        assert job.run is not None
        directory = run_dir(study, job.run)
        config = train_config(study, job.run, device=kind, progress=progress)
        check_run_matches(directory, config)
        state = run_state(directory, study.epochs)
        if state != "done":
            if state == "fresh" and directory.exists():

                with DirectoryLock(directory, "compare"):  # never delete under a process that owns it
                    pass
                shutil.rmtree(directory)  # leftovers of a run that never saved a checkpoint
            config = train_config(study, job.run, device=kind, progress=progress, resume=state == "resume")
            train(config, console=console)
            outcome.trained = True
        if not is_current(read_json(directory / EVAL_FILE), study):
            evaluate_run(directory, study, torch_device)
            outcome.evaluated = True
    outcome.seconds = time.perf_counter() - start
    return outcome


# --------------------------------------------------------------------------- worker processes
_WORKER: dict[str, Any] = {}


def _init_worker(devices: Any, modules: list[str], threads: int) -> None:
    """Each worker takes one device for its lifetime and imports the modules that register plug-ins."""
    import importlib

    _WORKER["device"] = devices.get()
    torch.set_num_threads(max(1, threads))
    for name in modules:
        importlib.import_module(name)


def _worker_job(job: Job, study_values: dict[str, Any]) -> JobOutcome:
    study = StudyConfig.from_dict(study_values)
    return execute_job(job, study, _WORKER["device"], console=None, progress=False)


def plugin_modules(study: StudyConfig) -> list[str]:
    """Modules defining the study's maskers and modality, for spawned workers to import first."""

    names = {get_modality(study.modality).__module__}
    names.update(get_masker(m).__module__ for m in study.maskers)
    return sorted(n for n in names if n and n != "__main__" and not n.startswith("builtins"))


# --------------------------------------------------------------------------- the study
def plan_jobs(study: StudyConfig) -> list[Job]:
    jobs = [Job("baseline", baseline=b) for b in plan_baselines(study)]
    return jobs + [Job("run", run=r) for r in plan_runs(study)]


def validate_study(study: StudyConfig) -> None:
    """Fail before any training: unknown maskers/options, a modality that rejects an option."""

    for masker in study.maskers:
        build_masker(masker, study.masker_options.get(masker, {}))
    for patch in list(study.patch_sizes) or [None]:
        opts = dict(study.modality_options)
        if patch is not None:
            opts["patch_size"] = patch
        build_modality(study.modality, opts, study.data)


def write_study_file(study: StudyConfig) -> None:
    out = Path(study.out)
    out.mkdir(parents=True, exist_ok=True)
    write_text(out / "study.json", json.dumps(study.to_dict(), indent=2))


def run_jobs(study: StudyConfig, console: Any = None, shard: tuple[int, int] | None = None,
             offset: int = 0) -> StudyProgress:
    """Execute every pending job (with ``shard`` (i, n): only jobs i, i + n, ... of a job list in which
    this study's jobs start at ``offset``, as a sweep's sub-studies do); user errors stop the study,
    other failures are collected."""
    validate_study(study)
    for spec in plan_runs(study):  # finished runs too: a study never mixes in runs made otherwise
        check_run_matches(run_dir(study, spec), train_config(study, spec, device="cpu"))
    write_study_file(study)
    jobs = shard_jobs(plan_jobs(study), shard, offset)
    pending = [j for j in jobs if job_pending(study, j)]
    progress = StudyProgress(skipped=len(jobs) - len(pending))
    say = console.print if console is not None else (lambda *a, **k: None)
    say(f"study {study.out}: {len(jobs)} jobs, {progress.skipped} already done, {len(pending)} to do "
        f"on {', '.join(study.devices)}")
    if study.parallel:
        outcomes = _run_parallel(study, pending, say)
    else:
        outcomes = _run_sequential(study, pending, say, console)
    for outcome in outcomes:
        if outcome.error is not None:
            progress.failures.append(outcome)
        progress.trained += outcome.trained
        progress.evaluated += outcome.evaluated
    return progress


def shard_jobs(jobs: list[Job], shard: tuple[int, int] | None, offset: int = 0) -> list[Job]:
    """Jobs ``i, i + n, i + 2n, ...`` of the study's fixed job order: the share of task ``i`` of ``n``
    (a SLURM job array), the same in every task, so the shares cover every job exactly once. With
    ``offset`` the order continues a longer list (a sweep's earlier points), so the count of a
    sweep's tasks need not divide any one point's jobs."""
    if shard is None:
        return jobs
    index, count = shard
    return jobs[(index - offset) % count::count]


def _user_errors() -> tuple[type[BaseException], ...]:

    return (ConfigError, DataError, RegistryError, CheckpointError)


def _run_sequential(study: StudyConfig, jobs: list[Job], say: Any, console: Any) -> list[JobOutcome]:
    outcomes = []
    for i, job in enumerate(jobs, 1):
        say(f"[{i}/{len(jobs)}] {job.name}")
        try:
            outcomes.append(execute_job(job, study, study.devices[0], console=console))
        except TrainingInterrupted:
            raise TrainingInterrupted(f"study interrupted during {job.name}; a checkpoint was saved. Run the "
                                      f"same compare command again to continue where it stopped") from None
        except _user_errors():
            raise
        except Exception as exc:
            outcomes.append(JobOutcome(job.name, error=f"{type(exc).__name__}: {exc}"))
            say(f"[red]failed[/]: {job.name}: {type(exc).__name__}: {exc}")
    return outcomes


def _run_parallel(study: StudyConfig, jobs: list[Job], say: Any) -> list[JobOutcome]:
    ctx = multiprocessing.get_context("spawn")  # CUDA cannot be used in forked children
    devices = ctx.Queue()
    for d in study.devices:
        devices.put(d)
    threads = max(1, configured_threads() // len(study.devices))  # the CPUs we may use, not the host's
    values = study.to_dict()
    outcomes: list[JobOutcome] = []
    with ProcessPoolExecutor(max_workers=len(study.devices), mp_context=ctx, initializer=_init_worker,
                             initargs=(devices, plugin_modules(study), threads)) as pool:
        futures: dict[Future, Job] = {pool.submit(_worker_job, job, values): job for job in jobs}
        try:
            remaining = set(futures)
            while remaining:
                done, remaining = wait(remaining, return_when=FIRST_COMPLETED)
                for fut in done:
                    job = futures[fut]
                    try:
                        outcome = fut.result()
                    except _user_errors():
                        for other in remaining:
                            other.cancel()
                        raise
                    except Exception as exc:
                        outcome = JobOutcome(job.name, error=f"{type(exc).__name__}: {exc}")
                        say(f"[red]failed[/]: {job.name}: {outcome.error}")
                    else:
                        say(f"done: {job.name} ({outcome.seconds:.0f}s)")
                    outcomes.append(outcome)
        except KeyboardInterrupt:
            pool.shutdown(wait=True, cancel_futures=True)
            raise TrainingInterrupted("study interrupted; runs in progress saved checkpoints. Run the same "
                                      "compare command again to continue where it stopped") from None
    return outcomes


__all__ = ["Job", "JobOutcome", "StudyProgress", "check_run_matches", "execute_job",
           "pin_device", "plan_jobs", "run_jobs", "run_state", "validate_study"]
