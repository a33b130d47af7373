"""One resume/merge policy (``maskkit.train.config.layered_config``) for ``maskkit train`` and ``maskkit.train``."""

from __future__ import annotations

import json

import pytest

from maskkit.errors import ConfigError
from maskkit.train.config import TrainConfig, layered_config


@pytest.fixture
def saved_run(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    saved = TrainConfig(modality="image", masker="block", masker_options={"aspect_min": 0.5}, epochs=2,
                        out=str(out)).to_dict()
    (out / "config.json").write_text(json.dumps({**saved, "resolved_model": {"depth": 2}, "history": []}))
    return out


def test_resume_starts_from_the_saved_settings_then_file_then_given(saved_run):
    cfg = layered_config({"out": str(saved_run), "resume": True, "epochs": 4}, {"lr": 1e-3})
    assert (cfg.masker, cfg.masker_options, cfg.epochs, cfg.lr, cfg.resume) == ("block", {"aspect_min": 0.5}, 4,
                                                                              1e-3, True)
    fresh = layered_config({"out": str(saved_run), "epochs": 4})  # no resume: the saved run is not read
    assert (fresh.masker, fresh.masker_options) == ("random", {})


def test_another_masker_drops_the_saved_masker_options(saved_run):
    cfg = layered_config({"out": str(saved_run), "resume": True, "masker": "random"})
    assert (cfg.masker, cfg.masker_options) == ("random", {})
    kept = layered_config({"out": str(saved_run), "resume": True, "masker_options": {"max_rounds": 3}})
    assert kept.masker_options == {"aspect_min": 0.5, "max_rounds": 3}


def test_an_unreadable_saved_config_is_a_config_error(saved_run):
    (saved_run / "config.json").write_text("{not json")
    with pytest.raises(ConfigError, match=r"config.json: not a readable run config"):
        layered_config({"out": str(saved_run), "resume": True})


def test_the_front_door_resumes_by_the_same_policy(saved_run, monkeypatch):
    import maskkit
    import maskkit.api

    seen = []
    monkeypatch.setattr(maskkit.api, "train_with_callbacks", lambda cfg, callbacks=None: seen.append(cfg))
    maskkit.train(out=str(saved_run), resume=True, epochs=3)
    assert (seen[0].masker, seen[0].masker_options, seen[0].epochs) == ("block", {"aspect_min": 0.5}, 3)
