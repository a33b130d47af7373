"""The training loop on the toy modality: run files, resume, checkpoints, non-finite handling."""

import json

import pytest
import torch

from maskkit.config_utils import ConfigError
from maskkit.train.checkpoint import CheckpointError, atomic_save, load_checkpoint, load_run_model
from maskkit.train.metrics import read_metrics
from maskkit.train.schedule import lr_at, scaled_lr
from maskkit.train.trainer import Trainer, TrainingStopped, run_training


def params_of(path):
    return load_checkpoint(path)["model"]


def test_one_epoch_writes_every_run_file(toy_config, tmp_path):
    from maskkit.lab.training import train  # the trainer plus the standard callbacks, as `maskkit train`

    cfg = toy_config(epochs=2, save_every=1)
    result = train(cfg)
    out = tmp_path / "run"
    assert result.epochs == 2 and result.steps == 2 * (96 // 16)
    for name in ("config.json", "metrics.jsonl", "summary.json", "reconstruction.png",
                 "checkpoints/last.pt", "checkpoints/epoch_0001.pt", "checkpoints/epoch_0002.pt"):
        assert (out / name).is_file(), name
    rows = read_metrics(out)
    steps = [r for r in rows if r["type"] == "step"]
    epochs = [r for r in rows if r["type"] == "epoch"]
    assert len(epochs) == 2 and steps and all("lr" in r and "samples_per_s" in r for r in steps)
    saved = json.loads((out / "config.json").read_text())
    assert saved["mask_ratio"] == 0.75 and saved["resolved_model"]["embed_dim"] == 64
    assert not list(out.glob("checkpoints/*.tmp"))


def test_loss_decreases(toy_config):
    result = run_training(toy_config(epochs=6, base_lr=3e-3))
    rows = [r for r in read_metrics(result.out_dir) if r["type"] == "epoch"]
    assert rows[-1]["loss"] < rows[0]["loss"]


def train_epochs_then_stop(cfg, epochs):
    """What a run killed right after its epoch-``epochs`` checkpoint leaves behind."""
    from maskkit.train.progress import TrainProgressBar

    trainer = Trainer(cfg)
    trainer.setup()
    for _ in range(epochs):
        trainer.train_epoch(TrainProgressBar(False, None, cfg.epochs, trainer.steps_per_epoch))
        trainer.epoch += 1
        trainer.batch_in_epoch = 0
        trainer.save(0.0)


def test_resume_continues_and_matches_uninterrupted(toy_config, tmp_path):
    full = run_training(toy_config(epochs=3, out=str(tmp_path / "full")))
    train_epochs_then_stop(toy_config(epochs=3, out=str(tmp_path / "split")), 1)
    resumed = run_training(toy_config(epochs=3, out=str(tmp_path / "split"), resume=True))
    assert resumed.steps == full.steps
    a = params_of(tmp_path / "full/checkpoints/last.pt")
    b = params_of(tmp_path / "split/checkpoints/last.pt")
    for k in a:
        assert torch.equal(a[k], b[k]), k  # bit-identical on CPU


def test_resume_mid_epoch_is_bit_identical(toy_config, tmp_path):
    full = run_training(toy_config(epochs=2, out=str(tmp_path / "full")))
    trainer = Trainer(toy_config(epochs=2, out=str(tmp_path / "cut")))
    trainer.setup()
    # run 3 steps of the first epoch, then save as a signal handler would
    trainer._stop_signal = 15
    with pytest.raises(Exception, match="stopped by signal"):
        from maskkit.train.progress import TrainProgressBar

        trainer.train_epoch(TrainProgressBar(False, None, 2, trainer.steps_per_epoch))
    assert load_checkpoint(tmp_path / "cut/checkpoints/last.pt")["position"]["batch_in_epoch"] == 1
    resumed = run_training(toy_config(epochs=2, out=str(tmp_path / "cut"), resume=True))
    assert resumed.steps == full.steps
    a, b = params_of(tmp_path / "full/checkpoints/last.pt"), params_of(tmp_path / "cut/checkpoints/last.pt")
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_resume_without_checkpoint_is_clear(toy_config):
    with pytest.raises(CheckpointError, match="nothing to resume"):
        run_training(toy_config(resume=True))


def test_resume_refuses_other_model(toy_config, tmp_path):
    run_training(toy_config())
    with pytest.raises(CheckpointError, match="model"):
        run_training(toy_config(resume=True, model="micro"))


def test_gradient_accumulation_counts_optimizer_steps(toy_config, tmp_path):
    result = run_training(toy_config(batch_size=16, accum_steps=2, out=str(tmp_path / "acc"),
                                     max_steps_per_epoch=5, epochs=2))
    pos = load_checkpoint(tmp_path / "acc/checkpoints/last.pt")["position"]
    assert result.steps == pos["global_step"] == 10
    assert pos["opt_step"] == 6  # ceil(5 / 2) optimiser steps per epoch: the odd batch still steps
    summary = json.loads((tmp_path / "acc/summary.json").read_text())
    assert summary["effective_batch"] == 32
    assert summary["peak_lr"] == pytest.approx(1e-3 * 32 / 256)


def test_lr_rule_and_schedule():
    assert scaled_lr(1.5e-4, 4096) == pytest.approx(2.4e-3)
    assert lr_at(0, 100, 10, 1.0) == 0.0
    assert lr_at(10, 100, 10, 1.0) == pytest.approx(1.0)
    assert lr_at(100, 100, 10, 1.0) == pytest.approx(0.0)
    assert 0.0 < lr_at(55, 100, 10, 1.0) < 1.0


def test_nonfinite_step_is_skipped_or_stops(toy_config, tmp_path, monkeypatch):
    from maskkit.losses import ReconstructionMSE

    original = ReconstructionMSE.forward
    calls = {"n": 0}

    def poisoned(self, pred, targets, plan):
        out = original(self, pred, targets, plan)
        calls["n"] += 1
        if calls["n"] == 2:
            out.loss = out.loss * float("nan")
        return out

    monkeypatch.setattr(ReconstructionMSE, "forward", poisoned)
    run_training(toy_config(out=str(tmp_path / "skip")))
    rows = read_metrics(tmp_path / "skip")
    assert any(r["type"] == "nonfinite" for r in rows)
    ckpt = load_checkpoint(tmp_path / "skip/checkpoints/last.pt")
    assert all(torch.isfinite(v).all() for v in ckpt["model"].values() if v.is_floating_point())
    calls["n"] = 0
    with pytest.raises(TrainingStopped, match="non-finite loss or gradient at epoch 0 step 1"):
        run_training(toy_config(out=str(tmp_path / "stop"), on_nonfinite="stop"))


def test_checkpoint_safety(tmp_path, toy_config):
    run_training(toy_config())
    path = tmp_path / "run/checkpoints/last.pt"
    model, modality, config, ckpt = load_run_model(path)
    assert config.modality == "toy" and modality.name == "toy"
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="not a loadable"):
        load_checkpoint(bad)
    foreign = tmp_path / "foreign.pt"
    torch.save({"weights": torch.zeros(1)}, foreign)
    with pytest.raises(CheckpointError, match="not a maskkit checkpoint"):
        load_checkpoint(foreign)
    future = dict(ckpt, version=99)
    atomic_save(future, tmp_path / "future.pt")
    with pytest.raises(CheckpointError, match="version 99"):
        load_checkpoint(tmp_path / "future.pt")


def test_unwritable_out_dir_is_reported(toy_config, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(ConfigError, match="cannot write"):
        run_training(toy_config(out=str(blocker / "run")))


def test_config_validation():
    from maskkit.train.config import TrainConfig

    with pytest.raises(ConfigError, match="`mask_ratio` must be in"):
        TrainConfig(mask_ratio=1.5)
    with pytest.raises(ConfigError, match="`epochs` must be >= 1"):
        TrainConfig(epochs=0)


def test_grad_checkpoint_matches_plain(toy_config, tmp_path):
    import torch

    from maskkit.train.checkpoint import load_checkpoint

    run_training(toy_config(out=str(tmp_path / "plain"), max_steps_per_epoch=3))
    run_training(toy_config(out=str(tmp_path / "ckpt"), max_steps_per_epoch=3,
                            model_options={"grad_checkpoint": True}))
    a = load_checkpoint(tmp_path / "plain/checkpoints/last.pt")["model"]
    b = load_checkpoint(tmp_path / "ckpt/checkpoints/last.pt")["model"]
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-5, atol=1e-6)


def test_holdout_samples_are_never_trained_on(toy_config, tmp_path):
    from maskkit.train.data import EpochOrderSampler, holdout_split

    train, held = holdout_split(96, 0.25)
    assert len(held) == 24 and set(train).isdisjoint(held) and len(train) + len(held) == 96
    assert torch.equal(torch.as_tensor(holdout_split(96, 0.25)[1]), torch.as_tensor(held))  # seed-free
    sampler = EpochOrderSampler(96, 8, seed=3, indices=train)
    for epoch in range(3):
        sampler.set_epoch(epoch)
        seen = {i for _, i in sampler}
        assert seen.isdisjoint(held)
    run_training(toy_config(holdout_fraction=0.25, out=str(tmp_path / "h")))
    saved = json.loads((tmp_path / "h/holdout.json").read_text())
    assert saved["indices"] == held.tolist() and saved["num_samples"] == 96


def test_callbacks_add_epoch_metrics_and_run_at_the_end(toy_config):
    from maskkit.train.callbacks import Callback, TrainState

    seen: list[tuple[str, int]] = []

    class Recorder(Callback):
        def epoch_metrics(self, state: TrainState) -> dict[str, float]:
            seen.append(("epoch", state.epoch))
            return {"custom/epoch_done": float(state.epoch)}

        def on_train_end(self, state: TrainState) -> None:
            seen.append(("end", state.epoch))
            raise RuntimeError("a broken callback must not cost the run")

    result = run_training(toy_config(epochs=2), callbacks=[Recorder()])
    assert seen == [("epoch", 1), ("epoch", 2), ("end", 2)]
    rows = read_metrics(result.out_dir)
    assert [r["custom/epoch_done"] for r in rows if r["type"] == "epoch"] == [1.0, 2.0]
    assert any(r["type"] == "warning" and "Recorder failed" in r["message"] for r in rows)
    assert not (result.out_dir / "reconstruction.png").exists()  # pictures come from the lab's callback
