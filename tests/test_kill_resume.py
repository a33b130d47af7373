"""A run killed at any moment (SIGKILL, SIGTERM) resumes to bit-identical parameters on CPU."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from maskkit.train.checkpoint import load_checkpoint
from maskkit.train.rundir import lock_state

ARGS = ["--modality", "image", "--model", "nano", "--image-size", "16", "--patch-size", "4",
        "--batch-size", "16", "--max-steps-per-epoch", "25", "--epochs", "2", "--no-progress",
        "--log-every", "1", "--seed", "5", "--masker", "block"]


def train(out, *extra, wait=True):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "maskkit", "train", *ARGS, "--out", str(out), *extra]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if wait:
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err[-2000:]
    return proc


def wait_for_step(out, step, proc, timeout=120):
    metrics = out / "metrics.jsonl"
    t0 = time.time()
    while time.time() - t0 < timeout:
        if metrics.is_file():
            steps = [json.loads(x).get("step", 0) for x in metrics.read_text().splitlines() if x.strip()]
            if steps and max(steps) >= step:
                return
        if proc.poll() is not None:
            pytest.fail("the run ended before it could be interrupted")
        time.sleep(0.05)
    pytest.fail("the run did not reach the step in time")


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    out = tmp_path_factory.mktemp("ref") / "run"
    train(out)
    return load_checkpoint(out / "checkpoints/last.pt")


def assert_same_params(a, b):
    assert a["position"]["global_step"] == b["position"]["global_step"]
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key


def test_sigkill_mid_epoch_then_resume_is_bit_identical(tmp_path, reference):
    out = tmp_path / "run"
    proc = train(out, "--save-every-steps", "3", wait=False)
    wait_for_step(out, 8, proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    saved = load_checkpoint(out / "checkpoints/last.pt")["position"]
    assert 0 < saved["global_step"] < 50  # killed before the end, after a mid-epoch checkpoint
    lock = lock_state(out)
    assert lock.state == "stale" and lock.holder["pid"] == proc.pid  # its record is left, its lock is not
    train(out, "--resume")
    assert lock_state(out).state == "free"
    assert_same_params(reference, load_checkpoint(out / "checkpoints/last.pt"))


def test_sigterm_saves_and_exits_cleanly(tmp_path, reference):
    out = tmp_path / "run"
    proc = train(out, wait=False)
    wait_for_step(out, 5, proc)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err[-2000:]
    assert "--resume" in err
    position = load_checkpoint(out / "checkpoints/last.pt")["position"]
    assert position["global_step"] >= 5
    train(out, "--resume")
    assert_same_params(reference, load_checkpoint(out / "checkpoints/last.pt"))


def test_disk_full_keeps_previous_checkpoint(tmp_path, monkeypatch):
    from maskkit.train import checkpoint as ck

    target = tmp_path / "last.pt"
    ck.atomic_save({"format": ck.FORMAT, "version": ck.VERSION, "model": {}, "config": {"n": 1}}, target)

    def full_disk(obj, fh):
        fh.write(b"partial")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(ck.torch, "save", full_disk)
    with pytest.raises(ck.CheckpointError, match="No space left on device"):
        ck.atomic_save({"format": ck.FORMAT, "version": ck.VERSION, "model": {}, "config": {"n": 2}}, target)
    monkeypatch.undo()
    assert ck.load_checkpoint(target)["config"] == {"n": 1}
    assert not (tmp_path / "last.pt.tmp").exists()


def test_sigusr1_checkpoints_and_resume_auto_continues_bit_identical(tmp_path, reference):
    """SLURM's advance warning: SIGUSR1 saves and exits 75 (requeue); the same command with
    ``--resume-auto`` (or ``--resume auto``) first started the empty directory and then continues it
    exactly."""
    out = tmp_path / "run"
    proc = train(out, "--resume-auto", wait=False)  # nothing there yet: a fresh start
    wait_for_step(out, 5, proc)
    proc.send_signal(signal.SIGUSR1)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 75, err[-2000:]
    position = load_checkpoint(out / "checkpoints/last.pt")["position"]
    assert 5 <= position["global_step"] < 50
    train(out, "--resume", "auto")  # the requeued job (spelt as requeue scripts do): now it resumes
    resumed = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines() if '"resume"' in x]
    assert [r["step"] for r in resumed] == [position["global_step"]]
    assert_same_params(reference, load_checkpoint(out / "checkpoints/last.pt"))
