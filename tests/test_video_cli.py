"""`maskkit train --modality video` end to end on CPU: one short epoch with the tube masker."""

import json

from typer.testing import CliRunner

from maskkit.cli.app import app


def test_train_video_one_epoch(tmp_path):
    out = tmp_path / "run"
    result = CliRunner().invoke(app, [
        "train", "--modality", "video", "--model", "nano", "--masker", "tube", "--epochs", "1",
        "--batch-size", "8", "--max-steps-per-epoch", "3", "--modality-opt", "builtin_clips=48",
        "--out", str(out), "--no-progress"])
    assert result.exit_code == 0, result.output
    config = json.loads((out / "config.json").read_text())
    assert config["mask_ratio"] == 0.9 and config["modality_options"]["channels"] == 1
    summary = json.loads((out / "summary.json").read_text())
    assert summary["steps"] == 3 and summary["final_loss"] > 0
    assert (out / "reconstruction.png").stat().st_size > 0 and (out / "checkpoints" / "last.pt").is_file()


def test_train_video_bad_option_is_one_line(tmp_path):
    result = CliRunner().invoke(app, ["train", "--modality", "video", "--num-frames", "15",
                                      "--out", str(tmp_path / "bad"), "--no-progress"])
    assert result.exit_code == 2
    assert "--num-frames 15 is not divisible by tubelet_size 2" in result.output
