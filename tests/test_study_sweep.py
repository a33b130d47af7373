"""`compare --sweep`: one sub-study per grid point, its settings reaching the runs, one summary."""

import csv
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from maskkit.cli.app import app
from maskkit.config_utils import ConfigError
from maskkit.lab.study import StudyConfig
from maskkit.lab.study.sweep import parse_sweep, point_study, sweep_points

#: a study of one run per point that trains in seconds
TINY_STUDY = ["compare", "--modality", "toy", "--model", "nano", "--maskers", "random", "--seeds", "1",
              "--batch-size", "8", "--max-steps-per-epoch", "2", "--eval-max-samples", "40",
              "--recon-max-samples", "16", "--curve-every", "0", "--no-analysis", "--no-progress",
              "--train-opt", "warmup_epochs=0"]


def test_sweep_points_are_the_cartesian_product_and_reach_the_right_fields(tmp_path):
    study = StudyConfig(modality="toy", out=str(tmp_path), train_options={"weight_decay": 0.0},
                        sweep=parse_sweep(["base_lr=1e-4,1e-3", "epochs=2,3,4"]))
    points = sweep_points(study)
    assert len(points) == 6 and len({p.slug for p in points}) == 6
    sub = point_study(study, points[-1])
    assert sub.epochs == 4 and sub.sweep == {} and sub.train_options == {"weight_decay": 0.0, "base_lr": "1e-3"}
    assert Path(sub.out) == tmp_path / "sweep" / "base_lr=1e-3_epochs=4"


@pytest.mark.parametrize("items, word", [(["seed=1,2"], "seed"), (["nope=1"], "nope"), (["base_lr"], "KEY=v1"),
                                         (["epochs=2,2"], "twice")])
def test_bad_sweeps_are_one_line_errors(items, word):
    with pytest.raises(ConfigError, match=word):
        StudyConfig(modality="toy", sweep=parse_sweep(items))


def test_cli_sweep_runs_every_point_and_writes_one_summary(tmp_path):
    out = tmp_path / "study"
    args = [*TINY_STUDY, "--sweep", "base_lr=1e-4,1e-3", "--sweep", "epochs=1", "--out", str(out)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    with open(out / "sweep.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    pretrained = [r for r in rows if r["arm"] == "pretrained"]
    assert sorted((r["base_lr"], r["epochs"]) for r in pretrained) == [("1e-3", "1"), ("1e-4", "1")]
    assert {r["arm"] for r in rows} == {"pretrained", "random-init", "raw-input"}
    # each point's runs trained with that point's settings
    config = json.loads((out / "sweep" / "base_lr=1e-3_epochs=1" / "runs" / "random__r0.75__s0" /
                         "config.json").read_text())
    assert config["base_lr"] == 1e-3 and config["epochs"] == 1
    text = (out / "sweep.md").read_text()
    assert text.count("| `random` |") == 2 and "Δ k-NN vs random-init" in text
    again = CliRunner().invoke(app, ["compare", "--report-only", "--out", str(out)])
    assert again.exit_code == 0, again.output
    assert (out / "sweep.csv").read_text().count("\n") == len(rows) + 1


def test_shards_of_a_sweep_deal_out_the_points_jobs_laid_end_to_end():
    from maskkit.lab.study.runner import shard_jobs

    points = [list(range(0, 5)), list(range(5, 8)), list(range(8, 14))]  # three points' jobs, in order
    for count in (1, 2, 3, 4):
        for index in range(count):
            offset, mine = 0, []
            for jobs in points:
                mine += shard_jobs(jobs, (index, count), offset)
                offset += len(jobs)
            assert mine == list(range(14))[index::count]


def test_cli_sweep_split_over_shards_then_one_report(tmp_path):
    out = tmp_path / "study"
    args = [*TINY_STUDY, "--sweep", "base_lr=1e-4,1e-3", "--epochs", "1", "--out", str(out)]
    runner = CliRunner()
    for index in range(3):  # 3 tasks, and no point's job count is a multiple of 3
        result = runner.invoke(app, [*args, "--shard", f"{index}/3"])
        assert result.exit_code == 0, result.output
        assert not (out / "sweep.md").exists()
    again = runner.invoke(app, [*args, "--shard", "0/3"])
    assert again.exit_code == 0 and " 0 trained" in again.output, again.output
    report = runner.invoke(app, ["compare", "--report-only", "--out", str(out)])
    assert report.exit_code == 0, report.output
    with open(out / "sweep.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert sorted(r["base_lr"] for r in rows if r["arm"] == "pretrained") == ["1e-3", "1e-4"]
    assert all((out / "sweep" / f"base_lr={lr}" / "report.md").is_file() for lr in ("1e-4", "1e-3"))
    assert (out / "sweep.md").read_text().count("| `random` |") == 2
