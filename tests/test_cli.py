"""The CLI through typer's runner: train/eval/visualize/list/bench on the embedded image data, and bad input."""

import json

import pytest
from typer.testing import CliRunner

from maskkit.cli.app import app

runner = CliRunner()
FAST = ["--model", "nano", "--image-size", "16", "--patch-size", "4", "--max-steps-per-epoch", "3",
        "--batch-size", "32", "--no-progress"]


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def image_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("cli") / "run"
    result = invoke("train", "--modality", "image", *FAST, "--epochs", "2", "--out", out, "--save-every", "1")
    assert result.exit_code == 0, result.output
    return out


def test_train_writes_all_run_files(image_run):
    for name in ("config.json", "metrics.jsonl", "summary.json", "reconstruction.png",
                 "checkpoints/last.pt", "checkpoints/epoch_0001.pt", "checkpoints/epoch_0002.pt"):
        assert (image_run / name).is_file(), name
    config = json.loads((image_run / "config.json").read_text())
    assert config["modality"] == "image" and config["masker"] == "random" and config["mask_ratio"] == 0.75
    assert config["modality_options"]["image_size"] == 16 and config["modality_options"]["channels"] == 1


def test_resume_continues_from_saved_step(image_run):
    refused = invoke("train", "--out", image_run, "--resume", "--epochs", "3", "--no-progress")
    assert refused.exit_code == 2 and "epochs 2 -> 3" in refused.output  # a longer run is a change too
    result = invoke("train", "--out", image_run, "--resume", "--epochs", "3", "--no-progress", "--allow-config-change")
    assert result.exit_code == 0, result.output
    history = json.loads((image_run / "config.json").read_text())["history"]
    assert history[-1]["changes"] == {"epochs": {"from": 2, "to": 3}} and history[-1]["step"] == 6
    summary = json.loads((image_run / "summary.json").read_text())
    assert summary["epochs"] == 3 and summary["steps"] == 9
    lines = [json.loads(x) for x in (image_run / "metrics.jsonl").read_text().splitlines()]
    assert any(r["type"] == "resume" and r["step"] == 6 for r in lines)


def test_eval_reports_baselines(image_run):
    result = invoke("eval", image_run, "--max-samples", "300")
    assert result.exit_code == 0, result.output
    payload = json.loads((image_run / "eval.json").read_text())
    arms = {(r["arm"], r["feature"]) for r in payload["results"]}
    assert {("pretrained", "mean"), ("pretrained", "cls"), ("random-init", "mean"), ("raw-input", "raw")} <= arms
    for r in payload["results"]:
        assert 0.0 <= r["linear_acc"] <= 1.0 and r["num_classes"] == 10
    raw = next(r for r in payload["results"] if r["arm"] == "raw-input")
    assert raw["linear_acc"] > 0.5  # digits are easy from pixels: the protocol works


def test_visualize_writes_png(image_run, tmp_path):
    target = tmp_path / "v.png"
    result = invoke("visualize", image_run, "--out", target, "-n", "3", "--masker", "block")
    assert result.exit_code == 0, result.output
    from PIL import Image

    assert Image.open(target).size[0] > 100


def test_list_shows_modalities_and_maskers():
    result = invoke("list")
    assert result.exit_code == 0
    for word in ("image", "random", "block", "base", "saliency", "builtin:textures"):
        assert word in result.output


def test_config_file_and_cli_override(tmp_path):
    cfg = tmp_path / "run.toml"
    cfg.write_text('modality = "image"\nepochs = 5\nmodel = "nano"\n[masker]\nname = "block"\n'
                   '[modality_options]\nimage_size = 16\npatch_size = 4\n')
    out = tmp_path / "r"
    result = invoke("train", "--config", cfg, "--epochs", "1", "--max-steps-per-epoch", "2", "--out", out,
                    "--no-progress")
    assert result.exit_code == 0, result.output
    saved = json.loads((out / "config.json").read_text())
    assert saved["epochs"] == 1 and saved["masker"] == "block" and saved["modality_options"]["patch_size"] == 4


@pytest.mark.parametrize("args, message", [
    (["--modality", "nosuch"], "unknown modality 'nosuch'"),
    (["--masker", "nosuch"], "unknown masker 'nosuch'"),
    (["--mask-ratio", "1.2"], "--mask-ratio must be in (0, 1)"),
    (["--mask-ratio", "0"], "--mask-ratio must be in (0, 1)"),
    (["--image-size", "30", "--patch-size", "4"], "not divisible"),
    (["--data", "/nonexistent/path"], "/nonexistent/path"),
    (["--num-groups", "8"], "does not apply to modality 'image'"),
    (["--masker-opt", "nonsense"], "key=value"),
    (["--masker", "block", "--masker-opt", "bogus=1"], "unknown option"),
    (["--precision", "fp16", "--device", "cpu"], "fp16 needs CUDA"),
    (["--resume"], "nothing to resume"),
])
def test_bad_input_is_one_clear_line(args, message, tmp_path):
    result = runner.invoke(app, ["train", *args, "--out", str(tmp_path / "bad"), "--no-progress"])
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert "Traceback" not in result.output
    error_lines = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(error_lines) == 1


def test_unreadable_image_file_is_named(tmp_path):
    folder = tmp_path / "imgs"
    folder.mkdir()
    (folder / "broken.png").write_text("this is not an image")
    result = runner.invoke(app, ["train", "--data", str(folder), "--out", str(tmp_path / "x"), "--no-progress"])
    assert result.exit_code == 2
    assert "broken.png" in result.output and "Traceback" not in result.output


def test_bench_runs_and_reports(tmp_path):
    out = tmp_path / "bench.jsonl"
    result = invoke("bench", "--modality", "image", "--model", "nano", "--image-size", "16", "--patch-size", "4",
                    "--batch-size", "8", "--steps", "2", "--warmup", "1", "--masker", "random", "--masker", "block",
                    "--json", out)
    assert result.exit_code == 0, result.output
    rows = [json.loads(x) for x in out.read_text().splitlines()]
    assert [r["masker"] for r in rows] == ["random", "block"]
    assert all(r["samples_per_s"] > 0 and r["tflops_per_step"] > 0 for r in rows)


def test_list_options_shows_resolved_defaults():
    result = runner.invoke(app, ["list", "--maskers", "--options"], terminal_width=200)
    assert result.exit_code == 0, result.output
    assert "options of self-guided" in result.output and "(from the preset)" in result.output
    assert "ncut | power | pca" in result.output
