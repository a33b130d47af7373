"""Mask statistics: realised ratio, clumping, IoU, per-position frequency and the collapse verdict."""

from __future__ import annotations

import math

import pytest
import torch

from maskkit.maskers.base import MaskContext, MaskPlan, expected_random_iou
from maskkit.maskers.random import RandomMasker
from maskkit.maskers.stats import (
    PositionFrequency,
    cluster_overlap,
    collapse_verdict,
    mask_statistics,
    pairwise_iou,
)
from maskkit.tokens import TokenLayout

LAYOUT = TokenLayout.from_grid((8, 8), ("h", "w"))


def random_masks(batch: int, seed: int = 0, layout: TokenLayout = LAYOUT, ratio: float = 0.75) -> MaskPlan:
    ctx = MaskContext(batch_size=batch, num_tokens=layout.num_tokens, mask_ratio=ratio, layout=layout,
                      positions=torch.zeros(layout.num_tokens, 2),
                      generator=torch.Generator().manual_seed(seed), device=torch.device("cpu"))
    return RandomMasker()(ctx)


def test_random_masks_match_the_random_expectations():
    plan = random_masks(256)
    stats = mask_statistics(plan, LAYOUT)
    assert all(isinstance(v, torch.Tensor) and v.dim() == 0 for v in stats.values())
    assert float(stats["mask_ratio"]) == pytest.approx(48 / 64)
    assert float(stats["iou_random"]) == pytest.approx(expected_random_iou(64, 48), rel=1e-5)
    assert abs(float(stats["iou_excess"])) < 0.01
    assert float(stats["neighbour_both_masked_random"]) == pytest.approx(48 * 47 / (64 * 63), rel=1e-5)
    for key in ("clumping", "clumping/h", "clumping/w"):
        assert abs(float(stats[key]) - 1.0) < 0.03


def test_blobs_clump_and_checkerboards_disperse():
    coords = LAYOUT.grid_coordinates()
    blob = (coords[:, 0] < 4).expand(4, -1)  # top half hidden
    checker = ((coords[:, 0] + coords[:, 1]) % 2 == 0).expand(4, -1)
    assert float(mask_statistics(blob, LAYOUT)["clumping"]) > 1.5
    stats = mask_statistics(checker, LAYOUT)
    assert float(stats["clumping"]) == 0.0
    assert float(stats["mask_ratio"]) == 0.5


def test_knn_neighbours_for_grid_less_tokens():
    """Grid-less statistic on grid positions agrees with the grid one."""
    coords = LAYOUT.grid_coordinates().float()
    blob = (coords[:, 0] < 4).expand(4, -1)
    unordered = TokenLayout.unordered(64, ("x", "y"))
    grid_less = mask_statistics(blob, unordered, positions=coords, k_neighbours=4)
    assert float(grid_less["clumping"]) > 1.5
    random_stats = mask_statistics(random_masks(256), unordered, positions=coords.expand(256, -1, -1))
    assert abs(float(random_stats["clumping"]) - 1.0) < 0.03
    with pytest.raises(ValueError, match="positions"):
        mask_statistics(blob, unordered)


def test_fixed_mask_gives_iou_one_and_collapse():
    fixed = random_masks(1).mask.expand(64, -1)
    assert float(pairwise_iou(fixed)) == pytest.approx(1.0)
    freq = PositionFrequency(64)
    for _ in range(5):
        freq.update(fixed)
    assert float(freq.spread()) == pytest.approx(math.sqrt(0.75 * 0.25), rel=1e-5)
    verdict = freq.verdict()
    assert verdict.collapsed and verdict.level == "collapsed"
    assert verdict.iou == pytest.approx(1.0)
    assert "position" in verdict.message
    assert freq.as_grid(LAYOUT).shape == (8, 8)


@pytest.mark.parametrize("batch,steps", [(4, 2), (64, 20)])
def test_random_masks_give_no_collapse_at_any_sample_size(batch, steps):
    freq = PositionFrequency(64)
    for step in range(steps):
        freq.update(random_masks(batch, seed=step))
    n = batch * steps
    assert freq.samples == n
    floor = float(freq.noise_floor())
    assert floor == pytest.approx(math.sqrt(0.75 * 0.25 / n), rel=1e-5)
    # the raw spread is about the binomial floor, not 0: finite samples
    assert 0.6 * floor < float(freq.spread()) < 1.4 * floor
    verdict = freq.verdict()
    assert verdict.level == "ok" and not verdict.collapsed
    assert verdict.position_share < 0.02


def test_verdict_thresholds_on_the_small_scale_report():
    """Numbers of docs/background/self-guided-small-scale.md (64 positions, r = 0.75, many samples)."""
    report = collapse_verdict(0.25, 0.75, 10_000, 64, iou=0.72, iou_samples=64)
    assert report.collapsed
    assert collapse_verdict(0.24, 0.75, 10_000, 64).collapsed  # position alone suffices
    assert collapse_verdict(0.0, 0.75, 10_000, 64, iou=0.74).collapsed  # IoU alone suffices
    assert collapse_verdict(0.105, 0.75, 10_000, 64, iou=0.64).level == "positional"  # centred features
    assert collapse_verdict(0.06, 0.75, 10_000, 64, iou=0.615).level == "ok"  # dataset mean removed
    # sd 0.16 from only 8 masks is what a random masker shows (floor 0.15): no alarm
    assert collapse_verdict(0.16, 0.75, 8, 64).level == "ok"


def test_accumulator_reset_and_state_round_trip():
    freq = PositionFrequency(64)
    freq.update(random_masks(8))
    copy = PositionFrequency(64)
    copy.load_state_dict(freq.state_dict())
    assert torch.equal(copy.frequency(), freq.frequency())
    assert copy.mean_iou() is not None
    freq.reset()
    assert freq.samples == 0
    with pytest.raises(ValueError, match="no masks"):
        freq.frequency()
    with pytest.raises(ValueError, match="tokens"):
        freq.update(torch.zeros(2, 10, dtype=torch.bool))


def test_cluster_overlap():
    mask = torch.zeros(2, 8, dtype=torch.bool)
    mask[:, :4] = True
    labels = torch.tensor([[1, 1, 1, 0, 0, 0, 0, 0], [0, 0, 0, 0, 1, 1, 1, 1]])
    overlap, share = cluster_overlap(mask, labels, target=1)
    assert overlap.tolist() == [0.75, 0.0]
    assert share.tolist() == [3 / 8, 4 / 8]
    overlap, _ = cluster_overlap(mask, labels, target=torch.tensor([0, 0]))
    assert overlap.tolist() == [0.25, 1.0]
    layout = TokenLayout.from_grid((8,), ("time",))
    stats = mask_statistics(mask, layout, labels=labels)
    assert float(stats["cluster_overlap"]) == pytest.approx(0.375)
    assert float(stats["cluster_overlap_random"]) == pytest.approx(7 / 16)
