"""Point-cloud tokenizer, grouping, Chamfer loss, point-block masker and one training step."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from maskkit.config_utils import ConfigError, build_dataclass
from maskkit.maskers.base import MaskContext, MaskPlan, TrainingProgress
from maskkit.modalities.pointcloud import PointCloudConfig, PointCloudModality
from maskkit.modalities.pointcloud.grouping import farthest_point_sample, group_points, knn_indices
from maskkit.modalities.pointcloud.loss import ChamferLoss
from maskkit.modalities.pointcloud.maskers import PointBlockMasker
from maskkit.modalities.pointcloud.modality import shape_descriptor
from maskkit.modalities.pointcloud.tokenizer import PointGroupTokenizer
from maskkit.registry import build_masker, get_masker, get_modality
from maskkit.tokens import TokenLayout


def fps_reference(points: np.ndarray, count: int, start: int) -> list[int]:
    """Textbook FPS, one cloud, pure numpy."""
    chosen = [start]
    nearest = np.full(len(points), np.inf)
    for _ in range(count - 1):
        nearest = np.minimum(nearest, ((points - points[chosen[-1]]) ** 2).sum(1))
        chosen.append(int(np.argmax(nearest)))
    return chosen


def clouds(b: int = 4, p: int = 200, seed: int = 0) -> torch.Tensor:
    return torch.from_numpy(np.random.default_rng(seed).normal(size=(b, p, 3)).astype(np.float32))


def test_fps_matches_bruteforce_reference() -> None:
    x = clouds(4, 300)
    idx = farthest_point_sample(x, 20, start=0)
    for i in range(4):
        assert idx[i].tolist() == fps_reference(x[i].double().numpy(), 20, 0)
    starts = torch.tensor([5, 17, 0, 299])
    idx = farthest_point_sample(x, 12, start=starts)
    for i in range(4):
        assert idx[i].tolist() == fps_reference(x[i].double().numpy(), 12, int(starts[i]))
    assert all(len(set(row)) == 12 for row in idx.tolist())


def test_knn_matches_bruteforce() -> None:
    x = clouds(3, 150, seed=1)
    centres = x[:, :10]
    idx = knn_indices(centres, x, 7)
    for b in range(3):
        d = ((x[b].numpy()[None] - centres[b].numpy()[:, None]) ** 2).sum(-1)
        ref = np.argsort(d, axis=1, kind="stable")[:, :7]
        np.testing.assert_array_equal(np.sort(idx[b].numpy(), 1), np.sort(ref, 1))
        got_d = np.take_along_axis(d, idx[b].numpy(), 1)
        assert (np.diff(got_d, axis=1) >= -1e-6).all()  # nearest first
        assert (idx[b, :, 0] == torch.arange(10)).all()  # each centre is its own nearest point


def test_chamfer_matches_bruteforce() -> None:
    rng = np.random.default_rng(2)
    pred, target = rng.normal(size=(2, 5, 16 * 3)), rng.normal(size=(2, 5, 16 * 3))
    plan = MaskPlan.from_mask(torch.tensor([[1, 0, 1, 0, 0], [0, 1, 0, 0, 1]], dtype=torch.bool))
    pred_t, target_t = torch.tensor(pred, dtype=torch.float32), torch.tensor(target, dtype=torch.float32)
    out = ChamferLoss()(pred_t, target_t, plan)
    p, t = pred.reshape(2, 5, 16, 3), target.reshape(2, 5, 16, 3)
    d = ((p[:, :, :, None] - t[:, :, None]) ** 2).sum(-1)
    ref = d.min(-1).mean(-1) + d.min(-2).mean(-1)
    np.testing.assert_allclose(out.per_token.numpy(), ref, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(out.loss.item(), ref[plan.mask.numpy()].mean(), rtol=1e-4)
    same = ChamferLoss()(target_t, target_t.clone(), plan)
    assert same.loss.item() < 1e-5


def test_tokenize_untokenize_round_trip() -> None:
    x = clouds(3, 256, seed=3)
    tok = PointGroupTokenizer(num_points=256, num_groups=16, group_size=8, embed_dim=32)
    tb = tok.tokenize(x)
    assert tb.embeddings.shape == (3, 16, 32)
    assert tb.targets.shape == (3, 16, 24) and tok.target_dim == 24
    assert tb.positions.shape == (3, 16, 3)  # per-sample centres
    assert tb.layout == TokenLayout.unordered(16) and not tb.layout.has_grid
    assert torch.equal(tb.context["centres"], tb.positions)
    centres, local, neighbours = group_points(x, 16, 8)
    grouped = torch.gather(x, 1, neighbours.reshape(3, -1, 1).expand(-1, -1, 3))
    torch.testing.assert_close(tok.untokenize(tb.targets, tb), grouped, rtol=0, atol=1e-6)
    # the first point of every group is its centre: local coordinates start at zero
    assert local[:, :, 0].abs().max() == 0
    pe = tok.build_position_embedding(48)
    assert pe(tb.positions).shape == (3, 16, 48)
    with pytest.raises(ValueError, match="expected point clouds"):
        tok.tokenize(torch.zeros(2, 4, 3))


def test_tokenizer_is_deterministic_and_permutation_robust() -> None:
    x = clouds(2, 128, seed=4)
    tok = PointGroupTokenizer(128, 8, 8, 16).eval()
    a, b = tok.tokenize(x), tok.tokenize(x.clone())
    assert torch.equal(a.embeddings, b.embeddings) and torch.equal(a.positions, b.positions)
    # embeddings of one group do not depend on the other clouds in the batch
    single = tok.tokenize(x[1:])
    torch.testing.assert_close(single.embeddings[0], a.embeddings[1])


def test_mini_pointnet_equals_the_concat_form() -> None:
    from maskkit.modalities.pointcloud.tokenizer import MiniPointNet

    net = MiniPointNet(24)
    groups = torch.randn(3, 5, 16, 3)
    f = net.first(groups)
    pooled = f.max(dim=-2, keepdim=True).values
    ref = net.second(net.fuse(torch.cat([pooled.expand_as(f), f], dim=-1))).max(dim=-2).values
    torch.testing.assert_close(net(groups), ref, rtol=1e-5, atol=1e-5)
    # a group's embedding ignores the order of its points
    torch.testing.assert_close(net(groups[:, :, torch.randperm(16)]), net(groups), rtol=1e-5, atol=1e-5)


def make_ctx(positions: torch.Tensor, ratio: float, seed: int) -> MaskContext:
    b, n, _ = positions.shape
    return MaskContext(batch_size=b, num_tokens=n, mask_ratio=ratio, layout=TokenLayout.unordered(n),
                       positions=positions, generator=torch.Generator().manual_seed(seed),
                       device=torch.device("cpu"), progress=TrainingProgress())


def test_point_block_exact_count_and_locality() -> None:
    pos = clouds(6, 64, seed=5)
    masker = PointBlockMasker()
    plan = masker(make_ctx(pos, 0.6, seed=0))
    n_mask = 64 - int(64 * 0.4)
    plan.validate(64)
    assert plan.n_mask == n_mask and (plan.mask.sum(1) == n_mask).all()
    for b in range(6):
        d = torch.cdist(pos[b], pos[b])  # (N, N)
        hidden = plan.mask[b]
        # some hidden token is the seed: every hidden group is at least as near to it as every visible one
        ok = [(d[s, hidden].max() <= d[s, ~hidden].min() + 1e-6).item() for s in torch.nonzero(hidden)[:, 0]]
        assert any(ok)
    again = masker(make_ctx(pos, 0.6, seed=0))
    other = masker(make_ctx(pos, 0.6, seed=1))
    assert torch.equal(plan.mask, again.mask) and not torch.equal(plan.mask, other.mask)


def test_point_block_registry_and_seeds_option() -> None:
    assert get_masker("point-block") is PointBlockMasker
    masker = build_masker("point-block", {"num-seeds": "3"})
    assert masker.config.num_seeds == 3
    plan = masker(make_ctx(clouds(4, 40, seed=6), 0.5, seed=2))
    plan.validate(40)
    assert (plan.mask.sum(1) == 20).all()
    with pytest.raises(ConfigError, match="`masker.num_seeds`"):
        build_masker("point-block", {"num-seeds": "0"})


def test_options_validation() -> None:
    with pytest.raises(ConfigError, match="`num_groups`"):
        build_dataclass(PointCloudConfig, {"num-points": "32", "num-groups": "64"})
    with pytest.raises(ConfigError, match="`group_size`"):
        build_dataclass(PointCloudConfig, {"num-points": "32", "num-groups": "8", "group-size": "64"})
    opts = build_dataclass(PointCloudConfig, {"num-points": "256", "aug-scale": "0.8,1.2"})
    assert opts.num_points == 256 and opts.aug_scale == (0.8, 1.2)


def test_shape_descriptor_ignores_order_and_rotation() -> None:
    x = clouds(3, 256, seed=7)
    perm = x[:, torch.randperm(256)]
    f = shape_descriptor(x, pairs_from=256)
    torch.testing.assert_close(shape_descriptor(perm, pairs_from=256), f, atol=1e-6, rtol=0)
    q, _ = torch.linalg.qr(torch.randn(3, 3, generator=torch.Generator().manual_seed(0)))
    rot = shape_descriptor(x @ q.T * 2.5, pairs_from=256)
    assert (rot - f).abs().max() < 0.02  # histogram bin edges may move a point or two
    assert f.shape == (3, 35)


def test_modality_registry_and_training_step() -> None:
    from maskkit.maskers.random import RandomMasker
    from maskkit.model.mae import MaskedAutoencoder, model_preset
    from maskkit.train.step import TrainingModule

    assert get_modality("pointcloud") is PointCloudModality
    modality = PointCloudModality(PointCloudConfig(num_points=128, num_groups=16, group_size=16))
    ds = modality.build_dataset(None, train=True, seed=0)
    x = torch.stack([ds[i][0] for i in range(4)])
    cfg = model_preset("nano")
    model = MaskedAutoencoder(modality.build_tokenizer(cfg.embed_dim), cfg)
    step = TrainingModule(model, RandomMasker(), modality.build_loss(), modality.default_mask_ratio)
    out = step(x, torch.Generator().manual_seed(0), TrainingProgress())
    assert torch.isfinite(out.loss) and out.plan.n_mask == 16 - int(16 * 0.4)
    out.loss.backward()
    grads = [p.grad for p in model.tokenizer.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert out.output.pred.shape == (4, 16, 48)


def test_render_writes_png(tmp_path) -> None:
    from maskkit.modality import VisualBatch

    modality = PointCloudModality(PointCloudConfig(num_points=128, num_groups=8, group_size=16))
    x = clouds(2, 128, seed=8)
    tok = modality.build_tokenizer(16)
    tb = tok.tokenize(x)
    mask = torch.tensor([[1, 1, 1, 0, 0, 0, 0, 1], [0, 0, 1, 1, 1, 1, 0, 0]], dtype=torch.bool)
    plan = MaskPlan.from_mask(mask)
    pred = tb.targets + 0.01
    pasted = torch.where(plan.mask[..., None], pred, tb.targets)
    batch = VisualBatch(inputs=x, tokens=tb, plan=plan, pred_targets=pred,
                        masked_targets=torch.where(plan.mask[..., None], 0.0, tb.targets),
                        pasted_targets=pasted, tokenizer=tok)
    path = modality.render(batch, tmp_path / "pc.png", title="test")
    assert path.exists() and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.skipif(__import__("importlib").util.find_spec("maskkit.cli.app") is None,
                    reason="the maskkit CLI (cli/app.py) is not available")
@pytest.mark.parametrize("masker", ["random", "point-block"])
def test_cli_trains_one_epoch(tmp_path, masker: str) -> None:
    from typer.testing import CliRunner

    from maskkit.cli.app import app

    out = tmp_path / "run"
    result = CliRunner().invoke(app, [
        "train", "--modality", "pointcloud", "--masker", masker, "--model", "nano", "--epochs", "1",
        "--batch-size", "8", "--max-steps-per-epoch", "2", "--num-points", "256", "--num-groups", "16",
        "--group-size", "16", "--device", "cpu", "--out", str(out), "--no-progress"])
    assert result.exit_code == 0, result.output
    assert (out / "checkpoints" / "last.pt").exists()
    assert list(out.glob("*.png"))


def test_cli_rejects_bad_group_options(tmp_path) -> None:
    pytest.importorskip("maskkit.cli.app")
    from typer.testing import CliRunner

    from maskkit.cli.app import app

    result = CliRunner().invoke(app, [
        "train", "--modality", "pointcloud", "--model", "nano", "--num-points", "32", "--num-groups", "64",
        "--out", str(tmp_path / "run"), "--no-progress"])
    assert result.exit_code != 0
    assert "--num-groups (64) must be <= --num-points (32)" in result.output
