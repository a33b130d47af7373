"""`maskkit train --modality audio` end to end on CPU: one short epoch on the embedded spoken digits."""

import json

from typer.testing import CliRunner

from maskkit.cli.app import app


def test_train_audio_one_epoch(tmp_path):
    out = tmp_path / "run"
    result = CliRunner().invoke(app, [
        "train", "--modality", "audio", "--model", "nano", "--masker", "time-freq", "--epochs", "1",
        "--batch-size", "8", "--max-steps-per-epoch", "3", "--out", str(out), "--no-progress"])
    assert result.exit_code == 0, result.output
    config = json.loads((out / "config.json").read_text())
    opts = config["modality_options"]
    assert config["mask_ratio"] == 0.8 and opts["sample_rate"] == 8000 and opts["norm_std"] > 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["steps"] == 3 and summary["final_loss"] > 0
    assert (out / "reconstruction.png").stat().st_size > 0


def test_train_audio_bad_patch_is_one_line(tmp_path):
    result = CliRunner().invoke(app, ["train", "--modality", "audio", "--patch-size", "10x8",
                                      "--out", str(tmp_path / "bad"), "--no-progress"])
    assert result.exit_code == 2
    assert "not divisible by --patch-size 10x8" in result.output
