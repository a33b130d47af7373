"""Clustering metrics on hand-computable inputs, NMI against scikit-learn, probe and run analysis."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from sklearn.metrics import normalized_mutual_info_score

from maskkit.lab import analysis
from maskkit.maskers.base import TrainingProgress
from maskkit.maskers.random import random_plan
from maskkit.maskers.signals import exploitation_rates
from maskkit.train.step import build_context


def test_feature_and_similarity_variance_by_hand() -> None:
    feats = torch.tensor([[[1.0, 0.0], [0.0, 2.0]]])  # unit versions orthogonal, mean (0.5, 0.5)
    assert analysis.feature_variance(feats).item() == pytest.approx(0.5)
    assert analysis.feature_variance(feats, normalize=False).item() == pytest.approx((0.25 + 1.0) * 2 / 2)
    three = torch.tensor([[[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]])
    c = 1 / math.sqrt(2)
    offdiag = np.array([0.0, c, 0.0, c, c, c])
    assert analysis.similarity_variance(three).item() == pytest.approx(offdiag.var(), abs=1e-6)
    full = np.array([1, 0, c, 0, 1, c, c, c, 1])
    assert analysis.similarity_variance(three, include_diagonal=True).item() == pytest.approx(full.var(), abs=1e-6)
    score = analysis.similarity_score(three)
    torch.testing.assert_close(score, torch.tensor([[c, c, 1.0]]))


def test_similarity_gap_of_two_orthogonal_groups() -> None:
    g = torch.Generator().manual_seed(0)
    a, b = torch.zeros(8), torch.zeros(8)
    a[0], b[1] = 1.0, 1.0
    labels = torch.arange(12) < 5
    feats = torch.where(labels[:, None], a, b).unsqueeze(0) + 1e-3 * torch.randn(1, 12, 8, generator=g)
    # within groups cos ~ 1, across ~ 0: gap ~ 1
    assert analysis.similarity_gap(feats).item() == pytest.approx(1.0, abs=1e-2)


def block_attention(n: int = 6, heads: int = 2, prefix: int = 1) -> torch.Tensor:
    """Each token attends uniformly to its own half; prefix rows/cols carry a little mass."""
    a = torch.zeros(n, n)
    half = n // 2
    a[:half, :half] = 1.0 / half
    a[half:, half:] = 1.0 / half
    full = torch.zeros(n + prefix, n + prefix)
    full[prefix:, prefix:] = a * 0.9
    full[prefix:, :prefix] = 0.1 / prefix
    full[:prefix, :] = 1.0 / (n + prefix)
    return full.expand(1, heads, -1, -1).clone()


def test_attention_gap_nmi_and_distance_by_hand() -> None:
    attn = block_attention()
    # token graph: 1/3 inside each half (after renormalising away the CLS mass), 0 across
    assert analysis.attention_gap(attn, num_prefix=1).item() == pytest.approx(1 / 3, abs=1e-5)
    # each query spreads over 3 of 6 keys: I = log 6 - log 3 = log 2, H(K) = log 6
    assert analysis.attention_nmi(attn, num_prefix=1).item() == pytest.approx(math.log(2) / math.log(6), abs=1e-5)
    identity = torch.eye(5).expand(1, 1, 5, 5)
    assert analysis.attention_nmi(identity).item() == pytest.approx(1.0, abs=1e-6)
    uniform = torch.full((1, 1, 5, 5), 0.2)
    assert analysis.attention_nmi(uniform).item() == pytest.approx(0.0, abs=1e-6)
    # tokens on a line 0, 10, 20, ...; every query attends to the next token (the last to the first)
    n = 4
    shift = torch.zeros(n, n)
    shift[torch.arange(n), (torch.arange(n) + 1) % n] = 1.0
    centres = torch.tensor([[0.0], [10.0], [20.0], [30.0]])
    dist = analysis.mean_attention_distance(shift.expand(1, 2, n, n), centres)
    assert dist.item() == pytest.approx((10 + 10 + 10 + 30) / 4)


def test_attention_nmi_matches_sklearn() -> None:
    rng = np.random.default_rng(0)
    n, m = 7, 12  # 7 queries, 12 draws each
    counts = np.stack([rng.multinomial(m, rng.dirichlet(np.full(n, 0.5))) for _ in range(n)])
    attn = torch.tensor(counts / m, dtype=torch.float32).expand(1, 1, n, n)
    queries = np.repeat(np.arange(n), m)
    keys = np.concatenate([np.repeat(np.arange(n), counts[i]) for i in range(n)])
    ref = normalized_mutual_info_score(queries, keys, average_method="geometric")
    assert analysis.attention_nmi(attn).item() == pytest.approx(ref, abs=1e-5)


def test_token_relation_kl() -> None:
    g = torch.Generator().manual_seed(1)
    f = torch.randn(2, 5, 4, generator=g)
    torch.testing.assert_close(analysis.token_relation_kl(f, f), torch.zeros(2), atol=1e-6, rtol=0)
    other = torch.randn(2, 5, 4, generator=g)
    got = analysis.token_relation_kl(f, other, temperature=0.5)
    # direct formula on sample 0
    def rel(x: torch.Tensor) -> np.ndarray:
        x = x / x.norm(dim=-1, keepdim=True)
        m = (x @ x.T).numpy() / 0.5
        np.fill_diagonal(m, -np.inf)
        e = np.exp(m - m.max(1, keepdims=True))
        return e / e.sum(1, keepdims=True)

    p, q = rel(f[0]), rel(other[0])
    mask = ~np.eye(5, dtype=bool)
    expected = np.mean([(p[i][mask[i]] * np.log(p[i][mask[i]] / q[i][mask[i]])).sum() for i in range(5)])
    assert got[0].item() == pytest.approx(expected, rel=1e-4)
    assert bool((got >= 0).all())


def test_exploitation_rates_by_hand() -> None:
    mask = torch.tensor([[False, True, True, True]])  # 1 visible, 3 mask tokens
    n = 4
    attn = torch.zeros(1, 1, n + 1, n + 1)
    # masked queries 1, 2, 3: 0.1 on CLS, then (visible, mask, mask, mask) weights
    attn[0, 0, 2] = torch.tensor([0.1, 0.6, 0.1, 0.1, 0.1])
    attn[0, 0, 3] = torch.tensor([0.1, 0.3, 0.2, 0.2, 0.2])
    attn[0, 0, 4] = torch.tensor([0.1, 0.0, 0.3, 0.3, 0.3])
    attn[0, 0, 0] = attn[0, 0, 1] = 0.2  # rows of CLS and the visible query do not count
    vis, msk = exploitation_rates([attn, attn], mask, num_prefix=1)
    torch.testing.assert_close(vis, torch.full((2,), (0.6 + 0.3 + 0.0) / 3))
    torch.testing.assert_close(msk, torch.full((2,), (0.3 + 0.6 + 0.9) / 3))
    vis_k, msk_k = exploitation_rates([attn], mask, num_prefix=1, per_key_normalized=True)
    assert vis_k.item() == pytest.approx(0.3 / 1)
    assert msk_k.item() == pytest.approx(0.6 / 3)


def test_mask_token_variance_by_hand() -> None:
    hidden = torch.tensor([[[0.0, 0.0], [2.0, 0.0], [0.0, 2.0], [9.0, 9.0]]])
    mask = torch.tensor([[True, True, True, False]])
    # masked states (0,0), (2,0), (0,2): mean (2/3, 2/3); squared distances 8/9, 20/9, 20/9
    assert analysis.mask_token_variance(hidden, mask).item() == pytest.approx(16 / 9)


def tiny_model():
    from maskkit.modalities.image.tokenizer import ImagePatchTokenizer
    from maskkit.model.mae import MaskedAutoencoder, ModelConfig

    torch.manual_seed(0)
    cfg = ModelConfig(embed_dim=32, depth=3, num_heads=2, decoder_dim=32, decoder_depth=2, decoder_heads=2)
    return MaskedAutoencoder(ImagePatchTokenizer((16, 16), 4, 3, 32), cfg)


def test_encoder_layers_match_token_features_and_attention() -> None:
    model = tiny_model().eval()
    tokens = model.tokenize(torch.randn(2, 3, 16, 16))
    attn_ref = model.encoder_attention(tokens)
    with torch.no_grad():
        for layer, feats, attn in analysis.encoder_layers(model, tokens):
            torch.testing.assert_close(feats, model.token_features(tokens, layer))
            torch.testing.assert_close(attn, attn_ref[layer])


def test_probe_metrics_keys_and_modes() -> None:
    from maskkit.registry import build_masker

    model = tiny_model()
    masker = build_masker("self-guided", {"start": "epoch", "start_epoch": "0"})
    model.train()
    masker.train()
    data = [(torch.randn(3, 16, 16), 0) for _ in range(8)]
    out = analysis.probe_metrics(model, data, masker, 0.75, device="cpu", num_samples=8, batch_size=4)
    for key in ("feature_var", "similarity_var", "gap_similarity", "gap_attention", "attention_distance",
                "attention_nmi", "exploit_visible", "exploit_mask", "exploit_visible_raw", "exploit_mask_raw",
                "mask_token_var", "mask_iou", "mask_iou_random", "mask_position_sd", "mask_position_sd_random"):
        assert key in out and math.isfinite(out[key]), key
    assert out["exploit_visible_raw"] + out["exploit_mask_raw"] <= 1.0 + 1e-5
    assert model.training and masker.training
    assert masker._position_mean is None  # the probe never moves masker state
    again = analysis.probe_metrics(model, torch.stack([d[0] for d in data]), None, 0.75, num_samples=8,
                                   batch_size=4)
    assert again["feature_var"] == pytest.approx(out["feature_var"], rel=1e-5)


def test_analyze_run_on_saved_checkpoints(tmp_path) -> None:
    pytest.importorskip("maskkit.train.checkpoint")
    from maskkit.train.build import build_run
    from maskkit.train.checkpoint import FORMAT, VERSION, atomic_save
    from maskkit.train.config import TrainConfig

    config = TrainConfig(modality="image", masker="self-guided", masker_options={"start_epoch": 0, "start": "epoch"},
                         model="nano", modality_options={"image_size": 16, "patch_size": 4}, epochs=2)
    parts = build_run(config, with_data=True, train=False)
    resolved = parts.resolved()
    ckdir = tmp_path / "checkpoints"
    for epoch in (1, 2):
        with torch.no_grad():
            for p in parts.model.parameters():
                p.add_(0.01 * torch.randn_like(p))
        state = {"format": FORMAT, "version": VERSION, "model": parts.model.state_dict(), "config": resolved,
                 "masker": parts.masker.state_dict(), "position": {"epoch": epoch, "global_step": epoch * 5}}
        atomic_save(state, ckdir / f"epoch_{epoch:04d}.pt")
    atomic_save(state, ckdir / "last.pt")
    result = analysis.analyze_run(tmp_path, checkpoints="all", batches=1, batch_size=4)
    assert [c["epoch"] for c in result["checkpoints"]] == [1, 2]
    depth = parts.model.depth
    dec_depth = len(parts.model.decoder_blocks)
    for ck in result["checkpoints"]:
        for key in analysis.LAYER_METRICS:
            assert len(ck["encoder"][key]) == depth
            assert all(v is not None for v in ck["encoder"][key])
        for key in analysis.DECODER_METRICS:
            assert len(ck["decoder"][key]) == dec_depth, key
            assert all(v is not None for v in ck["decoder"][key])
        assert len(ck["decoder_kl_to_final"]) == dec_depth
    assert result["checkpoints"][-1]["kl_to_final"] == [0.0] * depth
    assert result["checkpoints"][-1]["decoder_kl_to_final"] == [0.0] * dec_depth
    # the cut's settings are the run's masker's, and reported
    assert result["partition"]["tau_quantile"] == 0.6 and result["partition"]["min_neighbours"] == 3
    assert all(v > 0 for v in result["checkpoints"][0]["kl_to_final"])
    saved = json.loads((tmp_path / "analysis" / "analysis.json").read_text())
    assert saved["checkpoints"] == result["checkpoints"]
    assert {"masker_cluster", "bipartition"} <= set(saved["clusters"]["maps"])
    for name in ("layers.png", "epochs.png", "clusters.png"):
        assert (tmp_path / "analysis" / name).stat().st_size > 1000


def test_fourier_high_frequency_against_numpy() -> None:
    g = torch.Generator().manual_seed(0)
    feats = torch.randn(3, 64, 5, generator=g) + 2.0
    got = analysis.fourier_high_frequency(feats, (8, 8))
    maps = feats.numpy().reshape(3, 8, 8, 5)
    amp = np.abs(np.fft.fft2(maps, axes=(1, 2))).mean(-1)  # (3, 8, 8)
    f = np.abs(np.fft.fftfreq(8)) / 0.5
    radius = np.maximum(f[:, None], f[None, :])
    expected = np.log(amp[:, radius >= 0.5].mean(1)) - np.log(amp[:, 0, 0])
    assert np.allclose(got.numpy(), expected, atol=1e-5)
    # a checkerboard is all high frequency, a ramp mostly low
    yy, xx = torch.meshgrid(torch.arange(8.0), torch.arange(8.0), indexing="ij")
    checker = (((yy + xx) % 2) * 2 - 1 + 0.1).reshape(1, 64, 1)
    ramp = (yy + xx + 1.0).reshape(1, 64, 1)
    rough = analysis.fourier_high_frequency(checker, (8, 8)).item()
    assert rough > analysis.fourier_high_frequency(ramp, (8, 8)).item() + 2
    assert torch.isnan(analysis.fourier_high_frequency(feats, None)).all()


def test_decoder_metrics_per_layer_match_a_direct_pass() -> None:
    from maskkit.modalities.image.tokenizer import ImagePatchTokenizer
    from maskkit.model.mae import MaskedAutoencoder, ModelConfig

    torch.manual_seed(0)
    cfg = ModelConfig(embed_dim=32, depth=2, num_heads=2, decoder_dim=32, decoder_depth=3, decoder_heads=2)
    model = MaskedAutoencoder(ImagePatchTokenizer((16, 16), 4, 3, 32), cfg).eval()
    tokens = model.tokenize(torch.randn(4, 3, 16, 16))
    plan = random_plan(build_context(model, tokens, 0.75, torch.Generator().manual_seed(0), TrainingProgress()))
    metrics, feats = analysis.decoder_metrics(model, tokens, plan, keep_features=True)
    with torch.no_grad():
        out = model(tokens, plan, return_attention=True)
    assert torch.allclose(feats[-1], out.decoder_hidden, atol=1e-5)  # the last layer is what the head reads
    assert metrics["mask_token_var"].shape == (3, 4)
    assert torch.allclose(metrics["mask_token_var"][-1], analysis.mask_token_variance(out.decoder_hidden, plan.mask))
    assert torch.allclose(metrics["feature_var"][1], analysis.feature_variance(feats[1]))
    vis, _ = analysis.exploitation_rates(out.decoder_attention, plan.mask, model.num_prefix, per_key_normalized=True)
    assert torch.allclose(metrics["exploit_visible"].squeeze(-1), vis)
