"""End-to-end studies on the toy modality: outputs, resume, baselines, collapse warnings, CLI."""

import json
import shutil
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from maskkit.lab.study import StudyConfig, run_study
from maskkit.lab.study.evaluation import EVAL_FILE, clustering_metrics, initial_parts
from maskkit.lab.study.grid import BaselineSpec, baseline_train_config, plan_runs, train_config
from maskkit.lab.study.results import read_results
from maskkit.lab.study.tables import by_cell, fmt_spread, paired, spread
from maskkit.maskers.base import Masker, MaskPlan
from maskkit.registry import register_masker
from maskkit.train.trainer import Trainer


@register_masker
class FixedSpotMasker(Masker):
    """Always hides the same tokens (the lowest indices): a masker collapsed to one spatial pattern."""

    name = "fixed-test"
    description = "test only: one fixed mask"

    def plan(self, ctx):
        scores = -torch.arange(ctx.num_tokens, device=ctx.device, dtype=torch.float32)
        return MaskPlan.from_scores(scores.expand(ctx.batch_size, -1), ctx.n_mask)


def make_study(out, **kw):
    base = dict(modality="toy", model="nano", maskers=["random", "fixed-test"], seeds=2, epochs=2,
                batch_size=8, max_steps_per_epoch=2, out=str(out), progress=False, eval_max_samples=40,
                recon_max_samples=32, mask_examples=3, curve_every=1, analysis=False,
                train_options={"warmup_epochs": 0.5, "base_lr": 1e-3, "log_every": 1})
    base.update(kw)
    return StudyConfig(**base)


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    study = make_study(tmp_path_factory.mktemp("study"))
    return study, run_study(study)


def test_study_writes_results_report_and_figures(finished):
    study, outcome = finished
    rows = read_results(outcome.results)
    trained = [r for r in rows if r["arm"] == "pretrained"]
    assert len(trained) == 4 and {r["method"] for r in rows} == {"random", "fixed-test", "random-init", "raw-input"}
    assert all(r["epochs"] == 2 and r["steps"] == 4 and r["samples_seen"] == 32 for r in trained)
    assert all(r["recon_shared"] > 0 and r["linear_acc"] >= 0 for r in trained)
    text = outcome.report.read_text()
    for needle in ("## Results", "random-init encoder (no training)", "raw input", "Paired differences vs `random`",
                   "In words:", "## Masker diagnostics", "## Budget", "## Settings", "design budget"):
        assert needle in text, needle
    for kind in ("curves", "diagnostics", "position_frequency", "masks"):
        assert (outcome.out / "figures" / f"{kind}_r0.75_p2.png").stat().st_size > 1000, kind
    evaluation = json.loads((outcome.out / "runs" / plan_runs(study)[0].run_id / EVAL_FILE).read_text())
    assert [p["epoch"] for p in evaluation["curve"]] == [1, 2]  # probe accuracy per kept checkpoint
    assert len(evaluation["mask_examples"]) == 3 and evaluation["grid"] == [4, 4]


def test_report_numbers_equal_the_csv(finished):
    study, outcome = finished
    rows = read_results(outcome.results)
    text = outcome.report.read_text()
    (cell,) = by_cell(rows).values()
    for method in ("random", "fixed-test", "random-init", "raw-input"):
        for column, digits in (("linear_acc", 3), ("knn_acc", 3)):
            assert fmt_spread(spread(cell, method, column), digits) in text, (method, column)
    for column, digits in (("recon_shared", 4), ("recon_own", 4)):
        assert fmt_spread(spread(cell, "fixed-test", column), digits) in text
    pc = paired(cell, "fixed-test", "random", "recon_shared")
    assert f"{pc.mean:+.4f}" in text and pc.verdict in text
    assert {(c.masker, c.metric) for c in outcome.comparisons} >= {("fixed-test", "recon_shared")}
    for r in (r for r in rows if r["arm"] == "pretrained"):
        assert f"| `{r['run_id']}` | 2 | 4 | 32 | {r['wall_time']:.1f} |" in text


def test_collapse_warning_names_the_fixed_masker_not_random(finished):
    _, outcome = finished
    text = outcome.report.read_text()
    warnings = text.split("## Warnings", 1)[1].split("## Results", 1)[0]
    assert "⚠ masker `fixed-test`" in warnings and "figures/position_frequency_r0.75_p2.png" in warnings
    assert "collapsed" in warnings
    assert "masker `random`" not in warnings
    rows = read_results(outcome.results)
    assert {r["worst_collapse"] for r in rows if r["method"] == "random"} == {"ok"}
    assert {r["collapse"] for r in rows if r["method"] == "fixed-test"} == {"collapsed"}


def test_resume_skips_finished_runs(finished, tmp_path, monkeypatch):
    study, outcome = finished
    copy = tmp_path / "copy"
    shutil.copytree(outcome.out, copy)
    calls = []
    import maskkit.lab.study.runner as runner

    real = runner.train

    def counting(config, console=None):
        calls.append((config.masker, config.seed, config.resume))
        return real(config, console=console)

    monkeypatch.setattr(runner, "train", counting)
    again = run_study(make_study(copy))
    assert calls == [] and again.progress.trained == 0 and again.progress.evaluated == 0
    assert again.results.read_text() == (outcome.out / "results.csv").read_text()
    # a run that stopped before writing its summary continues from its checkpoint, the others stay
    unfinished = copy / "runs" / plan_runs(study)[1].run_id
    (unfinished / "summary.json").unlink()
    (unfinished / EVAL_FILE).unlink()
    third = run_study(make_study(copy))
    assert calls == [(plan_runs(study)[1].masker, plan_runs(study)[1].seed, True)]
    assert third.progress.trained == 1 and third.progress.evaluated == 1


def test_a_study_refuses_runs_made_with_other_settings(finished, tmp_path):
    _, outcome = finished
    copy = tmp_path / "copy"
    shutil.copytree(outcome.out, copy)
    from maskkit.config_utils import ConfigError

    with pytest.raises(ConfigError, match="batch_size=8 but this study asks for batch_size=4"):
        run_study(make_study(copy, batch_size=4))


def test_baselines_use_the_runs_seeds_initial_weights_and_protocol(finished, tmp_path):
    study, outcome = finished
    for seed in study.seed_list:
        baseline = json.loads((outcome.out / "baselines" / f"s{seed}.json").read_text())
        run = next(r for r in plan_runs(study) if r.seed == seed)
        evaluation = json.loads((outcome.out / "runs" / run.run_id / EVAL_FILE).read_text())
        assert baseline["seed"] == seed and baseline["protocol"] == evaluation["protocol"]
        assert baseline["patch_size"] == evaluation["patch_size"]
        assert {p["num_samples"] for p in baseline["probes"]} == {p["num_samples"] for p in evaluation["probes"]}
        # the random-init encoder is exactly the weights this seed's runs started from
        config = replace(train_config(study, run, device="cpu", progress=False),
                         out=str(tmp_path / f"scratch{seed}"))  # setup writes there, not in the study
        trainer = Trainer(config)
        trainer.setup()
        start = trainer.parts.model.state_dict()
        base = initial_parts(baseline_train_config(study, BaselineSpec(seed, None))).model.state_dict()
        assert all(torch.equal(start[k], base[k]) for k in start)
    assert not torch.equal(*[initial_parts(baseline_train_config(study, BaselineSpec(s, None))).model
                             .decoder_pred.weight for s in study.seed_list])


def test_clustering_metrics_come_from_maskkit_analysis(finished):
    pytest.importorskip("maskkit.lab.analysis")
    study, _ = finished
    from maskkit.lab.study.evaluation import eval_dataset
    from maskkit.maskers.random import RandomMasker

    parts = initial_parts(baseline_train_config(study, BaselineSpec(0, None)))
    data = eval_dataset(parts.modality, study, parts.config)
    metrics, note = clustering_metrics(parts.model, data, RandomMasker(), 0.75, torch.device("cpu"), 0)
    assert note is None and metrics and all(isinstance(v, float) for v in metrics.values())


def test_cli_compare_report_only_and_errors(finished):
    from maskkit.cli.app import app

    _, outcome = finished
    runner = CliRunner()
    result = runner.invoke(app, ["compare", "--report-only", "--out", str(outcome.out)], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "report:" in result.output and "fixed-test" in result.output
    bad = runner.invoke(app, ["compare", "--modality", "toy", "--maskers", "block,noise-green"])
    assert bad.exit_code == 2 and "--reference random is not among" in bad.output
    unknown = runner.invoke(app, ["compare", "--modality", "toy", "--maskers", "random,nope", "--out",
                                  str(outcome.out / "never")])
    assert unknown.exit_code == 2 and "unknown masker 'nope'" in unknown.output


def test_a_study_without_labels_reports_reconstruction_only(tmp_path):
    import numpy as np
    from toy import BlobDataset, ToyModality

    from maskkit.registry import register_modality

    @register_modality
    class UnlabelledToy(ToyModality):
        """The toy modality with its labels hidden (-1), like an unlabelled folder of data."""

        name = "toy-unlabelled"

        def build_dataset(self, data, train, seed=0):
            ds = BlobDataset(n=48, seed=seed, augment=train)
            ds.labels = np.full(len(ds), -1, dtype=np.int64)
            return ds

    study = make_study(tmp_path / "study", modality="toy-unlabelled", maskers=["random"], seeds=1, epochs=1,
                       curve_every=0)
    outcome = run_study(study)
    (row,) = [r for r in read_results(outcome.results) if r["arm"] == "pretrained"]
    assert row["recon_shared"] > 0 and row["linear_acc"] != row["linear_acc"]  # NaN: nothing to probe
    text = outcome.report.read_text()
    assert "no linear probe or k-NN" in text and "no labels" in text
    assert (outcome.out / "figures" / "curves_r0.75_p2.png").is_file()


def test_reconstruction_loss_is_measured_on_samples_no_run_trained_on(finished):
    study, _ = finished
    run_dirs = sorted((Path(study.out) / "runs").iterdir())
    held_sets = set()
    for run in run_dirs:
        info = json.loads((run / "holdout.json").read_text())
        held_sets.add(tuple(info["indices"]))
        evaluation = json.loads((run / "study_eval.json").read_text())
        assert evaluation["recon_on"] == "held-out samples never trained on"
        assert evaluation["recon_samples"] == len(info["indices"])
    assert len(held_sets) == 1  # one fixed split for every masker and seed


def test_a_study_resumes_runs_whose_options_were_given_as_command_line_strings(tmp_path):
    """`--modality-opt norm_pix_loss=false` is the run's saved False: adding seeds to such a study resumes it;
    a different value is still refused."""
    from maskkit.config_utils import ConfigError
    from maskkit.lab.study.runner import check_run_matches
    from maskkit.train.config import TrainConfig

    saved = {"modality": "image", "masker": "random", "modality_options": {"image_size": 8, "norm_pix_loss": False}}
    (tmp_path / "config.json").write_text(json.dumps(saved))
    same = TrainConfig(modality="image", modality_options={"image_size": "8", "norm_pix_loss": "false"})
    check_run_matches(tmp_path, same)
    other = TrainConfig(modality="image", modality_options={"image_size": "8", "norm_pix_loss": "true"})
    with pytest.raises(ConfigError, match="norm_pix_loss=False"):
        check_run_matches(tmp_path, other)
