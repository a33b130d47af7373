"""Each setting is written once in a config dataclass and once as a CLI option; these tests make a
new field without an option (or an option without a field) fail, unless it is deliberately listed."""

import dataclasses
import inspect

from maskkit.cli.compare import compare
from maskkit.cli.options import SHAPE_FLAGS
from maskkit.cli.train import train
from maskkit.lab.study.config import StudyConfig
from maskkit.train.config import TrainConfig

#: fields set only in TOML files (``--config``), each with the reason
TRAIN_TOML_ONLY = {
    "betas": "two numbers; TOML `betas = [0.9, 0.95]`",
}
#: CLI options that fill a field under another name, or are not settings
TRAIN_CLI_SPECIAL = {
    "masker_opt": "masker_options", "model_opt": "model_options", "modality_opt": "modality_options",
    "grad_checkpoint": "model_options", "config": None, "resume_auto": "resume",
    **{flag: "modality_options" for flag in SHAPE_FLAGS},
}
STUDY_TOML_ONLY = {
    "bootstrap_samples": "resamples of the bootstrap interval; rarely changed",
    "mask_examples": "mask pictures per run in the report",
}
STUDY_CLI_SPECIAL = {
    "masker_opt": "masker_options", "model_opt": "model_options", "modality_opt": "modality_options",
    "train_opt": "train_options", "finetune_opt": "finetune_options", "config": None, "report_only": None,
    "shard": None,  # this task's share of the jobs (a job array), not a setting of the study
    "threads": None,  # this process's torch threads (each run's own come from train_options)
}


def _check(command, config_cls, toml_only, special) -> None:
    options = set(inspect.signature(inspect.unwrap(command)).parameters)
    fields = {f.name for f in dataclasses.fields(config_cls)}
    missing = fields - options - set(toml_only) - {v for v in special.values() if v}
    assert not missing, f"{config_cls.__name__} fields with no CLI option: {sorted(missing)}"
    unknown = options - fields - set(special)
    assert not unknown, f"CLI options that fill no {config_cls.__name__} field: {sorted(unknown)}"
    assert not set(toml_only) & options, "a TOML-only field has an option after all: drop it from the list"
    assert all(v is None or v in fields for v in special.values())


def test_every_train_config_field_has_an_option_and_back():
    _check(train, TrainConfig, TRAIN_TOML_ONLY, TRAIN_CLI_SPECIAL)


def test_every_study_config_field_has_an_option_and_back():
    _check(compare, StudyConfig, STUDY_TOML_ONLY, STUDY_CLI_SPECIAL)


def test_train_options_reach_the_config(tmp_path):
    """Options named like fields arrive unchanged: one run of the real command with two of them."""
    import json

    from typer.testing import CliRunner

    from maskkit.cli.app import app

    out = tmp_path / "run"
    result = CliRunner().invoke(app, ["train", "--modality", "image", "--model", "nano", "--image-size", "8",
                                      "--patch-size", "2", "--epochs", "1", "--max-steps-per-epoch", "1",
                                      "--min-lr", "1e-6", "--holdout-fraction", "0.2", "--visualize-samples", "2",
                                      "--batch-size", "8", "--no-progress", "--out", str(out)])
    assert result.exit_code == 0, result.output
    saved = json.loads((out / "config.json").read_text())
    assert saved["min_lr"] == 1e-6 and saved["holdout_fraction"] == 0.2 and saved["visualize_samples"] == 2
