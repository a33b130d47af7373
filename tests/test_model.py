"""The MAE backbone: shapes, gradient flow, feature passes, attention, presets, SDPA equivalence."""

import pytest
import torch

from maskkit.losses import ReconstructionMSE
from maskkit.maskers.base import TrainingProgress
from maskkit.modalities.image.tokenizer import ImagePatchTokenizer, patchify, unpatchify
from maskkit.modalities.pointcloud.loss import ChamferLoss, chamfer_l2
from maskkit.model.mae import MaskedAutoencoder, ModelConfig, model_preset
from maskkit.model.vit import Attention
from maskkit.registry import build_masker
from maskkit.train.step import TrainingModule


def tiny_model(h=8, w=12, c=3, patch=2):
    cfg = model_preset("nano")
    return MaskedAutoencoder(ImagePatchTokenizer((h, w), patch, c, cfg.embed_dim), cfg)


def test_forward_shapes_non_square_multichannel():
    model = tiny_model(8, 12, 4)
    x = torch.randn(3, 4, 8, 12)
    tm = TrainingModule(model, build_masker("random"), ReconstructionMSE(), 0.75)
    out = tm(x, torch.Generator().manual_seed(0), TrainingProgress())
    n = (8 // 2) * (12 // 2)
    assert out.output.pred.shape == (3, n, 2 * 2 * 4)
    assert out.output.latent.shape == (3, 1 + int(n * 0.25), 64)
    assert out.plan.mask.shape == (3, n)


def test_gradient_reaches_every_parameter():
    model = tiny_model()
    tm = TrainingModule(model, build_masker("random"), ReconstructionMSE(), 0.5)
    out = tm(torch.randn(2, 3, 8, 12), torch.Generator().manual_seed(0), TrainingProgress())
    out.loss.backward()
    missing = [n for n, p in tm.named_parameters() if p.requires_grad and (p.grad is None or p.grad.abs().sum() == 0)]
    assert missing == []


def test_token_features_last_layer_equals_encode():
    model = tiny_model().eval()
    x = torch.randn(2, 3, 8, 12)
    tokens = model.tokenize(x)
    full = model.encode(x)[:, 1:]
    assert torch.allclose(model.token_features(tokens, -1), full, atol=1e-5)
    assert model.token_features(tokens, 0).shape == full.shape
    with pytest.raises(ValueError, match="does not exist"):
        model.token_features(tokens, 9)


def test_attention_maps_sum_to_one_and_match_sdpa():
    attn = Attention(16, 4)
    x = torch.randn(2, 5, 16)
    fused, _ = attn(x)
    explicit, weights = attn(x, return_attention=True)
    assert torch.allclose(fused, explicit, atol=1e-5)
    assert torch.allclose(weights.sum(-1), torch.ones(2, 4, 5), atol=1e-5)
    model = tiny_model().eval()
    maps = model.encoder_attention(model.tokenize(torch.randn(1, 3, 8, 12)), [0, -1])
    assert set(maps) == {0, 3} and maps[0].shape == (1, 4, 25, 25)


def test_presets_and_validation():
    base = model_preset("base")
    assert (base.embed_dim, base.depth, base.decoder_dim, base.decoder_depth) == (768, 12, 512, 8)
    with pytest.raises(ValueError, match="divisible"):
        ModelConfig(embed_dim=10, num_heads=3)
    with pytest.raises(ValueError, match="unknown `model` preset"):
        model_preset("gigantic")


def test_patchify_roundtrip_and_image_size_check():
    x = torch.randn(2, 3, 8, 12)
    p = patchify(x, 4)
    assert p.shape == (2, 6, 48)
    assert torch.equal(unpatchify(p, 4, (2, 3), 3), x)
    with pytest.raises(ValueError, match="not divisible"):
        ImagePatchTokenizer((10, 12), 4, 3, 64)


def test_norm_pix_loss_only_counts_masked_tokens_and_inverts():
    loss = ReconstructionMSE(norm_pix=True)
    targets = torch.randn(2, 4, 6) * 3 + 1
    plan_mask = torch.tensor([[True, False, True, False], [False, True, True, False]])
    from maskkit.maskers.base import MaskPlan

    plan = MaskPlan.from_mask(plan_mask)
    perfect = loss.normalise(targets)
    assert loss(perfect, targets, plan).loss.item() < 1e-10
    wrong_visible = perfect.clone()
    wrong_visible[~plan_mask] += 5
    assert loss(wrong_visible, targets, plan).loss.item() < 1e-10
    assert torch.allclose(loss.to_sample_space(perfect, targets), targets, atol=1e-4)


def test_chamfer_matches_brute_force():
    a, b = torch.randn(3, 7, 3), torch.randn(3, 5, 3)
    f, g = chamfer_l2(a, b)
    for i in range(3):
        d = ((a[i, :, None] - b[i, None]) ** 2).sum(-1)
        assert torch.allclose(f[i], d.min(1).values.mean(), atol=1e-5)
        assert torch.allclose(g[i], d.min(0).values.mean(), atol=1e-5)
    from maskkit.maskers.base import MaskPlan

    plan = MaskPlan.from_mask(torch.tensor([[True, False]]))
    out = ChamferLoss()(torch.zeros(1, 2, 6), torch.zeros(1, 2, 6), plan)
    assert out.loss.item() == 0.0
