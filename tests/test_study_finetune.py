"""Studies that evaluate by fine-tuning: finetune accuracy in results.csv, the report and the paired
statistics, with the random-init baseline fine-tuned under the same recipe on the same test samples."""

import json

import pytest
from typer.testing import CliRunner

from maskkit.cli.app import app
from maskkit.config_utils import ConfigError
from maskkit.lab.study import StudyConfig
from maskkit.lab.study.results import read_results

runner = CliRunner()


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    out = tmp_path_factory.mktemp("ftstudy") / "study"
    args = ["compare", "--modality", "toy", "--model", "nano", "--maskers", "random,block", "--seeds", "2",
            "--epochs", "1", "--batch-size", "16", "--max-steps-per-epoch", "2", "--eval", "probe,finetune",
            "--finetune-epochs", "1", "--finetune-opt", "mixup=0.2", "--no-analysis", "--curve-every", "0",
            "--eval-max-samples", "40", "--recon-max-samples", "16", "--no-progress", "--out", str(out)]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    return out, result.output


def test_results_have_finetune_accuracy_for_runs_and_random_init(finished):
    out, _ = finished
    rows = read_results(out / "results.csv")
    runs = [r for r in rows if r["arm"] == "pretrained"]
    baselines = [r for r in rows if r["arm"] == "random-init"]
    assert len(runs) == 4 and len(baselines) == 2
    for row in runs + baselines:
        assert 0.0 <= row["finetune_acc"] <= 1.0 and 0.0 <= row["linear_acc"] <= 1.0
    for row in runs:
        base = next(b for b in baselines if b["seed"] == row["seed"])
        assert row["gain_finetune"] == pytest.approx(row["finetune_acc"] - base["finetune_acc"])
    evaluation = json.loads(next((out / "runs").rglob("study_eval.json")).read_text())
    baseline = json.loads(next(p for p in (out / "baselines").glob("*.json")).read_text())
    # the same held-out samples for every arm (the study's hold-out, never pretrained on)
    assert evaluation["finetune"]["test_samples"] == baseline["finetune"]["test_samples"] > 0
    assert evaluation["finetune"]["test_on"] == "the samples the run held out of pretraining"


def test_report_and_paired_statistics_cover_finetuning(finished):
    out, output = finished
    report = (out / "report.md").read_text()
    assert "fine-tune accuracy" in report and "fine-tune gain vs random-init" in report
    comparisons = json.loads((out / "comparisons.json").read_text())
    metrics = {c["metric"] for c in comparisons}
    assert {"linear_acc", "finetune_acc"} <= metrics
    ft = next(c for c in comparisons if c["metric"] == "finetune_acc")
    assert ft["masker"] == "block" and len(ft["differences"]) == 2
    assert "fine-tune" in output  # the verdict table printed by the CLI


def test_eval_option_is_validated():
    with pytest.raises(ConfigError, match="`eval` takes probe and/or finetune"):
        StudyConfig(eval=["probe", "linear"])
    with pytest.raises(ConfigError, match="the study sets this itself"):
        StudyConfig(eval=["finetune"], finetune_options={"epochs": 3})
    with pytest.raises(ConfigError, match="unknown option"):
        StudyConfig(eval=["finetune"], finetune_options={"lr_decay": 0.5})
    assert StudyConfig().protocol() == StudyConfig(finetune_epochs=9).protocol()  # probe-only studies unchanged


def test_study_file_keys_for_finetuning(tmp_path):
    from maskkit.lab.study.config import load_study_toml, merge_study

    path = tmp_path / "study.toml"
    path.write_text('modality = "toy"\neval = ["probe", "finetune"]\nfinetune-epochs = 3\n'
                    '[finetune_options]\nlayer-decay = 0.65\nmixup = 0.0\n')
    study = merge_study(load_study_toml(path), {"finetune_epochs": None})
    assert study.eval == ["probe", "finetune"] and study.finetune_epochs == 3
    assert study.finetune_options == {"layer_decay": 0.65, "mixup": 0.0}
    assert study.protocol()["finetune_options"] == {"layer_decay": 0.65, "mixup": 0.0}
