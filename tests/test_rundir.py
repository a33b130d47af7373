"""Run-directory ownership, overwrite protection and resume compatibility (toy modality, in-process CLI)."""

import json
import os
import subprocess
import sys

import pytest
import torch
from typer.testing import CliRunner

from maskkit.cli.app import app
from maskkit.config_utils import ConfigError
from maskkit.train import rundir
from maskkit.train.checkpoint import load_checkpoint
from maskkit.train.rundir import LOCK_NAME, DirectoryBusy, DirectoryLock, lock_state, owned

runner = CliRunner()
TOY = ["--modality", "toy", "--model", "nano", "--batch-size", "16", "--no-progress", "--log-every", "2",
       "--warmup-epochs", "0.5", "--base-lr", "1e-3"]


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def error_lines(output):
    return [line for line in output.splitlines() if line.startswith("error:")]


def snapshot(directory):
    return {str(p.relative_to(directory)): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()}


# --------------------------------------------------------------------------- the lock
def test_second_owner_is_refused_and_the_lock_is_released(tmp_path):
    first = DirectoryLock(tmp_path / "d", "train").acquire()
    state = lock_state(tmp_path / "d")
    assert state.state == "held" and state.holder["pid"] == os.getpid()
    with pytest.raises(DirectoryBusy, match=rf"in use by maskkit train \(pid {os.getpid()} on "):
        DirectoryLock(tmp_path / "d", "compare").acquire()
    first.release()
    assert not (tmp_path / "d" / LOCK_NAME).exists() and lock_state(tmp_path / "d").state == "free"
    with pytest.raises(RuntimeError, match="boom"), owned(tmp_path / "d", "train"):
        raise RuntimeError("boom")
    with owned(tmp_path / "d", "train"):  # the exception released it
        assert lock_state(tmp_path / "d").state == "held"
    (tmp_path / "file").write_text("x")
    with pytest.raises(ConfigError, match="file/run: cannot write there"):
        DirectoryLock(tmp_path / "file" / "run", "compare").acquire()


def test_sigkilled_holder_leaves_a_stale_record_that_does_not_block(tmp_path):
    code = ("import sys, time; from maskkit.train.rundir import DirectoryLock; "
            "DirectoryLock(sys.argv[1], 'train').acquire(); print('locked', flush=True); time.sleep(60)")
    proc = subprocess.Popen([sys.executable, "-c", code, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "locked"
        assert lock_state(tmp_path).holder["pid"] == proc.pid
        with pytest.raises(DirectoryBusy, match=f"pid {proc.pid}"):
            DirectoryLock(tmp_path, "train").acquire()
    finally:
        proc.kill()
        proc.wait()
    state = lock_state(tmp_path)
    assert state.state == "stale" and state.holder["pid"] == proc.pid  # the record survived SIGKILL
    with owned(tmp_path, "train"):
        assert lock_state(tmp_path).holder["pid"] == os.getpid()


def test_without_flock_the_holder_record_decides(tmp_path, monkeypatch):
    monkeypatch.setattr(rundir, "_flock", lambda fd: None)  # a file system without flock
    with owned(tmp_path, "train"):
        with pytest.raises(DirectoryBusy, match=f"pid {os.getpid()}"):
            DirectoryLock(tmp_path, "train").acquire()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    record = rundir.holder_record("train") | {"pid": dead.pid}
    (tmp_path / LOCK_NAME).write_text(json.dumps(record))
    assert lock_state(tmp_path).state == "stale"
    with owned(tmp_path, "train"):  # the dead process's record is taken over
        assert json.loads((tmp_path / LOCK_NAME).read_text())["pid"] == os.getpid()


def test_train_on_a_locked_directory_exits_2_naming_the_holder(tmp_path):
    with owned(tmp_path / "run", "train"):
        result = invoke("train", *TOY, "--out", tmp_path / "run")
    assert result.exit_code == 2, result.output
    lines = error_lines(result.output)
    assert len(lines) == 1 and f"is in use by maskkit train (pid {os.getpid()}" in lines[0]
    assert not (tmp_path / "run" / "config.json").exists()


def test_compare_on_a_locked_study_exits_2(tmp_path):
    with owned(tmp_path / "study", "compare"):
        result = invoke("compare", "--modality", "toy", "--maskers", "random", "--seeds", "1", "--epochs", "1",
                        "--out", tmp_path / "study", "--no-progress")
    assert result.exit_code == 2, result.output
    assert len(error_lines(result.output)) == 1 and "is in use by maskkit compare" in result.output
    assert not (tmp_path / "study" / "study.json").exists()


# --------------------------------------------------------------------------- no silent overwrite
@pytest.fixture
def finished_run(tmp_path):
    out = tmp_path / "run"
    result = invoke("train", *TOY, "--epochs", "1", "--out", out)
    assert result.exit_code == 0, result.output
    return out


def test_rerun_without_resume_or_overwrite_changes_nothing(finished_run):
    before = snapshot(finished_run)
    result = invoke("train", *TOY, "--epochs", "1", "--out", finished_run)
    assert result.exit_code == 2, result.output
    lines = error_lines(result.output)
    assert len(lines) == 1 and "already holds a run" in lines[0] and "--resume" in lines[0]
    assert snapshot(finished_run) == before  # every file byte-identical, none added or removed


def test_overwrite_moves_the_old_run_aside(finished_run):
    before = snapshot(finished_run)
    result = invoke("train", *TOY, "--epochs", "1", "--seed", "3", "--out", finished_run, "--overwrite")
    assert result.exit_code == 0, result.output
    aside = list(finished_run.parent.glob("run.old-*"))
    assert len(aside) == 1 and snapshot(aside[0]) == before
    assert json.loads((finished_run / "config.json").read_text())["seed"] == 3
    assert (finished_run / "summary.json").is_file() and not (finished_run / LOCK_NAME).exists()
    both = invoke("train", *TOY, "--out", finished_run, "--overwrite", "--resume")
    assert both.exit_code == 2 and "contradict" in both.output


# --------------------------------------------------------------------------- resume compatibility
def test_resume_with_another_mask_ratio_needs_the_flag_and_is_recorded(finished_run):
    config_before = (finished_run / "config.json").read_bytes()
    refused = invoke("train", "--out", finished_run, "--resume", "--epochs", "2", "--mask-ratio", "0.5")
    assert refused.exit_code == 2, refused.output
    line = error_lines(refused.output)[0]
    assert "mask_ratio 0.75 -> 0.5" in line and "epochs 1 -> 2" in line and "--allow-config-change" in line
    assert (finished_run / "config.json").read_bytes() == config_before

    allowed = invoke("train", "--out", finished_run, "--resume", "--epochs", "2", "--mask-ratio", "0.5",
                     "--allow-config-change")
    assert allowed.exit_code == 0, allowed.output
    saved = json.loads((finished_run / "config.json").read_text())
    assert saved["mask_ratio"] == 0.5 and saved["epochs"] == 2 and "allow_config_change" not in saved
    start, resume = saved["history"][0], saved["history"][-1]
    assert start["event"] == "start" and start["config"]["mask_ratio"] == 0.75 and start["config"]["epochs"] == 1
    assert resume["event"] == "resume" and resume["step"] == 6 and resume["epoch"] == 1
    assert resume["changes"] == {"epochs": {"from": 1, "to": 2}, "mask_ratio": {"from": 0.75, "to": 0.5}}
    assert load_checkpoint(finished_run / "checkpoints/last.pt")["history"] == saved["history"]
    rows = [json.loads(x) for x in (finished_run / "metrics.jsonl").read_text().splitlines()]
    assert any(r["type"] == "config_change" and r["step"] == 6 for r in rows)
    assert json.loads((finished_run / "summary.json").read_text())["steps"] == 12

    again = invoke("train", "--out", finished_run, "--resume")  # the new values are now the run's own:
    assert again.exit_code == 2, again.output  # no settings complaint, only that nothing is left to train
    assert "already finished its 2 epochs" in error_lines(again.output)[0]


def test_resume_never_changes_shapes(finished_run):
    result = invoke("train", "--out", finished_run, "--resume", "--patch-size", "4", "--allow-config-change")
    assert result.exit_code == 2, result.output
    assert "cannot change patch_size 2 -> 4" in error_lines(result.output)[0]
    runtime = invoke("train", "--out", finished_run, "--resume", "--log-every", "1", "--save-every", "2")
    assert runtime.exit_code == 2, runtime.output  # run-time settings need no flag: the only refusal is
    assert "already finished its 1 epoch;" in error_lines(runtime.output)[0]  # that the run is done


def test_changed_masker_options_follow_the_same_rule(toy_config, tmp_path):
    from maskkit.train.checkpoint import CheckpointError
    from maskkit.train.trainer import run_training

    run_training(toy_config(masker="block"))
    with pytest.raises(CheckpointError, match="masker_options"):
        run_training(toy_config(masker="block", masker_options={"aspect_min": 0.5}, resume=True, epochs=1))
    result = run_training(toy_config(masker="block", masker_options={"aspect_min": 0.5}, resume=True, epochs=2,
                                     allow_config_change=True))
    assert result.steps == 12
    history = load_checkpoint(tmp_path / "run/checkpoints/last.pt")["history"]
    assert history[-1]["changes"]["masker_options"]["to"] == {"aspect_min": 0.5}
    assert all(torch.isfinite(v).all() for v in load_checkpoint(tmp_path / "run")["model"].values())
