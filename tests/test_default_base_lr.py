"""A run that sets no base lr gets its modality's measured rate, else the model preset's (MAE's 1.5e-4)."""

import json

import pytest

from maskkit.config_utils import ConfigError
from maskkit.lab.study.runner import check_run_matches
from maskkit.modality import Modality
from maskkit.registry import get_modality
from maskkit.train.build import build_run
from maskkit.train.config import TrainConfig
from maskkit.train.schedule import DEFAULT_BASE_LR, default_base_lr


@pytest.mark.parametrize("modality, base_lr, model, expected", [
    ("pointcloud", None, None, 1e-3),  # measured on builtin:shapes (docs/recipe-study)
    ("pointcloud", 2e-4, None, 2e-4),  # a given rate always wins
    ("pointcloud", None, "nano", 1e-3),  # the modality's rate, whatever the preset
    ("video", None, None, 1e-3),  # measured on builtin:moving-digits
    ("image", None, None, DEFAULT_BASE_LR),
    ("audio", None, None, DEFAULT_BASE_LR),
])
def test_the_resolved_base_lr(modality, base_lr, model, expected):
    options = {"channels": 1} if modality in ("image", "video") else {}  # without data: channels unknown
    config = TrainConfig(modality=modality, base_lr=base_lr, model=model, modality_options=options, device="cpu")
    resolved = build_run(config, with_data=False).resolved()
    assert resolved["base_lr"] == pytest.approx(expected)


def test_a_modality_without_a_rate_takes_the_preset_s():
    assert Modality.default_base_lr is None
    assert default_base_lr("micro", None) == default_base_lr("micro") == DEFAULT_BASE_LR
    assert default_base_lr("micro", 3e-4) == 3e-4
    assert get_modality("pointcloud").default_base_lr == get_modality("video").default_base_lr == 1e-3


def test_a_study_that_leaves_base_lr_unset_accepts_the_modality_s_rate_only(tmp_path):
    want = TrainConfig(modality="pointcloud", model="tiny", mask_ratio=0.6)
    saved = {**want.to_dict(), "model": "tiny", "base_lr": 1e-3}
    (tmp_path / "config.json").write_text(json.dumps(saved))
    check_run_matches(tmp_path, want)
    (tmp_path / "config.json").write_text(json.dumps({**saved, "base_lr": 1.5e-4}))  # made before the change
    with pytest.raises(ConfigError, match="base_lr"):
        check_run_matches(tmp_path, want)
