"""FSDP under torchrun (gloo, 2 CPU processes) on the paths that read attention or features outside
``forward``: the attention masker, self-guided's exploitation start, ``--probe-every``; then
``--resume``; and a SIGTERM that must stop both ranks at one step with one loadable checkpoint.

Each FSDP run is compared with one process on the same global batch, to the tolerance of
tests/test_distributed.py. torchrun launches cost ~9 s each, so every launch checks several paths.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from maskkit.train.checkpoint import load_checkpoint

pytestmark = pytest.mark.distributed

COMMON = ["--modality", "image", "--model", "nano", "--image-size", "8", "--patch-size", "2",
          "--no-progress", "--warmup-epochs", "0", "--lr", "1e-3", "--seed", "3", "--log-every", "1",
          "--save-every", "1", "--max-steps-per-epoch", "3"]
PROBE = ["--probe-every", "1"]
# exploitation checks every step (a decoder attention pass: a collective under FSDP); the crossover
# rule waits for visible-then-mask leads that a short toy run need not show, so the deadline starts it
SELF_GUIDED = ["--masker", "self-guided", "-O", "start=exploitation", "-O", "exploit-every=1",
               "-O", "exploit-patience=1", "-O", "exploit-lead=1", "-O", "exploit-deadline=0.5"]


def command(args: list[str], nproc: int | None) -> list[str]:
    if nproc:
        # torchrun of the interpreter running the tests (a venv's torchrun script may name another python)
        return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}",
                "-m", "maskkit", "train", *args]
    return [sys.executable, "-m", "maskkit", "train", *args]


ENV = dict(os.environ, OMP_NUM_THREADS="1", MASKKIT_TEST_THREADS="1")


def run(args: list[str], nproc: int | None = None) -> subprocess.CompletedProcess:
    proc = subprocess.run(command(args, nproc), env=ENV, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


#: the runs' peak lr (COMMON) and their most optimiser steps
LR, MAX_STEPS = 1e-3, 9


def assert_same_weights(a: dict, b: dict) -> None:
    """Equal up to reduction order, with bounds argued from the arithmetic, not tuned on one CPU.

    Two processes sum gradients in another order than one (gloo, and CPU kernels that differ
    between Intel and AMD): ~1e-7 relative noise per gradient. AdamW divides each gradient by its
    own running scale, so an element whose true gradient is near zero has an update decided by
    that noise: it may move by up to ~lr per step in either run (seen: 7.2e-5 in
    ``blocks.0.mlp.fc1.weight`` after a resume). So no element may differ by more than
    2 x lr x steps, and each tensor as a whole (where the noise-decided elements are few) must
    agree to 1e-4 of its norm, which a real error (a lost shard, a wrong step) far exceeds.
    """
    for key, value in b.items():
        other = a[key]
        if key.endswith("attn.qkv.bias"):  # see tests/test_distributed.py: the key bias's gradient is 0
            d = value.shape[0] // 3
            value, other = torch.cat([value[:d], value[2 * d:]]), torch.cat([other[:d], other[2 * d:]])
        diff = (other.double() - value.double())
        assert diff.abs().max() <= 2 * LR * MAX_STEPS, key
        assert diff.norm() <= 1e-4 * value.double().norm() + 1e-6, (key, float(diff.norm()))


def records(run_dir: Path, kind: str) -> list[dict]:
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return [r for r in map(json.loads, lines) if r.get("type") == kind]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("fsdp")
    # attention masker + probes, 2 epochs, then resumed for a third (the lr schedule then spans 2
    # epochs, then 3: the one-process run takes the same path)
    for epochs, extra in ((2, []), (3, ["--resume", "--allow-config-change"])):  # more epochs: a recorded change
        run([*COMMON, *PROBE, "--masker", "attention", "--epochs", str(epochs), "--batch-size", "8",
             "--strategy", "fsdp", "--out", str(root / "att"), *extra], nproc=2)
        run([*COMMON, "--masker", "attention", "--epochs", str(epochs), "--batch-size", "16",
             "--out", str(root / "att1"), *extra])
    # self-guided, informed masking started by the exploitation rule (a decoder attention pass)
    run([*COMMON, *SELF_GUIDED, "--epochs", "2", "--batch-size", "8", "--strategy", "fsdp",
         "--out", str(root / "sg")], nproc=2)
    run([*COMMON, *SELF_GUIDED, "--epochs", "2", "--batch-size", "16", "--out", str(root / "sg1")])
    return root


def test_fsdp_attention_with_probes_resumes_and_equals_one_process(runs):
    for name in ("epoch_0002.pt", "last.pt"):  # before and after the resume
        fsdp = load_checkpoint(runs / "att/checkpoints" / name)
        single = load_checkpoint(runs / "att1/checkpoints" / name)
        assert_same_weights(fsdp["model"], single["model"])
    assert fsdp["position"]["global_step"] == 9 and fsdp["position"]["world_size"] == 2
    assert fsdp["optimizer"]["state"]  # keyed by parameter name, loadable on any world size
    epochs = records(runs / "att", "epoch")
    assert [r["epoch"] for r in epochs] == [0, 1, 2] and all("probe/gap_attention" in r for r in epochs)
    assert len(records(runs / "att", "resume")) == 1
    # the logged loss is the global batch's, not rank 0's shard
    for ours, theirs in zip(records(runs / "att", "step"), records(runs / "att1", "step"), strict=True):
        assert ours["loss"] == pytest.approx(theirs["loss"], rel=1e-4)


def test_fsdp_self_guided_exploitation_start_equals_one_process(runs):
    fsdp, single = records(runs / "sg", "step"), records(runs / "sg1", "step")
    started = [r["masker/sg/started"] for r in fsdp]
    assert started == [r["masker/sg/started"] for r in single]
    assert 0.0 in started and 1.0 in started  # it did start, at the same step as one process
    assert_same_weights(load_checkpoint(runs / "sg/checkpoints/last.pt")["model"],
                        load_checkpoint(runs / "sg1/checkpoints/last.pt")["model"])
    state = load_checkpoint(runs / "sg/checkpoints/last.pt")["masker"]["_extra_state"]
    assert state["started"] and state["start_step"] == load_checkpoint(
        runs / "sg1/checkpoints/last.pt")["masker"]["_extra_state"]["start_step"]


def test_sigterm_to_torchrun_stops_every_rank_at_one_step_and_resumes(tmp_path):
    out = tmp_path / "sig"
    args = [*COMMON, "--masker", "random", "--epochs", "1", "--batch-size", "4", "--strategy", "fsdp",
            "--out", str(out)]
    args[args.index("--max-steps-per-epoch") + 1] = "20"
    proc = subprocess.Popen(command(args, 2), env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    metrics = out / "metrics.jsonl"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if metrics.is_file() and metrics.read_text().count('"type": "step"') >= 3:
            break
        time.sleep(0.1)
    assert proc.poll() is None, "the run ended before it could be interrupted"
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    stops = [int(s) for s in re.findall(r"stopped by signal \S+ at epoch 0 step (\d+)", err)]
    assert len(stops) == 2 and len(set(stops)) == 1, err[-3000:]
    ckpt = load_checkpoint(out / "checkpoints/last.pt")
    assert ckpt["position"]["global_step"] == stops[0] < 20
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["last.pt", "last.pt.sha256"]
    resume = [*args, "--resume"]
    run(resume, nproc=2)
    assert load_checkpoint(out / "checkpoints/last.pt")["position"]["global_step"] == 20
