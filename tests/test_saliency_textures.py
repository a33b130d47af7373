"""Model-free saliency masker, the colour-matched builtin:textures set, and the clustering start rule."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from scipy import ndimage

from maskkit.lab.coverage import coverage_probe, object_coverage, random_coverage, untrained_baseline
from maskkit.maskers.base import MaskContext
from maskkit.maskers.saliency import contrast_saliency, spectral_residual_saliency
from maskkit.maskers.self_guided import Readiness
from maskkit.registry import build_masker
from maskkit.tokens import TokenBatch, TokenLayout


def _ctx(targets: torch.Tensor, grid: tuple[int, ...] | None, ratio: float = 0.75, seed: int = 0) -> MaskContext:
    b, n = targets.shape[:2]
    layout = TokenLayout.from_grid(grid, ("h", "w")[: len(grid)]) if grid else TokenLayout.unordered(n)
    positions = torch.arange(n, dtype=torch.float32).view(n, 1)
    tokens = TokenBatch(embeddings=torch.zeros(b, n, 4), targets=targets, positions=positions, layout=layout)
    return MaskContext(batch_size=b, num_tokens=n, mask_ratio=ratio, layout=layout, positions=positions,
                       generator=torch.Generator().manual_seed(seed), device=torch.device("cpu"), tokens=tokens)


def test_saliency_hides_the_odd_tokens_with_exact_counts() -> None:
    gen = torch.Generator().manual_seed(0)
    targets = 0.01 * torch.randn(5, 16, 12, generator=gen)
    odd = torch.stack([torch.randperm(16, generator=gen)[:4] for _ in range(5)])
    targets.scatter_(1, odd.unsqueeze(-1).expand(-1, -1, 12), 3.0)  # four tokens per sample stand out
    plan = build_masker("saliency")(_ctx(targets, (4, 4)))
    assert plan.mask.sum(1).tolist() == [12] * 5  # 16 - round(16 * 0.25) kept
    assert bool(plan.mask.gather(1, odd).all())  # the conspicuous tokens are all hidden
    again = build_masker("saliency")(_ctx(targets, (4, 4)))
    assert torch.equal(plan.mask, again.mask)


def test_contrast_saliency_matches_a_numpy_reference() -> None:
    x = torch.randn(3, 10, 6, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    ref = []
    for sample in x.numpy():
        z = (sample - sample.mean(0)) / sample.std(0)
        ref.append((z ** 2).mean(1))
    assert np.allclose(contrast_saliency(x).numpy(), np.stack(ref), atol=1e-5)


def test_spectral_residual_matches_hou_and_zhang() -> None:
    """The CVPR 2007 recipe written with numpy and scipy: log amplitude minus its 3x3 mean, back
    with the original phase, squared magnitude."""
    x = torch.rand(2, 36, 5, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    got = spectral_residual_saliency(x, (6, 6)).numpy()
    for i, sample in enumerate(x.numpy()):
        picture = sample.mean(1).reshape(6, 6)
        spectrum = np.fft.fft2(picture - picture.min() + 1.0)
        log_amp = np.log(np.maximum(np.abs(spectrum), 1e-8))
        ones = ndimage.uniform_filter(np.ones_like(log_amp), 3, mode="constant")
        mean = ndimage.uniform_filter(log_amp, 3, mode="constant") / ones  # border: mean of what exists
        sal = np.abs(np.fft.ifft2(np.exp(log_amp - mean + 1j * np.angle(spectrum)))) ** 2
        assert np.allclose(got[i], sal.ravel(), rtol=1e-4, atol=1e-8)


def test_saliency_runs_on_unordered_tokens_and_checks_its_method() -> None:
    targets = torch.randn(2, 8, 6, 3)  # point groups: no grid
    assert build_masker("saliency")(_ctx(targets, None)).mask.sum(1).tolist() == [6, 6]
    with pytest.raises(ValueError, match="spectral_residual needs a 2-D token grid"):
        build_masker("saliency", {"method": "spectral_residual"})(_ctx(targets, None))
    from maskkit.config_utils import ConfigError

    with pytest.raises(ConfigError, match="masker.method"):
        build_masker("saliency", {"method": "edges"})


@pytest.fixture(scope="module")
def textures():
    from maskkit.train.build import build_dataset, build_modality

    modality = build_modality("image", {"image_size": 32, "patch_size": 4})
    dataset = build_dataset(modality, "builtin:textures", train=False, seed=0)
    modality.adapt_to_dataset(dataset)
    return modality, dataset


def test_textures_match_colour_statistics_inside_and_out(textures) -> None:
    _, ds = textures
    assert len(ds) == 1200 and ds.class_names == ["disc", "square", "triangle", "cross"] and ds.has_object_masks
    shares = []
    for i in range(0, 1200, 150):
        img, mask = ds._draw(i)
        assert set(mask.unique().tolist()) <= {0.0, 1.0} and int(ds.labels[i]) == i % 4
        colours = img.flatten(1).T.unique(dim=0)
        assert colours.shape[0] == 2  # every pixel is one of the picture's two colours
        bright = (img.sum(0) >= colours.sum(1).max() - 1e-4).float()
        inside, outside = bright[mask > 0.5].mean(), bright[mask < 0.5].mean()
        shares.append(abs(float(inside - outside)))
    # object and background both show each colour about half the time (histograms match)
    assert float(np.mean(shares)) < 0.1 and max(shares) < 0.25


def test_saliency_finds_no_texture_object(textures) -> None:
    modality, ds = textures
    probe = coverage_probe(ds, modality, modality.build_tokenizer(16), num_samples=64)
    tokens = modality.build_tokenizer(16)(probe.inputs)
    plan = build_masker("saliency")(_ctx(tokens.targets, tokens.layout.grid))
    cov = float(object_coverage(plan.mask, probe.fractions).nanmean())
    assert abs(cov - random_coverage(64, 0.75)) < 0.04  # 64 samples; 0.736 on 128 (docs)


def test_readiness_fires_only_on_a_lasting_gain() -> None:
    rule = Readiness()
    gen = np.random.default_rng(0)
    assert not rule.update(0.9, margin=0.1, patience=3)  # the step-0 baseline
    for value in 0.9 * (1 + 0.04 * gen.standard_normal(200)):  # batch noise of an unchanged model
        assert not rule.update(float(value), margin=0.1, patience=3)
    # 0.95 is only 5.6 % above the baseline: it breaks the streak
    fired = [rule.update(g, margin=0.1, patience=3) for g in (1.05, 1.0, 0.95, 1.05, 1.0, 1.01)]
    assert fired == [False, False, False, False, False, True]
    assert rule.last == pytest.approx(1.01 / 0.9 - 1.0)


def test_untrained_baseline_is_the_run_initialisation() -> None:
    from maskkit.train.build import build_run
    from maskkit.train.config import TrainConfig

    cfg = TrainConfig(modality="toy", model="nano", masker="self-guided", seed=3, epochs=1, progress=False)
    parts = build_run(cfg, with_data=False)
    with torch.no_grad():
        for p in parts.model.parameters():
            p.add_(1.0)  # "training"
    model, masker = untrained_baseline(parts.masker, parts.modality, parts.model_config, seed=3)
    fresh = build_run(cfg, with_data=False).model
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), fresh.state_dict().values(),
                                                 strict=True))
    assert masker is not parts.masker and masker._position_mean is None
    plain = build_run(TrainConfig(modality="toy", model="nano", epochs=1, progress=False), with_data=False)
    assert untrained_baseline(plain.masker, plain.modality, plain.model_config, seed=0) is None  # random


def test_clustering_start_never_fires_without_learning(toy_config) -> None:
    from maskkit.train.trainer import run_training

    cfg = toy_config(masker="self-guided", masker_options={"start": "clustering", "ready_every": 1,
                                                           "ready_deadline": 0.75}, lr=1e-12, epochs=2,
                     max_steps_per_epoch=4)
    run_training(cfg)
    rows = [json.loads(line) for line in open(f"{cfg.out}/metrics.jsonl")]
    events = [r for r in rows if r["type"] == "event"]
    steps = max(r["step"] for r in rows if r["type"] == "epoch")
    assert events == [{"type": "event", "event": "informed_start", "reason": "deadline",
                       "step": round(0.75 * steps)}]
    readiness = [r["masker/sg/readiness"] for r in rows if "masker/sg/readiness" in r]
    assert readiness and all(abs(v) < 0.1 for v in readiness)  # the features never moved


def _rows(**per_masker: list[tuple[float, float | None]]) -> list[dict]:
    return [{"method": m, "seed": s, "object_coverage": cov,
             **({} if base is None else {"object_coverage_untrained": base})}
            for m, seeds in per_masker.items() for s, (cov, base) in enumerate(seeds)]


def test_reports_call_coverage_learned_only_beyond_both_baselines() -> None:
    from maskkit.lab.study.coverage import learned_verdicts

    above = [(0.90, 0.75), (0.92, 0.76), (0.91, 0.74)]
    saliency_low = [(0.75, None), (0.76, None), (0.74, None)]
    verdict = learned_verdicts(_rows(**{"self-guided": above, "saliency": saliency_low}),
                               ["self-guided", "saliency"], 0.95)
    assert len(verdict) == 2 and "learned: it beats its untrained model and `saliency`" in verdict[0]
    # saliency hides as much: not learned, whatever the untrained model does
    saliency_high = [(0.97, None), (0.97, None), (0.97, None)]
    verdict = learned_verdicts(_rows(**{"self-guided": above, "saliency": saliency_high}),
                               ["self-guided", "saliency"], 0.95)
    assert "not shown to be learned: a baseline without learning explains it" in verdict[0]
    # the untrained model hides as much (objects findable by colour): not learned
    untrained_high = [(0.90, 0.91), (0.92, 0.90), (0.91, 0.92)]
    verdict = learned_verdicts(_rows(**{"self-guided": untrained_high, "saliency": saliency_low}),
                               ["self-guided", "saliency"], 0.95)
    assert "explains it" in verdict[0] and "over its untrained model" in verdict[0]
    assert "`saliency` was not run" in learned_verdicts(_rows(**{"self-guided": above}), ["self-guided"], 0.95)[0]
