"""SLURM without torchrun: ranks from SLURM_PROCID/SLURM_NTASKS/SLURM_LOCALID train what torchrun's do."""

import os
import socket
import subprocess
import sys

import pytest
import torch

from maskkit.train.checkpoint import load_checkpoint
from maskkit.train.cluster import interrupt_exit_code, launcher_ranks

ARGS = ["--modality", "image", "--model", "nano", "--image-size", "8", "--patch-size", "2", "--masker", "random",
        "--max-steps-per-epoch", "3", "--epochs", "1", "--batch-size", "8", "--no-progress", "--seed", "4",
        "--warmup-epochs", "0", "--lr", "1e-3", "--log-every", "1"]
LAUNCHER_VARS = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT",
                 "SLURM_PROCID", "SLURM_NTASKS", "SLURM_LOCALID", "SLURM_STEP_NUM_TASKS", "SLURM_NTASKS_PER_NODE")


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in LAUNCHER_VARS}
    env.update(OMP_NUM_THREADS="1", **extra)
    return env


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_launcher_ranks_prefer_torchrun_then_slurm():
    assert launcher_ranks({}) == (0, 1, 0)
    slurm = {"SLURM_PROCID": "3", "SLURM_NTASKS": "8", "SLURM_LOCALID": "1"}
    assert launcher_ranks(slurm) == (3, 8, 1)
    assert launcher_ranks({**slurm, "SLURM_STEP_NUM_TASKS": "4"}) == (3, 4, 1)  # this step's tasks
    assert launcher_ranks({**slurm, "RANK": "1", "WORLD_SIZE": "2", "LOCAL_RANK": "0"}) == (1, 2, 0)  # srun torchrun
    assert interrupt_exit_code(10) == 75 and interrupt_exit_code(15) == 130 and interrupt_exit_code(None) == 130


@pytest.mark.distributed
def test_two_slurm_tasks_train_exactly_what_torchrun_trains(tmp_path):
    cmd = [sys.executable, "-m", "maskkit", "train", *ARGS]
    port = str(free_port())
    procs = [subprocess.Popen([*cmd, "--out", str(tmp_path / "slurm")], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True,
                              env=clean_env(SLURM_PROCID=str(r), SLURM_NTASKS="2", SLURM_LOCALID=str(r),
                                            MASTER_ADDR="127.0.0.1", MASTER_PORT=port))
             for r in (0, 1)]
    for p in procs:
        _, err = p.communicate(timeout=240)
        assert p.returncode == 0, err[-3000:]
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2"]
    done = subprocess.run([*torchrun, "-m", "maskkit", "train", *ARGS, "--out", str(tmp_path / "torchrun")],
                          env=clean_env(), capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    slurm = load_checkpoint(tmp_path / "slurm/checkpoints/last.pt")
    ref = load_checkpoint(tmp_path / "torchrun/checkpoints/last.pt")
    assert slurm["position"]["world_size"] == ref["position"]["world_size"] == 2
    assert slurm["position"]["global_step"] == ref["position"]["global_step"] == 3
    for key, value in ref["model"].items():  # same ranks, same shards, same gloo reductions: bit for bit
        assert torch.equal(slurm["model"][key], value), key


COMPARE = ["--modality", "image", "--model", "nano", "--maskers", "random", "--seeds", "1", "--epochs", "1",
           "--batch-size", "16", "--max-steps-per-epoch", "4", "--modality-opt", "image_size=16",
           "--modality-opt", "patch_size=4", "--eval-max-samples", "40", "--recon-max-samples", "16",
           "--no-analysis", "--curve-every", "0", "--no-progress"]


def test_compare_over_a_job_array_then_one_report(tmp_path):
    """Each array task runs its share (--shard I/N) and writes no report; --report-only then builds
    it from every run, and a task rerun (a requeue) redoes nothing."""
    import csv
    import json

    from typer.testing import CliRunner

    from maskkit.cli.app import app

    runner, out = CliRunner(), tmp_path / "study"
    for index in (0, 1):
        result = runner.invoke(app, ["compare", *COMPARE, "--out", str(out), "--shard", f"{index}/2"])
        assert result.exit_code == 0, result.output
        assert not (out / "report.md").exists()
    again = runner.invoke(app, ["compare", *COMPARE, "--out", str(out), "--shard", "1/2"])
    assert again.exit_code == 0 and "0 trained, 0 evaluated" in again.output, again.output
    bad = runner.invoke(app, ["compare", *COMPARE, "--out", str(out), "--shard", "2/2"])
    assert bad.exit_code == 2 and "--shard must be I/N" in bad.output
    report = runner.invoke(app, ["compare", "--out", str(out), "--report-only"])
    assert report.exit_code == 0, report.output
    with open(out / "results.csv") as fh:
        assert {r["arm"] for r in csv.DictReader(fh)} == {"pretrained", "random-init", "raw-input"}
    assert json.loads((out / "runs/random__r0.75__s0/summary.json").read_text())["steps"] == 4


def test_resume_auto_is_accepted_as_two_words():
    """SLURM requeue scripts say ``--resume auto``; the command line reads it as ``--resume-auto``."""
    from maskkit.cli.app import spell_resume_auto

    assert spell_resume_auto(["train", "--out", "r", "--resume", "auto"]) == ["train", "--out", "r", "--resume-auto"]
    assert spell_resume_auto(["train", "--resume=auto", "--epochs", "2"]) == ["train", "--resume-auto", "--epochs", "2"]
    assert spell_resume_auto(["train", "--resume", "--epochs", "2"]) == ["train", "--resume", "--epochs", "2"]
    assert spell_resume_auto(["train", "--resume"]) == ["train", "--resume"]
