"""Export to timm / Hugging Face / safetensors and import (--init-from) round trips, checked against the
real transformers (and timm when it is installed), plus running a model at another input size."""

import json
import sys

import pytest
import torch
from typer.testing import CliRunner

from maskkit.cli.app import app
from maskkit.train.checkpoint import load_run_model
from maskkit.train.trainer import Trainer, run_training

runner = CliRunner()


@pytest.fixture(scope="module")
def image_run(tmp_path_factory):
    """A nano image run on the digits (a few steps: the weights only need to be non-trivial)."""
    from maskkit.train.config import TrainConfig

    out = tmp_path_factory.mktemp("interop") / "run"
    run_training(TrainConfig(modality="image", model="nano", epochs=1, batch_size=16, max_steps_per_epoch=2,
                             out=str(out), progress=False, modality_options={"image_size": 16, "patch_size": 4}))
    return out


def digits_batch(n=3, size=16):
    torch.manual_seed(0)
    return torch.randn(n, 1, size, size)


# --------------------------------------------------------------------------- an independent timm -> HF key map
def timm_to_hf_reference(sd, depth):
    """timm ViT keys -> Hugging Face ViT file keys, written from the two libraries' published layouts.

    transformers 4.x shipped this map as ``models/vit/convert_vit_timm_to_pytorch.py``; transformers 5
    removed those conversion scripts, so the test carries its own copy and stays independent of
    maskkit's ``interop.keys``.
    """
    out = {"embeddings.cls_token": sd["cls_token"], "embeddings.position_embeddings": sd["pos_embed"],
           "embeddings.patch_embeddings.projection.weight": sd["patch_embed.proj.weight"],
           "embeddings.patch_embeddings.projection.bias": sd["patch_embed.proj.bias"],
           "layernorm.weight": sd["norm.weight"], "layernorm.bias": sd["norm.bias"]}
    pairs = {"norm1": "layernorm_before", "attn.proj": "attention.output.dense", "norm2": "layernorm_after",
             "mlp.fc1": "intermediate.dense", "mlp.fc2": "output.dense"}
    for i in range(depth):
        for kind in ("weight", "bias"):
            for timm_name, hf_name in pairs.items():
                out[f"encoder.layer.{i}.{hf_name}.{kind}"] = sd[f"blocks.{i}.{timm_name}.{kind}"]
            q, k, v = sd[f"blocks.{i}.attn.qkv.{kind}"].chunk(3, dim=0)
            for name, part in (("query", q), ("key", k), ("value", v)):
                out[f"encoder.layer.{i}.attention.attention.{name}.{kind}"] = part
    return {k: t.contiguous() for k, t in out.items()}


def hf_vit_from_timm(sd, kwargs, tmp_path):
    """A transformers ViTModel holding a timm state dict (through the reference map above)."""
    transformers = pytest.importorskip("transformers", reason="the Hugging Face round trip needs transformers")
    from safetensors.torch import save_file

    size = kwargs["img_size"]
    config = transformers.ViTConfig(hidden_size=kwargs["embed_dim"], num_hidden_layers=kwargs["depth"],
                                    num_attention_heads=kwargs["num_heads"],
                                    intermediate_size=int(kwargs["embed_dim"] * kwargs["mlp_ratio"]),
                                    layer_norm_eps=1e-6, hidden_act="gelu", image_size=size,
                                    patch_size=kwargs["patch_size"], num_channels=kwargs["in_chans"], qkv_bias=True)
    folder = tmp_path / "hf-from-timm"
    folder.mkdir(exist_ok=True)
    config.save_pretrained(folder)
    save_file(timm_to_hf_reference(sd, kwargs["depth"]), str(folder / "model.safetensors"))
    return transformers.ViTModel.from_pretrained(folder, add_pooling_layer=False).eval()


# --------------------------------------------------------------------------- export
def test_export_hf_loads_with_automodel_and_matches(image_run, tmp_path):
    transformers = pytest.importorskip("transformers", reason="the Hugging Face round trip needs transformers")
    out = tmp_path / "hf"
    result = runner.invoke(app, ["export", str(image_run), "--format", "hf", "--out", str(out)])
    assert result.exit_code == 0, result.output
    model, _, _, _ = load_run_model(image_run)
    hf = transformers.AutoModel.from_pretrained(out).eval()
    assert type(hf).__name__ == "ViTModel"
    x = digits_batch()
    with torch.no_grad():
        diff = (hf(pixel_values=x).last_hidden_state - model.encode(x)).abs().max().item()
    assert diff < 1e-5
    processor = json.loads((out / "preprocessor_config.json").read_text())
    saved = json.loads((out / "config.json").read_text())
    assert processor["image_mean"] == saved["normalization"]["mean"] == list(model_mean(image_run))
    assert list(transformers.AutoImageProcessor.from_pretrained(out).image_std) == processor["image_std"]


def model_mean(run):
    return json.loads((run / "config.json").read_text())["modality_options"]["pixel_mean"]


def test_export_hf_with_decoder_matches_encoder_and_reconstruction(image_run, tmp_path):
    transformers = pytest.importorskip("transformers", reason="the Hugging Face round trip needs transformers")
    from maskkit.maskers.base import MaskPlan

    out = tmp_path / "hfmae"
    result = runner.invoke(app, ["export", str(image_run), "--format", "hf", "--decoder", "--out", str(out)])
    assert result.exit_code == 0, result.output
    model, _, _, _ = load_run_model(image_run)
    x = digits_batch()
    n = model.tokenizer.layout.num_tokens
    noise = torch.rand(x.shape[0], n, generator=torch.Generator().manual_seed(1))
    encoder = transformers.AutoModel.from_pretrained(out, mask_ratio=0.0).eval()  # ViTMAEModel, every token
    assert type(encoder).__name__ == "ViTMAEModel"
    full = transformers.ViTMAEForPreTraining.from_pretrained(out).eval()
    plan = MaskPlan.from_shuffle(torch.argsort(noise, dim=1), int(n * (1 - full.config.mask_ratio)))
    with torch.no_grad():
        ordered = torch.arange(n, dtype=torch.float32).expand(x.shape[0], -1)
        enc_diff = (encoder(pixel_values=x, noise=ordered).last_hidden_state - model.encode(x)).abs().max().item()
        hf_out = full(pixel_values=x, noise=noise)
        ours = model(model.tokenize(x), plan)
    assert enc_diff < 1e-5
    assert torch.equal(hf_out.mask.bool(), plan.mask)
    assert (hf_out.logits - ours.pred).abs().max().item() < 1e-5
    # and back: --init-from the ViT-MAE directory restores encoder and decoder
    from dataclasses import replace

    from maskkit.interop.weights import load_into, read_weights
    from maskkit.train.build import build_model

    _, modality, _, _ = load_run_model(image_run)
    fresh = build_model(modality, replace(model.config, pos_embed="learned")).eval()
    report = load_into(fresh, read_weights(out))
    assert report.kind == "hf" and report.missing == [] and report.unexpected == []
    with torch.no_grad():
        assert (fresh(model.tokenize(x), plan).pred - ours.pred).abs().max().item() < 1e-5


def test_export_timm_has_timms_key_layout_and_matches_through_transformers(image_run, tmp_path):
    from safetensors.torch import load_file

    out = tmp_path / "timm"
    result = runner.invoke(app, ["export", str(image_run), "--format", "timm", "--out", str(out)])
    assert result.exit_code == 0, result.output
    sd = load_file(str(out / "model.safetensors"))
    kwargs = json.loads((out / "config.json").read_text())["timm_kwargs"]
    depth, dim, n = kwargs["depth"], kwargs["embed_dim"], (16 // 4) ** 2
    expected = {"cls_token", "pos_embed", "patch_embed.proj.weight", "patch_embed.proj.bias", "norm.weight",
                "norm.bias"}
    for i in range(depth):
        for sub in ("norm1", "attn.qkv", "attn.proj", "norm2", "mlp.fc1", "mlp.fc2"):
            expected |= {f"blocks.{i}.{sub}.weight", f"blocks.{i}.{sub}.bias"}
    assert set(sd) == expected
    assert sd["pos_embed"].shape == (1, 1 + n, dim) and sd["blocks.0.attn.qkv.weight"].shape == (3 * dim, dim)
    assert torch.count_nonzero(sd["pos_embed"][:, 0]) == 0  # maskkit adds no position to CLS
    assert kwargs["fc_norm"] is False and kwargs["global_pool"] == "token" and kwargs["num_classes"] == 0
    model, _, _, _ = load_run_model(image_run)
    hf = hf_vit_from_timm(sd, kwargs, tmp_path)
    x = digits_batch()
    with torch.no_grad():
        assert (hf(pixel_values=x).last_hidden_state - model.encode(x)).abs().max().item() < 1e-5


def test_export_timm_round_trip_with_timm(image_run, tmp_path):
    timm_vit = pytest.importorskip("timm.models.vision_transformer",
                                   reason="timm is not installed (it needs torchvision); the key layout is "
                                          "checked through transformers in the test above")
    from safetensors.torch import load_file

    out = tmp_path / "timm"
    assert runner.invoke(app, ["export", str(image_run), "--format", "timm", "--out", str(out)]).exit_code == 0
    kwargs = json.loads((out / "config.json").read_text())["timm_kwargs"]
    vit = timm_vit.VisionTransformer(**kwargs).eval()
    vit.load_state_dict(load_file(str(out / "model.safetensors")))
    model, _, _, _ = load_run_model(image_run)
    x = digits_batch()
    with torch.no_grad():
        assert (vit.forward_features(x) - model.encode(x)).abs().max().item() < 1e-5


def test_export_safetensors_every_modality_round_trip(tmp_path, toy_config):
    from maskkit.interop.export import load_exported

    run_training(toy_config(out=str(tmp_path / "run"), max_steps_per_epoch=1))
    result = runner.invoke(app, ["export", str(tmp_path / "run"), "--out", str(tmp_path / "st")])
    assert result.exit_code == 0, result.output
    model, _, _, _ = load_run_model(tmp_path / "run")
    again, _ = load_exported(tmp_path / "st")
    x = torch.randn(2, 1, 8, 8)
    assert torch.equal(model.encode(x), again.encode(x))


def test_export_at_another_size(tmp_path, toy_config):
    from safetensors.torch import load_file

    run_training(toy_config(out=str(tmp_path / "run"), max_steps_per_epoch=1))
    result = runner.invoke(app, ["export", str(tmp_path / "run"), "--format", "timm", "--image-size", "12",
                                 "--out", str(tmp_path / "t")])
    assert result.exit_code == 0, result.output
    assert load_file(str(tmp_path / "t" / "model.safetensors"))["pos_embed"].shape == (1, 1 + 36, 64)
    assert json.loads((tmp_path / "t" / "config.json").read_text())["timm_kwargs"]["img_size"] == 12


def test_optional_packages_are_imported_only_when_used():
    """maskkit imports and runs without safetensors / transformers / timm: no module imports them at
    module level (they are imported inside the functions that need them)."""
    import ast
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    offenders = []
    for path in [*(root / "maskkit").rglob("*.py"), *(root / "cli").rglob("*.py")]:
        for node in ast.parse(path.read_text()).body:
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            if any(n.split(".")[0] in ("safetensors", "transformers", "timm") for n in names):
                offenders.append(str(path.relative_to(root)))
    assert offenders == []


def test_export_errors_are_one_line(image_run, tmp_path, monkeypatch):
    result = runner.invoke(app, ["export", str(image_run), "--format", "tflite"])
    assert result.exit_code == 2 and "--format must be one of" in result.output
    result = runner.invoke(app, ["export", str(image_run), "--format", "timm", "--decoder"])
    assert result.exit_code == 2 and "--decoder applies to --format hf" in result.output
    monkeypatch.setitem(sys.modules, "safetensors", None)  # as if the extra were not installed
    result = runner.invoke(app, ["export", str(image_run), "--format", "timm", "--out", str(tmp_path / "t")])
    assert result.exit_code == 2
    assert "pip install 'maskkit[interop]'" in result.output and "Traceback" not in result.output


# --------------------------------------------------------------------------- import (--init-from)
def random_timm_state(depth=4, dim=64, patch=2, chans=1, grid=4, head=True):
    """A timm-layout ViT state dict with random weights (a learned position table with a CLS row)."""
    g = torch.Generator().manual_seed(3)
    r = lambda *s: torch.randn(*s, generator=g) * 0.2  # noqa: E731
    sd = {"cls_token": r(1, 1, dim), "pos_embed": r(1, 1 + grid * grid, dim),
          "patch_embed.proj.weight": r(dim, chans, patch, patch), "patch_embed.proj.bias": r(dim),
          "norm.weight": 1 + r(dim), "norm.bias": r(dim)}
    for i in range(depth):
        sd |= {f"blocks.{i}.norm1.weight": 1 + r(dim), f"blocks.{i}.norm1.bias": r(dim),
               f"blocks.{i}.attn.qkv.weight": r(3 * dim, dim), f"blocks.{i}.attn.qkv.bias": r(3 * dim),
               f"blocks.{i}.attn.proj.weight": r(dim, dim), f"blocks.{i}.attn.proj.bias": r(dim),
               f"blocks.{i}.norm2.weight": 1 + r(dim), f"blocks.{i}.norm2.bias": r(dim),
               f"blocks.{i}.mlp.fc1.weight": r(4 * dim, dim), f"blocks.{i}.mlp.fc1.bias": r(4 * dim),
               f"blocks.{i}.mlp.fc2.weight": r(dim, 4 * dim), f"blocks.{i}.mlp.fc2.bias": r(dim)}
    if head:
        sd |= {"head.weight": r(10, dim), "head.bias": r(10)}
    return sd


TIMM_KWARGS = {"img_size": 8, "patch_size": 2, "in_chans": 1, "embed_dim": 64, "depth": 4, "num_heads": 4,
               "mlp_ratio": 4.0}


def test_train_init_from_timm_state_dict_starts_from_those_weights(tmp_path, toy_config):
    sd = random_timm_state()
    path = tmp_path / "vit_timm.pth"
    torch.save(sd, path)
    cfg = toy_config(out=str(tmp_path / "run"), init_from=str(path))
    trainer = Trainer(cfg)
    trainer.setup()  # the model as the first step sees it
    x = torch.randn(3, 1, 8, 8)
    model = trainer.parts.model.eval()
    with torch.no_grad():
        ours = model.encode(x)
        reference = hf_vit_from_timm({k: v for k, v in sd.items() if not k.startswith("head")}, TIMM_KWARGS,
                                     tmp_path)(pixel_values=x).last_hidden_state
    assert (ours - reference).abs().max().item() < 1e-5
    assert model.config.pos_embed == "learned"
    report = json.loads((tmp_path / "run" / "init_report.json").read_text())
    assert report["kind"] == "timm" and sorted(report["unexpected"]) == ["head.bias", "head.weight"]
    assert len(report["loaded"]) == len(sd) - 2  # every encoder tensor (pos_embed becomes the table)
    assert report["missing"] and all(k.startswith(("decoder", "mask_token")) for k in report["missing"])
    try:
        timm_vit = __import__("timm.models.vision_transformer", fromlist=["VisionTransformer"])
    except ImportError:
        return
    vit = timm_vit.VisionTransformer(**TIMM_KWARGS, num_classes=10, qkv_bias=True).eval()
    vit.load_state_dict(sd)
    with torch.no_grad():
        assert (vit.forward_features(x) - ours).abs().max().item() < 1e-5


def test_cli_train_init_from_trains_and_reports(tmp_path):
    path = tmp_path / "vit.pth"
    torch.save(random_timm_state(), path)
    args = ["train", "--modality", "toy", "--model", "nano", "--epochs", "1", "--batch-size", "16",
            "--max-steps-per-epoch", "1", "--no-progress", "--init-from", str(path)]
    result = runner.invoke(app, [*args, "--out", str(tmp_path / "ok")])
    assert result.exit_code == 0, result.output
    assert "loaded 54 tensors" in result.output and "unexpected 2 (head)" in result.output
    saved = json.loads((tmp_path / "ok" / "config.json").read_text())
    assert saved["init_from"] == str(path) and saved["resolved_model"]["pos_embed"] == "learned"
    result = runner.invoke(app, [*args[:4], "micro", *args[5:], "--out", str(tmp_path / "bad")])
    assert result.exit_code == 2
    assert "has shape" in result.output and "embed_dim=64" in result.output and "Traceback" not in result.output
    result = runner.invoke(app, [*args[:-1], str(tmp_path / "missing.pth"), "--out", str(tmp_path / "m")])
    assert result.exit_code == 2 and "no such file" in result.output


def test_init_from_hugging_face_directory(tmp_path, toy_config):
    transformers = pytest.importorskip("transformers", reason="needs transformers to write the checkpoint")
    torch.manual_seed(0)
    config = transformers.ViTConfig(hidden_size=64, num_hidden_layers=4, num_attention_heads=4,
                                    intermediate_size=256, layer_norm_eps=1e-6, image_size=8, patch_size=2,
                                    num_channels=1)
    hf = transformers.ViTModel(config, add_pooling_layer=False).eval()
    with torch.no_grad():
        hf.embeddings.position_embeddings.normal_(std=0.2)
        hf.embeddings.cls_token.normal_(std=0.2)
    hf.save_pretrained(tmp_path / "hf")
    trainer = Trainer(toy_config(out=str(tmp_path / "run"), init_from=str(tmp_path / "hf")))
    trainer.setup()
    x = torch.randn(2, 1, 8, 8)
    with torch.no_grad():
        diff = (trainer.parts.model.eval().encode(x) - hf(pixel_values=x).last_hidden_state).abs().max().item()
    assert diff < 1e-5


def test_init_from_a_maskkit_run(tmp_path, toy_config):
    run_training(toy_config(out=str(tmp_path / "a"), max_steps_per_epoch=2))
    trainer = Trainer(toy_config(out=str(tmp_path / "b"), init_from=str(tmp_path / "a"), seed=5))
    trainer.setup()
    source, _, _, _ = load_run_model(tmp_path / "a")
    for key, value in source.state_dict().items():
        assert torch.equal(value, trainer.parts.model.state_dict()[key]), key


# --------------------------------------------------------------------------- another size
def test_resize_table_interpolates_over_the_grid():
    from maskkit.interop.resize import resize_table

    table = torch.randn(1, 16, 8)
    assert torch.equal(resize_table(table, (4, 4), (4, 4)), table)
    const = torch.ones(1, 16, 8) * 3
    assert torch.allclose(resize_table(const, (4, 4), (6, 8)), torch.full((1, 48, 8), 3.0), atol=1e-5)
    assert resize_table(torch.randn(1, 2 * 16, 4), (2, 4, 4), (4, 4, 4)).shape == (1, 64, 4)
    assert resize_table(table, None, (2, 2)).shape == (1, 4, 8)  # a square checkpoint grid is inferred


def test_load_at_another_size_recomputes_or_interpolates_positions(tmp_path, image_run):
    from maskkit.interop.resize import load_resized
    from maskkit.positions import sincos_grid

    model, _, config, _ = load_resized(image_run, {"image_size": 24})
    assert model.tokenizer.layout.grid == (6, 6) and config.modality_options["image_size"] == 24
    expected = sincos_grid(model.tokenizer.layout.grid_coordinates(), model.config.embed_dim)
    assert torch.allclose(model.encoder_pos.table[0], expected)
    assert model.encode(torch.randn(2, 1, 24, 24)).shape == (2, 37, 64)
    original, _, _, _ = load_run_model(image_run)
    assert torch.equal(model.blocks[0].attn.qkv.weight, original.blocks[0].attn.qkv.weight)


def test_learned_tables_are_interpolated_when_loading_at_another_size(tmp_path):
    from maskkit.interop.resize import load_resized
    from maskkit.train.config import TrainConfig

    run_training(TrainConfig(modality="image", model="nano", epochs=1, batch_size=16, max_steps_per_epoch=1,
                             out=str(tmp_path / "run"), progress=False, model_options={"pos_embed": "learned"},
                             modality_options={"image_size": 16, "patch_size": 4}))
    small, _, _, _ = load_run_model(tmp_path / "run")
    big, _, _, _ = load_resized(tmp_path / "run", {"image_size": 32})
    assert big.encoder_pos.table.shape == (1, 64, 64) and big.decoder_pos.table.shape[1] == 64
    corner = small.encoder_pos.table.reshape(4, 4, 64)[0, 0]
    assert torch.allclose(big.encoder_pos.table.reshape(8, 8, 64)[0, 0], corner, atol=0.5)
    from maskkit.config_utils import ConfigError

    with pytest.raises(ConfigError, match="only the input size"):
        load_resized(tmp_path / "run", {"patch_size": 8})


def test_cli_eval_at_another_image_size(image_run, tmp_path):
    result = runner.invoke(app, ["eval", str(image_run), "--image-size", "24", "--max-samples", "120",
                                 "--no-baselines", "--json", str(tmp_path / "e.json")])
    assert result.exit_code == 0, result.output
    payload = json.loads((tmp_path / "e.json").read_text())
    assert payload["results"][0]["num_samples"] == 120 and 0.0 <= payload["results"][0]["linear_acc"] <= 1.0
    result = runner.invoke(app, ["visualize", str(image_run), "--image-size", "24", "-n", "2",
                                 "--out", str(tmp_path / "v.png")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "v.png").is_file()
    result = runner.invoke(app, ["eval", str(image_run), "--image-size", "25"])
    assert result.exit_code == 2 and "not divisible" in result.output


def test_learned_position_tables_train_without_decay_and_old_checkpoints_stay_compatible(toy_config):
    from dataclasses import asdict

    from maskkit.model.mae import ModelConfig
    from maskkit.train.build import build_run
    from maskkit.train.checkpoint import CheckpointError, check_compatible
    from maskkit.train.trainer import param_groups

    model = build_run(toy_config(model_options={"pos_embed": "learned"}), with_data=False).model
    decay, no_decay = param_groups(model, 0.05)
    assert any(p is model.encoder_pos.table for p in no_decay["params"])
    assert not any(p is model.encoder_pos.table for p in decay["params"])
    assert "encoder_pos.table" in model.state_dict() and "decoder_pos.table" in model.state_dict()
    shape = asdict(ModelConfig())
    before = {k: v for k, v in shape.items() if k != "pos_embed"}  # written before the option existed
    check_compatible({"config": {"resolved_model": before}}, {"resolved_model": shape}, "--resume")
    with pytest.raises(CheckpointError, match="model shape"):
        check_compatible({"config": {"resolved_model": before}},
                         {"resolved_model": {**shape, "pos_embed": "learned"}}, "--resume")


def test_finetune_at_another_image_size(image_run, tmp_path):
    from maskkit.lab.finetune import FinetuneConfig
    from maskkit.lab.finetune.trainer import FinetuneTrainer

    trainer = FinetuneTrainer(FinetuneConfig(run=str(image_run), out=str(tmp_path / "ft"), epochs=1, batch_size=16,
                                             max_steps_per_epoch=1, max_test_samples=32, progress=False,
                                             modality_overrides={"image_size": 24}))
    result = trainer.train()
    assert trainer.classifier.model.tokenizer.layout.grid == (6, 6)
    assert tuple(trainer.train_data[0][0].shape) == (1, 24, 24) and result.test_samples == 32


def test_audio_runs_at_another_spectrogram_length(tmp_path):
    run = tmp_path / "audio"
    result = runner.invoke(app, ["train", "--modality", "audio", "--model", "nano", "--epochs", "1", "--batch-size",
                                 "8", "--max-steps-per-epoch", "1", "--out", str(run), "--no-progress"])
    assert result.exit_code == 0, result.output
    from maskkit.interop.resize import load_resized

    model, modality, _, _ = load_resized(run, {"num_frames": 64})
    frames, mels = modality.config.num_frames, modality.config.n_mels
    assert frames == 64 and model.encode(torch.randn(2, 1, 64, mels)).shape[1] == 1 + model.tokenizer.layout.num_tokens
    result = runner.invoke(app, ["visualize", str(run), "--num-frames", "64", "-n", "2",
                                 "--out", str(tmp_path / "a.png")])
    assert result.exit_code == 0, result.output


def test_init_from_an_mae_checkpoint_in_timm_layout_loads_the_decoder(image_run, tmp_path):
    """MAE-style checkpoints keep the encoder in timm's names and add decoder_* keys."""
    from dataclasses import replace

    from maskkit.interop.keys import to_timm
    from maskkit.interop.weights import load_into, read_weights
    from maskkit.maskers.base import MaskPlan
    from maskkit.train.build import build_model

    model, modality, _, _ = load_run_model(image_run)
    sd = to_timm(model)
    sd |= {k: v for k, v in model.state_dict().items() if k.startswith(("decoder_", "mask_token"))}
    table = model.decoder_pos.table.detach()
    sd["decoder_pos_embed"] = torch.cat([torch.zeros(1, 1, table.shape[-1]), table], dim=1)
    torch.save({"model": sd}, tmp_path / "mae_full.pth")
    fresh = build_model(modality, replace(model.config, pos_embed="learned")).eval()
    report = load_into(fresh, read_weights(tmp_path / "mae_full.pth"))
    assert report.kind == "timm" and report.missing == [] and report.unexpected == []
    x = digits_batch()
    plan = MaskPlan.from_shuffle(torch.randperm(16).expand(3, -1), 4)
    with torch.no_grad():
        assert torch.allclose(fresh(model.tokenize(x), plan).pred, model(model.tokenize(x), plan).pred, atol=1e-6)


def test_onnx_export_runs_in_onnxruntime_at_any_batch(image_run, tmp_path):
    """`maskkit export RUN --format onnx --out D`: onnxruntime matches model.encode at batch 1 and 3."""
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    import numpy as np

    import maskkit

    out = tmp_path / "onnx"
    result = runner.invoke(app, ["export", str(image_run), "--format", "onnx", "--out", str(out)])
    assert result.exit_code == 0, result.output
    config = json.loads((out / "config.json").read_text())
    assert config["input"] == {"name": "samples", "shape": ["batch", 1, 16, 16]}
    assert config["output"]["shape"] == ["batch", 17, 64] and config["output"]["prefix_tokens"] == 1
    model, _, _ = maskkit.load(image_run)
    session = ort.InferenceSession(str(out / "encoder.onnx"), providers=["CPUExecutionProvider"])
    for batch in (1, 3):
        x = torch.randn(batch, 1, 16, 16, generator=torch.Generator().manual_seed(batch))
        with torch.no_grad():
            expected = model.encode(x).numpy()
        got = session.run(["features"], {"samples": x.numpy()})[0]
        assert got.shape == expected.shape == (batch, 17, 64)
        assert np.abs(got - expected).max() < 1e-4
