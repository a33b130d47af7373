"""The fine-tuning recipe fitted to its budget, and `eval`'s gain stated in words."""

import math

import pytest

from maskkit.lab.evaluate import ProbeResult
from maskkit.lab.finetune.budget import (
    CUTMIX_MIN_TOKENS,
    FULL_RECIPE_STEPS,
    MAE_RECIPE,
    REGULARISE_FROM_STEPS,
    TOO_SHORT_STEPS,
    fit_recipe,
    regularisation_strength,
)
from maskkit.lab.finetune.config import FinetuneConfig
from maskkit.lab.gain_words import gain_sentences


def test_strength_is_zero_for_short_runs_full_for_mae_budgets_and_log_linear_between():
    assert regularisation_strength(REGULARISE_FROM_STEPS) == 0.0
    assert regularisation_strength(FULL_RECIPE_STEPS) == 1.0
    middle = int(math.sqrt(REGULARISE_FROM_STEPS * FULL_RECIPE_STEPS))
    assert regularisation_strength(middle) == pytest.approx(0.5, abs=1e-3)
    steps = [REGULARISE_FROM_STEPS * 2 ** i for i in range(8)]
    values = [regularisation_strength(s) for s in steps]
    assert values == sorted(values) and len(set(values)) == len(values)


def test_a_short_run_switches_the_regularisers_off_and_says_so():
    fitted = fit_recipe(FinetuneConfig(epochs=3), total_steps=69, num_tokens=64)
    assert (fitted.mixup, fitted.cutmix, fitted.label_smoothing, fitted.drop_path) == (0.0, 0.0, 0.0, 0.0)
    assert fitted.warmup_epochs == 1.0  # at least one epoch, at most a third of the run
    assert len(fitted.notes) == 2 and "69 fine-tuning steps" in fitted.notes[0]
    assert fitted.head_norm == "batch" and "BatchNorm" in fitted.notes[1]


def test_the_head_norm_is_batchnorm_for_short_runs_maes_layernorm_for_long_ones_or_as_given():
    assert fit_recipe(FinetuneConfig(), REGULARISE_FROM_STEPS, num_tokens=64).head_norm == "batch"
    long = fit_recipe(FinetuneConfig(), REGULARISE_FROM_STEPS + 1, num_tokens=64)
    assert long.head_norm == "layer" and not any("BatchNorm" in n for n in long.notes)
    given = fit_recipe(FinetuneConfig(head_norm="layer"), total_steps=66, num_tokens=64)
    assert given.head_norm == "layer" and not any("BatchNorm" in n for n in given.notes)
    assert fit_recipe(FinetuneConfig(freeze=True), total_steps=66, num_tokens=64).head_norm == "layer"


def test_a_full_budget_gets_maes_recipe_and_cutmix_only_on_a_fine_grid():
    fine = fit_recipe(FinetuneConfig(epochs=100), FULL_RECIPE_STEPS, num_tokens=CUTMIX_MIN_TOKENS)
    assert (fine.mixup, fine.cutmix, fine.label_smoothing, fine.drop_path) == tuple(MAE_RECIPE.values())
    assert fine.notes == [] and fine.warmup_epochs == 5.0
    coarse = fit_recipe(FinetuneConfig(epochs=100), FULL_RECIPE_STEPS, num_tokens=64)
    assert coarse.cutmix == 0.0 and coarse.mixup == MAE_RECIPE["mixup"]
    assert "cutmix off: 64 tokens" in coarse.notes[0]


def test_given_values_are_kept_and_a_probe_uses_no_regulariser():
    given = fit_recipe(FinetuneConfig(mixup=0.2, cutmix=1.0, warmup_epochs=2.0), total_steps=50, num_tokens=16)
    assert (given.mixup, given.cutmix, given.warmup_epochs) == (0.2, 1.0, 2.0)
    assert given.label_smoothing == 0.0
    probe = fit_recipe(FinetuneConfig(freeze=True), FULL_RECIPE_STEPS, num_tokens=256)
    assert probe.strength == 0.0 and probe.mixup == 0.0 and probe.notes == []


def test_too_few_steps_is_one_notice():
    fitted = fit_recipe(FinetuneConfig(epochs=1), total_steps=TOO_SHORT_STEPS - 1, num_tokens=64)
    assert any("too short to learn" in n for n in fitted.notes)
    assert fitted.warmup_epochs == pytest.approx(1 / 3, abs=1e-3)


def _row(arm, lin, knn, sd=0.01, feature="mean"):
    return ProbeResult(arm=arm, feature=feature, linear_acc=lin, linear_std=sd, knn_acc=knn, knn_std=sd,
                       num_samples=100, num_classes=10)


@pytest.mark.parametrize("lin, knn, verdict", [
    (0.95, 0.90, "helped on both probes"),
    (0.80, 0.70, "worse than untrained on both probes"),
    (0.905, 0.795, "no difference larger than the fold spread"),
    (0.95, 0.795, "helped on one probe and made no clear difference"),
    (0.95, 0.70, "helped on one probe and hurt the other"),
])
def test_eval_gain_in_words(lin, knn, verdict):
    rows = [_row("pretrained", lin, knn), _row("random-init", 0.90, 0.80), _row("raw-input", 0.97, 0.97, feature="raw")]
    (sentence,) = gain_sentences(rows)
    assert verdict in sentence and f"linear probe {lin:.3f} vs 0.900 ({lin - 0.9:+.3f})" in sentence
    assert sentence.startswith("mean features")


def test_cli_eval_prints_the_gain_in_words(tmp_path):
    from typer.testing import CliRunner

    from maskkit.cli.app import app

    runner = CliRunner()
    out = tmp_path / "run"
    trained = runner.invoke(app, ["train", "--modality", "toy", "--model", "nano", "--batch-size", "16", "--epochs",
                                  "1", "--max-steps-per-epoch", "2", "--no-progress", "--out", str(out)])
    assert trained.exit_code == 0, trained.output
    result = runner.invoke(app, ["eval", str(out), "--max-samples", "40"])
    assert result.exit_code == 0, result.output
    assert "mean features, pretrained vs random-init: linear probe" in result.output
    assert "pretraining" in result.output.split("pretrained vs random-init:")[1]


def test_unset_epochs_give_a_small_dataset_enough_steps():
    from maskkit.lab.finetune.budget import DEFAULT_EPOCHS, MIN_DEFAULT_STEPS, default_epochs

    assert default_epochs(1_000) == DEFAULT_EPOCHS  # a large dataset: MAE-style 10 epochs
    assert default_epochs(22) == 28  # the digits' 1 438 training samples at batch 64 (22 full batches)
    assert default_epochs(22) * 22 >= MIN_DEFAULT_STEPS > (default_epochs(22) - 1) * 22
    assert FinetuneConfig().epochs is None and FinetuneConfig(epochs=3).epochs == 3
    # warm-up follows the epochs actually run
    assert fit_recipe(FinetuneConfig(), 28 * 22, num_tokens=16, epochs=28).warmup_epochs == 1.4
