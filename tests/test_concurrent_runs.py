"""Two processes on one run or study directory: the second is refused, the first is not disturbed."""

import csv
import json
import os
import subprocess
import sys
import time

import pytest
from typer.testing import CliRunner

from maskkit.cli.app import app
from maskkit.train.rundir import LOCK_NAME, read_holder

runner = CliRunner()
TRAIN = ["--modality", "image", "--model", "nano", "--image-size", "16", "--patch-size", "4", "--batch-size", "16",
         "--max-steps-per-epoch", "25", "--epochs", "2", "--no-progress", "--log-every", "1", "--seed", "5"]
COMPARE = ["--modality", "image", "--model", "nano", "--maskers", "random", "--seeds", "1", "--epochs", "1",
           "--batch-size", "16", "--max-steps-per-epoch", "4", "--modality-opt", "image_size=16",
           "--modality-opt", "patch_size=4", "--eval-max-samples", "40", "--recon-max-samples", "16",
           "--no-analysis", "--curve-every", "0", "--no-progress"]


def start(*args):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    return subprocess.Popen([sys.executable, "-m", "maskkit", *args], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def wait_until_owned(directory, proc, timeout=120):
    """Until ``proc`` has written its holder record (it owns the directory from then on)."""
    t0 = time.time()
    while time.time() - t0 < timeout:
        record = read_holder(directory / LOCK_NAME)
        if record is not None and record.get("pid") == proc.pid:
            return
        if proc.poll() is not None:
            pytest.fail(f"the first process ended first: {proc.communicate()[1][-2000:]}")
        time.sleep(0.02)
    pytest.fail("the first process never took the directory")


def refused(result, pid, kind):
    assert result.exit_code == 2, result.output
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and f"is in use by maskkit {kind} (pid {pid} on " in errors[0], result.output
    assert "Traceback" not in result.output


def test_two_concurrent_trains_on_one_out(tmp_path):
    out = tmp_path / "run"
    first = start("train", *TRAIN, "--out", str(out))
    wait_until_owned(out, first)
    second = runner.invoke(app, ["train", *TRAIN, "--out", str(out)])
    still_running = first.poll() is None
    _, err = first.communicate(timeout=300)
    assert first.returncode == 0, err[-2000:]
    assert still_running  # the second really ran while the first held the directory
    refused(second, first.pid, "train")
    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows if r["type"] == "step"] == list(range(1, 51))  # nothing lost or doubled
    assert [r["epoch"] for r in rows if r["type"] == "epoch"] == [0, 1]
    assert json.loads((out / "summary.json").read_text())["steps"] == 50
    assert not (out / LOCK_NAME).exists()


def test_two_concurrent_compares_on_one_out(tmp_path):
    out = tmp_path / "study"
    first = start("compare", *COMPARE, "--out", str(out))
    wait_until_owned(out, first)
    second = runner.invoke(app, ["compare", *COMPARE, "--out", str(out)])
    still_running = first.poll() is None
    _, err = first.communicate(timeout=300)
    assert first.returncode == 0, err[-2000:]
    assert still_running
    refused(second, first.pid, "compare")
    with open(out / "results.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert {r["arm"] for r in rows} == {"pretrained", "random-init", "raw-input"}
    run = out / "runs" / "random__r0.75__s0"
    assert json.loads((run / "summary.json").read_text())["steps"] == 4
    lines = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    # one logging window, one epoch (a busy machine adds a `warning` record about oversubscription)
    assert [(r["type"], r["step"]) for r in lines if r["type"] in ("step", "epoch")] == [("step", 4), ("epoch", 4)]
