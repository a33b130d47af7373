"""Checkpoint checksums, fallback to the newest intact checkpoint, and `maskkit check` (toy modality)."""

import json
import os

import pytest
import torch
from typer.testing import CliRunner

from maskkit.cli.app import app
from maskkit.train import checkpoint as ck
from maskkit.train.checkpoint import newest_intact
from maskkit.train.integrity import read_record, record_path, stage_record, verify
from maskkit.train.progress import TrainProgressBar
from maskkit.train.rundir import owned
from maskkit.train.trainer import Trainer, run_training

runner = CliRunner()


def truncate(path):
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def flip_bit(path):
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x10  # inside the tensor payload: torch.load alone would not notice
    path.write_bytes(bytes(data))


DAMAGE = {"truncated": truncate, "bit-flipped": flip_bit}


def tiny(config=None):
    return {"format": ck.FORMAT, "version": ck.VERSION, "model": {"w": torch.arange(1000.0)},
            "config": config or {"n": 1}, "position": {"epoch": 2, "global_step": 7}}


def test_every_checkpoint_carries_a_checksum_that_catches_damage(tmp_path):
    path = tmp_path / "last.pt"
    ck.atomic_save(tiny(), path)
    record = read_record(path)
    assert record["size"] == path.stat().st_size and len(record["sha256"]) == 64
    status = verify(path)
    assert (status.state, status.epoch, status.step) == ("ok", 2, 7)
    original = path.read_bytes()
    for name, damage in DAMAGE.items():
        path.write_bytes(original)
        damage(path)
        status = verify(path)
        assert status.state == "damaged", name
        with pytest.raises(ck.CheckpointError, match="last.pt: checkpoint is damaged"):
            ck.load_checkpoint(path)
    assert verify(tmp_path / "absent.pt").reason == "missing"
    path.write_bytes(original)
    truncate(path)
    assert verify(path).reason.startswith("truncated:")
    path.write_bytes(original)
    flip_bit(path)
    assert verify(path).reason.startswith("checksum mismatch")
    record_path(path).unlink()  # a checkpoint copied without its record is loaded, unverified
    path.write_bytes(original)
    assert verify(path).state == "unverified" and ck.load_checkpoint(path)["config"] == {"n": 1}


def test_a_kill_between_the_two_renames_leaves_a_pair_that_verifies(tmp_path):
    path = tmp_path / "last.pt"
    ck.atomic_save(tiny({"n": 1}), path)
    tmp = tmp_path / "last.pt.tmp"
    torch.save(tiny({"n": 2}), tmp)
    os.replace(stage_record(tmp, path, {"epoch": 3, "global_step": 9}), record_path(path))
    status = verify(path)  # new record, old file: it still matches the record's "previous" digest
    assert (status.state, status.step) == ("ok", 7)
    os.replace(tmp, path)
    assert verify(path).step == 9 and ck.load_checkpoint(path)["config"] == {"n": 2}


def test_prune_removes_the_records_too(tmp_path):
    for epoch in (1, 2, 3):
        ck.atomic_save(tiny(), tmp_path / "checkpoints" / f"epoch_{epoch:04d}.pt")
    ck.prune_checkpoints(tmp_path, keep=1)
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["epoch_0003.pt", "epoch_0003.pt.sha256"]


def two_epochs_of_three(cfg):
    """A 3-epoch run stopped after its epoch-2 checkpoints (last.pt, epoch_0001.pt, epoch_0002.pt)."""
    trainer = Trainer(cfg)
    trainer.setup()
    for _ in range(2):
        trainer.train_epoch(TrainProgressBar(False, None, cfg.epochs, trainer.steps_per_epoch))
        trainer.epoch += 1
        trainer.batch_in_epoch = 0
        trainer.save(0.0, periodic=True)


@pytest.mark.parametrize("damage", sorted(DAMAGE))
def test_resume_falls_back_to_the_newest_intact_checkpoint(toy_config, tmp_path, damage, capsys):
    from rich.console import Console

    full = run_training(toy_config(epochs=3, out=str(tmp_path / "full")))
    cut = tmp_path / "cut"
    two_epochs_of_three(toy_config(epochs=3, save_every=1, out=str(cut)))
    DAMAGE[damage](cut / "checkpoints/last.pt")
    DAMAGE[damage](cut / "checkpoints/epoch_0002.pt")
    resumed = run_training(toy_config(epochs=3, save_every=1, out=str(cut), resume=True),
                           console=Console(stderr=True, width=400))
    warning = capsys.readouterr().err
    assert "last.pt is damaged" in warning and "epoch_0002.pt is damaged" in warning
    assert "using" in warning and "epoch_0001.pt" in warning
    assert resumed.steps == full.steps
    a, b = ck.load_checkpoint(tmp_path / "full/checkpoints/last.pt"), ck.load_checkpoint(cut / "checkpoints/last.pt")
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])  # as if never interrupted
    history = b["history"][-1]
    assert history["checkpoint"] == "epoch_0001.pt" and history["step"] == 6 and len(history["skipped_damaged"]) == 2
    rows = [json.loads(x) for x in (cut / "metrics.jsonl").read_text().splitlines()]
    assert any(r["type"] == "warning" and "last.pt is damaged" in r["message"] for r in rows)
    assert verify(cut / "checkpoints/last.pt").state == "ok"  # the damaged files were rewritten


def test_cli_resume_and_eval_warn_and_use_the_intact_checkpoint(tmp_path):
    out = tmp_path / "run"
    args = ["--modality", "toy", "--model", "nano", "--batch-size", "16", "--no-progress", "--save-every", "1"]
    assert runner.invoke(app, ["train", *args, "--epochs", "2", "--out", str(out)]).exit_code == 0
    flip_bit(out / "checkpoints/last.pt")
    result = runner.invoke(app, ["eval", str(out), "--max-samples", "40", "--no-baselines",
                                 "--json", str(tmp_path / "eval.json")])
    assert result.exit_code == 0, result.output
    assert "last.pt is damaged (checksum mismatch" in result.output
    assert json.loads((tmp_path / "eval.json").read_text())["checkpoint"].endswith("epoch_0002.pt")
    single = runner.invoke(app, ["eval", str(out / "checkpoints/last.pt")])
    assert single.exit_code == 2 and "checkpoint is damaged" in single.output  # an explicit file: no fallback
    resumed = runner.invoke(app, ["train", "--out", str(out), "--resume"])
    assert resumed.exit_code == 2, resumed.output  # epoch_0002.pt is the run's end: nothing left to train
    assert "last.pt is damaged" in resumed.output and "epoch_0002.pt" in resumed.output
    assert "already finished its 2 epochs" in resumed.output


def test_check_reports_every_checkpoint_and_the_lock(toy_config, tmp_path):
    run_training(toy_config(epochs=3, save_every=1, keep_checkpoints=0))
    run = tmp_path / "run"
    clean = runner.invoke(app, ["check", str(run), "--json", str(tmp_path / "ok.json")])
    assert clean.exit_code == 0, clean.output
    report = json.loads((tmp_path / "ok.json").read_text())
    rows = report["runs"][0]["checkpoints"]
    assert [os.path.basename(r["file"]) for r in rows] == ["last.pt", "epoch_0003.pt", "epoch_0002.pt",
                                                             "epoch_0001.pt"]
    assert all(r["state"] == "ok" for r in rows) and [r["step"] for r in rows] == [18, 18, 12, 6]
    assert [r["epoch"] for r in rows] == [3, 3, 2, 1] and all(r["size"] > 0 for r in rows)
    assert report["lock"] == "free"
    truncate(run / "checkpoints/epoch_0002.pt")
    record_path(run / "checkpoints/epoch_0001.pt").unlink()
    (run / "checkpoints/last.pt.tmp").write_bytes(b"half a write")
    with owned(run, "train"):
        bad = runner.invoke(app, ["check", str(run), "--json", str(tmp_path / "bad.json")])
    assert bad.exit_code == 1, bad.output
    report = json.loads((tmp_path / "bad.json").read_text())
    states = {os.path.basename(r["file"]): (r["state"], r["epoch"]) for r in report["runs"][0]["checkpoints"]}
    assert states == {"last.pt": ("ok", 3), "epoch_0003.pt": ("ok", 3), "epoch_0002.pt": ("damaged", 2),
                      "epoch_0001.pt": ("unverified", 1), "last.pt.tmp": ("leftover", None)}
    assert report["lock"] == "held" and f"pid {os.getpid()}" in report["lock_detail"]
    assert "truncated" in bad.output and "damaged checkpoint" in bad.output
    assert newest_intact(run, warn=None).path.name == "last.pt"
    missing = runner.invoke(app, ["check", str(tmp_path / "nope")])
    assert missing.exit_code == 2 and "no such run or study directory" in missing.output


def test_check_covers_every_run_of_a_study(tmp_path):
    study = tmp_path / "study"
    result = runner.invoke(app, ["compare", "--modality", "toy", "--maskers", "random,block", "--seeds", "1",
                                 "--epochs", "1", "--batch-size", "16", "--max-steps-per-epoch", "2",
                                 "--eval-max-samples", "40", "--recon-max-samples", "16", "--no-analysis",
                                 "--curve-every", "0", "--no-progress", "--out", str(study)])
    assert result.exit_code == 0, result.output
    assert not (study / ".maskkit.lock").exists()  # released at the end
    flip_bit(study / "runs" / "block__r0.75__s0" / "checkpoints" / "last.pt")
    checked = runner.invoke(app, ["check", str(study), "--json", str(tmp_path / "study.json")])
    assert checked.exit_code == 1, checked.output
    report = json.loads((tmp_path / "study.json").read_text())
    states = {os.path.basename(r["run"]): [c["state"] for c in r["checkpoints"]] for r in report["runs"]}
    assert states == {"block__r0.75__s0": ["damaged", "ok"], "random__r0.75__s0": ["ok", "ok"]}
