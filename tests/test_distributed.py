"""torchrun with gloo on loopback: 2 processes equal 1 process with the same global batch; resume."""

import os
import subprocess
import sys

import pytest
import torch

from maskkit.train.checkpoint import load_checkpoint

pytestmark = pytest.mark.distributed

COMMON = ["--modality", "image", "--model", "nano", "--image-size", "8", "--patch-size", "2",
          "--masker", "random", "--max-steps-per-epoch", "3", "--no-progress", "--warmup-epochs", "0",
          "--lr", "1e-3", "--seed", "3", "--log-every", "1", "--save-every", "1"]


def run(args, nproc=None, env_extra=None):
    env = dict(os.environ, OMP_NUM_THREADS="1", MASKKIT_TEST_THREADS="1")
    env.update(env_extra or {})
    if nproc:
        # torchrun of the interpreter running the tests (a venv's torchrun script may name another python)
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}",
                "-m", "maskkit", "train", *args]
    else:
        cmd = [sys.executable, "-m", "maskkit", "train", *args]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


@pytest.fixture(scope="module")
def ddp_runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("ddp")
    run([*COMMON, "--epochs", "2", "--batch-size", "8", "--out", str(root / "ddp")], nproc=2)
    run([*COMMON, "--epochs", "2", "--batch-size", "16", "--out", str(root / "single")])
    return root


def test_two_processes_equal_one_with_same_global_batch(ddp_runs):
    ddp = load_checkpoint(ddp_runs / "ddp/checkpoints/last.pt")
    single = load_checkpoint(ddp_runs / "single/checkpoints/last.pt")
    assert ddp["position"]["world_size"] == 2 and ddp["position"]["global_step"] == 6
    assert ddp["config"]["batch_size"] == 8
    for key, value in single["model"].items():
        other = ddp["model"][key]
        if key.endswith("attn.qkv.bias"):
            # the key bias has an exactly-zero true gradient (softmax ignores a per-query constant):
            # its float noise differs by reduction order and Adam scales noise up to lr-sized steps.
            d = value.shape[0] // 3
            value, other = torch.cat([value[:d], value[2 * d:]]), torch.cat([other[:d], other[2 * d:]])
        torch.testing.assert_close(other, value, rtol=1e-4, atol=2e-6, msg=key)


def test_only_rank_zero_writes(ddp_runs):
    lines = (ddp_runs / "ddp/metrics.jsonl").read_text().splitlines()
    steps = [line for line in lines if '"type": "step"' in line]
    assert len(steps) == 6  # one writer: 3 steps x 2 epochs, not doubled
    assert sorted(p.name for p in (ddp_runs / "ddp/checkpoints").glob("*.pt")) == [
        "epoch_0001.pt", "epoch_0002.pt", "last.pt"]


def test_ddp_run_resumes(ddp_runs):
    out = ddp_runs / "ddp"
    run([*COMMON, "--epochs", "3", "--batch-size", "8", "--out", str(out), "--resume", "--allow-config-change"],
        nproc=2)  # both ranks resume (rank 0 alone owns the directory: a second owner would be refused)
    ckpt = load_checkpoint(out / "checkpoints/last.pt")
    assert ckpt["position"]["epoch"] == 3 and ckpt["position"]["global_step"] == 9


def test_fsdp_checkpoint_loads_in_one_process_and_matches_ddp(ddp_runs):
    from maskkit.train.checkpoint import load_run_model

    out = ddp_runs / "fsdp"
    run([*COMMON, "--epochs", "2", "--batch-size", "8", "--out", str(out), "--strategy", "fsdp"], nproc=2)
    model, modality, config, ckpt = load_run_model(out)  # a plain single-process model
    assert config.strategy == "fsdp" and modality.name == "image"
    assert (out / "reconstruction.png").is_file()
    ddp = load_checkpoint(ddp_runs / "ddp/checkpoints/epoch_0002.pt")["model"]
    for key, value in model.state_dict().items():
        if key.endswith("attn.qkv.bias"):
            continue  # see the note on key biases above
        torch.testing.assert_close(value, ddp[key], rtol=1e-4, atol=2e-6, msg=key)


def test_logged_loss_is_the_global_batch_mean(ddp_runs):
    """Every step line carries the mean over ranks (the global batch's loss), not rank 0's shard."""
    import json

    def losses(run):
        lines = (ddp_runs / run / "metrics.jsonl").read_text().splitlines()
        return [r["loss"] for r in map(json.loads, lines) if r["type"] == "step"][:6]

    ddp, single = losses("ddp"), losses("single")
    assert len(ddp) == 6
    assert ddp == pytest.approx(single, rel=1e-5)
