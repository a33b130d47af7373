"""--logger: TensorBoard event files load in TensorBoard's own reader; W&B offline and MLflow local
runs hold the same scalars as metrics.jsonl; a missing package or a bad name is a one-line error."""

import json

import pytest
import torch
from typer.testing import CliRunner

from maskkit.cli.app import app
from maskkit.train.loggers import parse_loggers

ARGS = ["train", "--modality", "image", "--model", "nano", "--image-size", "16", "--patch-size", "4",
        "--batch-size", "16", "--epochs", "2", "--max-steps-per-epoch", "3", "--log-every", "1",
        "--no-progress", "--picture-every", "1", "--masker", "block"]


@pytest.fixture(scope="module")
def tracked_run(tmp_path_factory):
    pytest.importorskip("tensorboard")
    pytest.importorskip("wandb")
    pytest.importorskip("mlflow")
    out = tmp_path_factory.mktemp("track") / "run"
    mp = pytest.MonkeyPatch()
    mp.setenv("WANDB_MODE", "offline")
    mp.delenv("MLFLOW_TRACKING_URI", raising=False)
    try:
        result = CliRunner().invoke(app, [*ARGS, "--out", str(out), "--logger", "tensorboard,wandb,mlflow"])
    finally:
        mp.undo()
    assert result.exit_code == 0, result.output
    return out


def metrics(out):
    return [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]


def test_tensorboard_events_load_with_loss_mask_scalars_and_picture(tracked_run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(tracked_run / "tensorboard"), size_guidance={"scalars": 0, "images": 0})
    acc.Reload()
    tags = acc.Tags()
    assert {"step/loss", "epoch/loss", "step/mask/mask_ratio", "step/mask/clumping", "epoch/mask/iou",
            "epoch/mask/position_sd"} \
        <= set(tags["scalars"])
    steps = [r for r in metrics(tracked_run) if r["type"] == "step"]
    events = acc.Scalars("step/loss")
    assert [e.step for e in events] == [r["step"] for r in steps]
    assert [e.value for e in events] == pytest.approx([r["loss"] for r in steps], rel=1e-6)
    images = acc.Images("reconstruction")
    assert len(images) == 2  # after epoch 1 (--picture-every 1) and at the end
    assert images[-1].width > 0 and images[-1].encoded_image_string[:4] == b"\x89PNG"
    assert (tracked_run / "pictures" / "epoch_0001.png").is_file()


def test_wandb_offline_run_is_written(tracked_run):
    runs = list((tracked_run / "wandb").glob("offline-run-*"))
    assert len(runs) == 1
    (log,) = runs[0].glob("run-*.wandb")  # wandb's own record log, synced later by `wandb sync`
    raw = log.read_bytes()
    assert raw[:3] == b":W&"  # the format's magic
    for key in (b"step/loss", b"epoch/loss", b"step/mask/clumping", b"epoch/mask/iou", b"epoch/lr"):
        assert key in raw, key
    pictures = list((runs[0] / "files" / "media" / "images").glob("reconstruction_*.png"))
    assert len(pictures) == 2


def test_mlflow_local_run_has_the_metrics(tracked_run):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{(tracked_run / 'mlflow.db').resolve()}")
    experiment = client.get_experiment_by_name("maskkit")
    (run,) = client.search_runs([experiment.experiment_id])
    assert run.info.status == "FINISHED" and run.data.params["masker"] == "block"
    history = client.get_metric_history(run.info.run_id, "step/loss")
    steps = [r for r in metrics(tracked_run) if r["type"] == "step"]
    assert sorted(m.step for m in history) == [r["step"] for r in steps]
    assert "epoch/mask/iou" in run.data.metrics
    artifacts = [a.path for a in client.list_artifacts(run.info.run_id, "pictures/reconstruction")]
    assert any(a.endswith("reconstruction.png") for a in artifacts)


def test_bad_logger_name_is_one_line(tmp_path):
    result = CliRunner().invoke(app, [*ARGS, "--out", str(tmp_path / "r"), "--logger", "tensorboard,comet"])
    assert result.exit_code == 2
    assert "unknown tracker 'comet'" in result.output


def test_missing_package_names_the_extra(tmp_path, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "mlflow" else real(name, *a))
    result = CliRunner().invoke(app, [*ARGS, "--out", str(tmp_path / "r"), "--logger", "mlflow"])
    assert result.exit_code == 2
    assert "pip install 'maskkit[track]'" in result.output and "\n" not in result.output.strip()


def test_parse_loggers():
    assert parse_loggers("jsonl, TensorBoard,wandb,tensorboard") == ["tensorboard", "wandb"]
    assert parse_loggers(None) == [] and parse_loggers("") == []


def test_pictures_during_training_do_not_change_the_run(toy_config):
    from maskkit.lab.training import train  # the picture is the lab's callback, as in `maskkit train`
    from maskkit.train.checkpoint import load_checkpoint

    plain = toy_config(epochs=3, out=str(toy_config().out) + "-plain")
    pictured = toy_config(epochs=3, picture_every=1, out=str(toy_config().out) + "-pictures")
    train(plain)
    train(pictured)
    a = load_checkpoint(f"{plain.out}/checkpoints/last.pt")["model"]
    b = load_checkpoint(f"{pictured.out}/checkpoints/last.pt")["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    from pathlib import Path

    assert sorted(p.name for p in (Path(pictured.out) / "pictures").glob("*.png")) == ["epoch_0001.png",
                                                                                        "epoch_0002.png"]
