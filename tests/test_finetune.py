"""Fine-tuning: the recipe's pieces (layer decay, drop-path, mixing, EMA), the loop (held-out accuracy,
resume after a signal, linear probe) and the CLI beside random init."""

import json
import math
import signal

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from maskkit.cli.app import app
from maskkit.lab.finetune import FinetuneConfig, run_finetune
from maskkit.lab.finetune.recipe import (
    Classifier,
    MixAxes,
    WeightEMA,
    layer_decay_groups,
    mix_axes,
    mix_batch,
    set_drop_path,
    soft_targets,
)
from maskkit.lab.finetune.trainer import FinetuneInterrupted, FinetuneTrainer
from maskkit.model.vit import drop_path
from maskkit.train.checkpoint import load_run_model
from maskkit.train.trainer import run_training

runner = CliRunner()


@pytest.fixture(scope="module")
def toy_run(tmp_path_factory):
    from maskkit.train.config import TrainConfig

    out = tmp_path_factory.mktemp("ft") / "run"
    run_training(TrainConfig(modality="toy", model="nano", epochs=1, batch_size=16, max_steps_per_epoch=2,
                             out=str(out), progress=False, holdout_fraction=0.25))
    return out


def ft_config(run, out, **kw):
    base = dict(run=str(run), out=str(out), epochs=2, batch_size=16, max_steps_per_epoch=3, progress=False,
                warmup_epochs=0.5)
    base.update(kw)
    return FinetuneConfig(**base)


# --------------------------------------------------------------------------- recipe
def test_layer_decay_scales_each_depth_and_skips_decay_on_norms(toy_run):
    model, _, _, _ = load_run_model(toy_run)
    clf = Classifier(model, num_classes=2)
    for p in model.parameters():
        if p is not None:
            p.requires_grad_(True)
    from maskkit.lab.finetune.recipe import freeze_decoder

    freeze_decoder(model)
    groups = layer_decay_groups(clf, weight_decay=0.05, layer_decay=0.5)
    depth = model.depth
    scales = {g["layer"]: g["lr_scale"] for g in groups}
    assert scales == {i: 0.5 ** (depth + 1 - i) for i in range(depth + 2)}
    by_param = {id(p): g for g in groups for p in g["params"]}
    assert by_param[id(model.blocks[1].attn.qkv.weight)]["layer"] == 2
    assert by_param[id(model.blocks[1].attn.qkv.weight)]["weight_decay"] == 0.05
    assert by_param[id(model.blocks[1].norm1.weight)]["weight_decay"] == 0.0
    assert by_param[id(model.cls_token)]["layer"] == 0 and by_param[id(clf.head[1].weight)]["layer"] == depth + 1
    assert id(model.decoder_embed.weight) not in by_param  # the decoder is not fine-tuned
    assert sum(len(g["params"]) for g in groups) == sum(p.requires_grad for p in clf.parameters())


def test_drop_path_is_per_sample_rescaled_and_off_in_eval(toy_run):
    x = torch.ones(4000, 3, 2)
    torch.manual_seed(0)
    out = drop_path(x, 0.25, training=True)
    kept = out[:, 0, 0] != 0
    assert torch.all((out == 0).all(dim=(1, 2)) | (out == 1 / 0.75).all(dim=(1, 2)))  # whole samples
    assert abs(kept.float().mean().item() - 0.75) < 0.03
    assert torch.equal(drop_path(x, 0.25, training=False), x)
    model, _, _, _ = load_run_model(toy_run)
    set_drop_path(model, 0.3)
    assert [b.drop_path for b in model.blocks] == pytest.approx([0.0, 0.1, 0.2, 0.3])
    model.eval()
    x = torch.randn(2, 1, 8, 8)
    assert torch.equal(model.encode(x), model.encode(x))


def test_mixup_and_cutmix_keep_targets_a_distribution_and_match_the_pasted_area():
    rng = np.random.default_rng(0)
    x = torch.arange(4, dtype=torch.float32).reshape(4, 1, 1, 1).expand(4, 1, 16, 16).clone()
    y = soft_targets(torch.tensor([0, 1, 2, 3]), 4, smoothing=0.1)
    assert torch.allclose(y.sum(1), torch.ones(4)) and math.isclose(y[0, 0].item(), 0.925, rel_tol=1e-6)
    mixed, t, kind = mix_batch(x, y, rng, mixup=0.8, cutmix=0.0, mix_prob=1.0, switch_prob=0.5,
                               axes=MixAxes((2, 3), "box"))
    lam = (mixed[0, 0, 0, 0] - 3.0) / (0.0 - 3.0)  # sample 0 mixed with sample 3
    assert kind == "mixup" and torch.allclose(t.sum(1), torch.ones(4))
    assert torch.allclose(t[0], lam * y[0] + (1 - lam) * y[3], atol=1e-6)
    for _ in range(5):
        mixed, t, kind = mix_batch(x, y, rng, mixup=0.0, cutmix=1.0, mix_prob=1.0, switch_prob=0.5,
                                   axes=MixAxes((2, 3), "box"))
        pasted = (mixed[0] == 3.0).float().mean().item()  # fraction of sample 0 taken from sample 3
        assert kind == "cutmix" and math.isclose(t[0, 3].item() - y[0, 3].item() * (1 - pasted),
                                                 pasted * y[3, 3].item(), rel_tol=1e-5, abs_tol=1e-6)
    spec = torch.arange(4, dtype=torch.float32).reshape(4, 1, 1, 1).expand(4, 1, 12, 6).clone()
    mixed, _, _ = mix_batch(spec, y, rng, mixup=0.0, cutmix=1.0, mix_prob=1.0, switch_prob=0.5,
                            axes=mix_axes(("time", "freq"), True, 4))
    changed = mixed[0, 0] != 0
    assert torch.equal(changed.all(dim=1), changed.any(dim=1))  # whole time frames: every frequency
    assert mix_axes(("x", "y", "z"), False, 3).dims == ()  # point clouds: no cutmix
    assert mix_axes(("t", "h", "w"), True, 5).dims == (3, 4)  # video: a box on every frame


def test_weight_ema_follows_the_model():
    net = torch.nn.Linear(3, 2)
    ema = WeightEMA(net, decay=0.5)
    with torch.no_grad():
        start = net.weight.clone()
        net.weight.add_(2.0)
    ema.update(net)
    assert torch.allclose(ema.module.weight, start + 1.0)


# --------------------------------------------------------------------------- the loop
def test_finetune_reports_held_out_accuracy_on_the_runs_hold_out(toy_run, tmp_path):
    result = run_finetune(ft_config(toy_run, tmp_path / "ft", ema=0.9))
    held = json.loads((toy_run / "holdout.json").read_text())["indices"]
    assert result.test_samples == len(held) and result.test_on == "the samples the run held out of pretraining"
    assert result.train_samples == 96 - len(held) and result.num_classes == 2
    assert 0.0 <= result.accuracy <= 1.0 and result.ema_accuracy is not None and result.steps == 6
    assert len(result.history) == 2 and math.isfinite(result.final_loss)
    saved = json.loads((tmp_path / "ft" / "finetune.json").read_text())
    assert saved["accuracy"] == result.accuracy
    # 6 steps: the regularisers were fitted to the budget (off), and the run said it is too short
    recipe = saved["recipe"]
    assert (recipe["mixup"], recipe["cutmix"], recipe["drop_path"], recipe["warmup_epochs"]) == (0.0, 0.0, 0.0, 0.5)
    assert any("too short to learn" in note for note in recipe["notes"])
    # random init: exactly the run's starting weights
    trainer = FinetuneTrainer(ft_config(toy_run, tmp_path / "rand", init="random"))
    trainer.setup()
    from maskkit.train.build import build_run

    cfg = load_run_model(toy_run)[2]
    initial = build_run(cfg, with_data=True).model
    assert torch.equal(trainer.classifier.model.blocks[0].attn.qkv.weight, initial.blocks[0].attn.qkv.weight)


def test_interrupted_finetune_resumes_to_the_same_weights(toy_run, tmp_path):
    straight = FinetuneTrainer(ft_config(toy_run, tmp_path / "a", ema=0.9))
    straight.train()

    class StopAfterFirstEpoch(FinetuneTrainer):
        def accuracy(self, module):
            self._stop_signal = signal.SIGTERM  # as if a signal arrived during the first epoch's evaluation
            return super().accuracy(module)

    with pytest.raises(FinetuneInterrupted):
        StopAfterFirstEpoch(ft_config(toy_run, tmp_path / "b", ema=0.9)).train()
    resumed = FinetuneTrainer(ft_config(toy_run, tmp_path / "b", ema=0.9, resume=True))
    result = resumed.train()
    assert result.steps == 6
    for (name, a), b in zip(straight.classifier.state_dict().items(), resumed.classifier.state_dict().values(),
                            strict=True):
        assert torch.equal(a, b), name
    with pytest.raises(Exception, match="epochs"):
        FinetuneTrainer(ft_config(toy_run, tmp_path / "b", epochs=3, resume=True)).train()


def test_linear_probe_trains_only_the_head(toy_run, tmp_path):
    trainer = FinetuneTrainer(ft_config(toy_run, tmp_path / "lp", freeze=True))
    result = trainer.train()
    model, _, _, _ = load_run_model(toy_run)
    for key, value in model.state_dict().items():
        assert torch.equal(value, trainer.classifier.model.state_dict()[key]), key
    assert isinstance(trainer.optimizer, torch.optim.SGD) and isinstance(trainer.classifier.head[0],
                                                                       torch.nn.BatchNorm1d)
    assert result.protocol == "linear probe (SGD)"


def test_cli_finetune_on_digits_beside_random_init(tmp_path):
    run = tmp_path / "digits"
    result = runner.invoke(app, ["train", "--modality", "image", "--model", "nano", "--image-size", "16",
                                 "--epochs", "1", "--batch-size", "32", "--max-steps-per-epoch", "2",
                                 "--no-progress", "--out", str(run)])
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["finetune", str(run), "--epochs", "2", "--max-steps-per-epoch", "2",
                                 "--batch-size", "32", "--max-test-samples", "200", "--no-progress"])
    assert result.exit_code == 0, result.output
    assert "pretrained" in result.output and "random-init" in result.output
    summary = json.loads((run / "finetune" / "summary.json").read_text())
    arms = summary["arms"]
    assert set(arms) == {"pretrained", "random-init"} and arms["pretrained"]["test_samples"] == 200
    assert summary["gain"] == pytest.approx(arms["pretrained"]["accuracy"] - arms["random-init"]["accuracy"])
    assert (run / "finetune" / "pretrained" / "checkpoints" / "last.pt").is_file()
    result = runner.invoke(app, ["finetune", str(run), "--epochs", "2", "--max-steps-per-epoch", "2",
                                 "--batch-size", "32", "--max-test-samples", "200", "--no-progress", "--resume"])
    assert result.exit_code == 0, result.output  # both arms were finished: nothing left to train
    again = json.loads((run / "finetune" / "summary.json").read_text())["arms"]
    assert {a: r["accuracy"] for a, r in again.items()} == {a: r["accuracy"] for a, r in arms.items()}


def test_cli_finetune_bad_input_is_one_line(toy_run, tmp_path):
    result = runner.invoke(app, ["finetune", str(tmp_path / "nope")])
    assert result.exit_code == 2 and "no such checkpoint" in result.output
    result = runner.invoke(app, ["finetune", str(toy_run), "--mixup", "-1", "--out", str(tmp_path / "x")])
    assert result.exit_code == 2 and "--mixup" in result.output
    result = runner.invoke(app, ["finetune", str(toy_run), "--modality-opt", "patch_size=4"])
    assert result.exit_code == 2 and "only the input size" in result.output


# video's mixing axes are covered by the unit test above (its clips are the slowest data to build)
@pytest.mark.parametrize("modality,options,mixing", [
    ("audio", [], "time span"),
    ("pointcloud", ["--num-points", "128", "--num-groups", "8", "--group-size", "16"], "none"),
])
def test_finetune_runs_on_every_modality(tmp_path, modality, options, mixing):
    run = tmp_path / "run"
    result = runner.invoke(app, ["train", "--modality", modality, "--model", "nano", "--epochs", "1",
                                 "--batch-size", "8", "--max-steps-per-epoch", "1", *options, "--out", str(run),
                                 "--no-progress"])
    assert result.exit_code == 0, result.output
    trainer = FinetuneTrainer(ft_config(run, tmp_path / "ft", epochs=1, batch_size=8, max_steps_per_epoch=2,
                                        max_test_samples=16, mixup=0.8, cutmix=1.0))  # given: kept at 2 steps
    result = trainer.train()
    assert trainer.axes.label == mixing and trainer.mixing == (mixing != "none")
    assert result.steps == 2 and 0 < result.test_samples <= 16 and 0.0 <= result.accuracy <= 1.0


def test_finetune_init_from_outside_weights(toy_run, tmp_path):
    from test_interop import random_timm_state

    torch.save(random_timm_state(), tmp_path / "vit.pth")
    trainer = FinetuneTrainer(ft_config(toy_run, tmp_path / "ft", epochs=1, max_steps_per_epoch=1,
                                        init_from=str(tmp_path / "vit.pth")))
    result = trainer.train()
    assert result.init_report.startswith(f"weights from {tmp_path / 'vit.pth'} (timm): loaded 54 tensors")
    assert trainer.classifier.model.config.pos_embed == "learned"


def test_batch_norm_head_gets_the_exact_statistics_of_the_current_features(toy_run, tmp_path):
    """Before an evaluation the BatchNorm head's running mean/var are the features' own (PreciseBN),
    not a momentum average of earlier weights; no random numbers are drawn doing it."""
    from maskkit.lab.finetune.recipe import refresh_batch_norm

    trainer = FinetuneTrainer(ft_config(toy_run, tmp_path / "bn", head_norm="batch"))
    trainer.setup()
    clf = trainer.classifier
    norm = clf.head[0]
    norm.running_mean.fill_(5.0)  # stale statistics, as after fast-moving steps
    batches = [x for x, _ in trainer._samples(trainer.train_idx)]
    with torch.no_grad():
        clf.eval()
        feats = torch.cat([clf.features(x) for x in batches])
    clf.train()
    rng = torch.get_rng_state()
    assert refresh_batch_norm(clf, iter(batches))
    assert torch.equal(torch.get_rng_state(), rng)
    torch.testing.assert_close(norm.running_mean, feats.mean(0), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(norm.running_var, feats.var(0, unbiased=True), rtol=1e-4, atol=1e-6)
    assert clf.training and norm.momentum == 0.1  # left as it was
