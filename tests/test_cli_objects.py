"""CLI on builtin:objects: training logs coverage, visualize reports it, analyze covers every layer,
and train --help shows the defaults (through typer's runner)."""

import json

import pytest
from typer.testing import CliRunner

from maskkit.cli.app import app

runner = CliRunner()
FAST = ["--model", "nano", "--image-size", "16", "--patch-size", "4", "--max-steps-per-epoch", "2",
        "--batch-size", "16", "--no-progress"]


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def objects_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("cli") / "sg"
    result = invoke("train", "--modality", "image", "--data", "builtin:objects", "--masker", "self-guided",
                    "-O", "start_fraction=0.25", *FAST, "--epochs", "2", "--out", out, "--save-every", "1")
    assert result.exit_code == 0, result.output
    return out


def test_train_logs_coverage_and_resolved_base_lr(objects_run):
    config = json.loads((objects_run / "config.json").read_text())
    assert config["base_lr"] == 1.5e-4  # the nano preset's (MAE's, see docs/recipe-study)
    summary = json.loads((objects_run / "summary.json").read_text())
    assert summary["peak_lr"] == pytest.approx(1.5e-4 * 16 / 256)
    epochs = [json.loads(x) for x in (objects_run / "metrics.jsonl").read_text().splitlines()]
    epochs = [r for r in epochs if r["type"] == "epoch"]
    assert all("objects/coverage" in r and r["objects/coverage_random"] == 0.75 for r in epochs)
    assert epochs[-1]["masker/sg/started"] == 1.0 and "masker/sg/hints_revealed" in epochs[-1]
    # beside each coverage, the same masker reading the untrained model of the run's seed
    assert all(0.0 <= r["objects/coverage_untrained"] <= 1.0 for r in epochs)
    events = [json.loads(x) for x in (objects_run / "metrics.jsonl").read_text().splitlines()]
    events = [r for r in events if r["type"] == "event"]
    # 2 epochs x 2 steps, start_fraction 0.25: the first informed step is step 1, and it is said once
    assert events == [{"type": "event", "event": "informed_start", "reason": "fraction", "step": 1}]


def test_visualize_reports_object_coverage(objects_run, tmp_path):
    target = tmp_path / "v.png"
    result = invoke("visualize", objects_run, "--out", target, "-n", "4")
    assert result.exit_code == 0, result.output
    assert "object coverage" in result.output and "random masking: 0.750" in result.output
    assert "the same masker on the untrained model of seed 0: " in result.output
    assert target.stat().st_size > 1000


def test_analyze_writes_every_layer(objects_run, tmp_path):
    result = invoke("analyze", objects_run, "--batches", "1", "--batch-size", "4",
                    "--out", tmp_path / "a")
    assert result.exit_code == 0, result.output
    saved = json.loads((tmp_path / "a" / "analysis.json").read_text())
    assert saved["encoder_layers"] == 4 and saved["decoder_layers"] == 2
    for ck in saved["checkpoints"]:
        assert len(ck["encoder"]["fourier_high"]) == 4 and len(ck["decoder"]["fourier_high"]) == 2
        assert len(ck["decoder"]["mask_token_var"]) == 2 and len(ck["decoder_kl_to_final"]) == 2
    assert "cuts:" in result.output and (tmp_path / "a" / "layers.png").stat().st_size > 1000
    # the cluster maps are drawn over the pictures: one (16, 16, 3) picture in [0, 1] per sample
    pictures = saved["clusters"]["pictures"]
    assert len(pictures) == len(saved["clusters"]["maps"]["bipartition"])
    assert all(len(p) == 16 and len(p[0]) == 16 and len(p[0][0]) == 3 for p in pictures)
    assert min(v for p in pictures for row in p for px in row for v in px) == 0.0
    assert (tmp_path / "a" / "clusters.png").stat().st_size > 1000


def test_eval_probes_every_declared_latent(objects_run, tmp_path):
    target = tmp_path / "eval.json"
    result = invoke("eval", objects_run, "--max-samples", "120", "--k", "5", "--json", target)
    assert result.exit_code == 0, result.output
    latents = {r["name"]: r for r in json.loads(target.read_text())["latents"]}
    assert set(latents) == {"shape", "hue", "stripes", "position", "size"}
    assert {r["level"] for r in latents.values()} == {1, 2, 3} and latents["hue"]["metric"] == "r2"
    for r in latents.values():
        assert all(isinstance(r[arm], float) for arm in ("pretrained", "random-init", "raw-input"))
        assert r["num_samples"] == 120
    assert "Latent probes" in result.output


def test_train_help_shows_defaults():
    result = invoke("train", "--help")
    assert result.exit_code == 0
    text = " ".join(result.output.split())
    for words in ("--epochs 10", "--batch-size 64", "--weight-decay 0.05", "every preset 0.00015",
                  "pointcloud 0.001", "video 0.001"):
        assert words in text, words
