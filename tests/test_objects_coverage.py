"""builtin:objects and the object-coverage diagnostic: masks match the drawn objects, coverage is
exact on hand-made cases, random masking sits at n_mask / N, and training logs it per epoch."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from maskkit.lab.coverage import coverage_probe, masker_coverage, object_coverage, random_coverage
from maskkit.maskers.base import TrainingProgress
from maskkit.registry import build_masker
from maskkit.train.build import build_dataset, build_modality


@pytest.fixture(scope="module")
def objects():
    modality = build_modality("image", {"image_size": 16, "patch_size": 4})
    dataset = build_dataset(modality, "builtin:objects", train=False, seed=0)
    modality.adapt_to_dataset(dataset)
    return modality, dataset


def test_objects_dataset_labels_and_masks(objects) -> None:
    _, ds = objects
    assert len(ds) == 1200 and ds.num_classes == 4 and ds.class_names == ["disc", "square", "triangle", "cross"]
    assert ds.has_object_masks
    x, mask = ds.object_sample(5)
    assert x.shape == (3, 16, 16) and mask.shape == (16, 16)
    assert 0.02 < float(mask.mean()) < 0.5 and float(mask.max()) == pytest.approx(1.0, abs=1e-3)
    # the same picture as the un-augmented sample, and the same every time (fixed content seed)
    assert torch.allclose(x, (ds.raw(5) - ds.mean) / ds.std, atol=1e-5)
    again = build_dataset(build_modality("image", {"image_size": 16, "patch_size": 4}), "builtin:objects",
                          train=True, seed=7)
    assert torch.allclose(again.raw(5), ds.raw(5))


def test_object_mask_marks_the_painted_pixels() -> None:
    from maskkit.modalities.image.objects import ObjectImages

    ds = ObjectImages(size=(64, 64), channels=None, augment=False, policy="none", seed=0)
    for i in (0, 1, 2, 3):  # one of each class
        img, mask = ds._draw(i)
        colour = torch.tensor(ds.specs[i, 9:12], dtype=torch.float32).view(3, 1, 1)
        inside = mask > 0.99
        # object pixels carry the object colour, darkened by stripes to 65 % or not at all
        top = int(colour.view(3).argmax())
        k = img[top, inside] / colour.view(3)[top]
        assert bool(((k - 0.65).abs() < 0.01).logical_or((k - 1.0).abs() < 0.01).all())
        assert torch.allclose(img[:, inside], colour.view(3, 1) * k, atol=0.01)
        assert int(ds.labels[i]) == i % 4


def test_token_fractions_are_patch_means(objects) -> None:
    modality, ds = objects
    masks = torch.stack([ds.object_sample(i)[1] for i in range(3)])
    frac = modality.object_token_fractions(masks, None)
    assert frac.shape == (3, 16)
    by_hand = masks.reshape(3, 4, 4, 4, 4).permute(0, 1, 3, 2, 4).reshape(3, 16, 16).mean(-1)
    assert torch.allclose(frac, by_hand, atol=1e-6)


def test_object_coverage_by_hand() -> None:
    mask = torch.tensor([[1, 1, 0, 0], [0, 0, 0, 1], [1, 0, 1, 0]], dtype=torch.bool)
    frac = torch.tensor([[1.0, 0.5, 0.5, 0.0], [1.0, 1.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]])
    cov = object_coverage(mask, frac)
    assert cov[0].item() == pytest.approx(1.5 / 2.0)
    assert cov[1].item() == 0.0
    assert torch.isnan(cov[2])
    assert random_coverage(64, 0.75) == 48 / 64
    assert random_coverage(10, 0.75) == 8 / 10  # MAE's floor: n_keep = int(10 * 0.25) = 2


def test_random_masker_coverage_is_n_mask_over_n(objects) -> None:
    from maskkit.model.mae import MaskedAutoencoder, model_preset

    modality, ds = objects
    torch.manual_seed(0)
    model = MaskedAutoencoder(modality.build_tokenizer(64), model_preset("nano"))
    probe = coverage_probe(ds, modality, model.tokenizer, num_samples=400)
    values = masker_coverage(model, build_masker("random", {}), probe, 0.75, TrainingProgress(), seed=1)
    assert values["coverage_random"] == 0.75
    # 400 samples, ~3 object tokens each: the sample mean is within a few standard errors of 0.75
    assert abs(values["coverage"] - 0.75) < 0.04
    assert 0.05 < values["object_share"] < 0.4


def test_self_guided_hides_objects_it_can_see(objects) -> None:
    """With patch-embedding features (colour) the informed mask covers the bright objects far more than
    random masking does; the default hints (few, truly revealed) keep most of that."""
    from maskkit.model.mae import MaskedAutoencoder, model_preset

    modality, ds = objects
    torch.manual_seed(0)
    model = MaskedAutoencoder(modality.build_tokenizer(64), model_preset("nano"))
    probe = coverage_probe(ds, modality, model.tokenizer, num_samples=64)
    started = TrainingProgress(epoch=5, step=50, epochs=10, steps_per_epoch=10)
    sg = build_masker("self-guided", {"feature_source": "embeddings"})
    informed = masker_coverage(model, sg, probe, 0.75, started, seed=0)["coverage"]
    assert informed > 0.85
    v1 = build_masker("self-guided", {"feature_source": "embeddings", "preset": "sgmae-v1"})
    early = TrainingProgress(epoch=2, step=20, epochs=10, steps_per_epoch=10)  # v1: h ~ 0.9, nearly random
    assert masker_coverage(model, v1, probe, 0.75, early, seed=0)["coverage"] < informed - 0.05


def test_training_logs_object_coverage(tmp_path) -> None:
    from maskkit.lab.training import train  # coverage is the lab's callback, as in `maskkit train`
    from maskkit.train.config import TrainConfig

    config = TrainConfig(modality="image", data="builtin:objects", masker="random", model="nano", epochs=2,
                         modality_options={"image_size": 16, "patch_size": 4}, max_steps_per_epoch=2,
                         batch_size=8, out=str(tmp_path / "run"), progress=False, visualize_samples=2)
    train(config)
    epochs = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    epochs = [r for r in epochs if r["type"] == "epoch"]
    assert len(epochs) == 2
    for r in epochs:
        assert r["objects/coverage_random"] == 0.75
        assert 0.5 < r["objects/coverage"] < 1.0
        assert np.isfinite(r["objects/coverage_sd"])
