"""Block masker: exact counts on any grid, determinism, spatial clumping, tubes, errors."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from maskkit.config_utils import ConfigError
from maskkit.maskers.base import MaskContext, num_visible
from maskkit.maskers.block import BlockMasker, exact_mask, neighbour_count
from maskkit.registry import build_masker, get_masker
from maskkit.tokens import TokenLayout


def make_ctx(grid: tuple[int, ...], axes: tuple[str, ...], batch: int = 4, ratio: float = 0.75,
             seed: int = 0) -> MaskContext:
    layout = TokenLayout.from_grid(grid, axes)
    return MaskContext(batch_size=batch, num_tokens=layout.num_tokens, mask_ratio=ratio, layout=layout,
                       positions=layout.grid_coordinates().float(),
                       generator=torch.Generator().manual_seed(seed), device=torch.device("cpu"))


def boundary_pairs(mask: torch.Tensor, h: int, w: int) -> float:
    """Mean number of 4-neighbour pairs with one masked and one visible token per sample: a clumped
    mask has a short boundary, a scattered one a long boundary."""
    m = mask.view(-1, h, w)
    pairs = (m[:, 1:, :] ^ m[:, :-1, :]).sum((1, 2)) + (m[:, :, 1:] ^ m[:, :, :-1]).sum((1, 2))
    return float(pairs.float().mean())


def test_registered_with_metadata() -> None:
    cls = get_masker("block")
    assert cls is BlockMasker
    assert cls.needs_grid and cls.description and "BEiT" in cls.reference


@settings(max_examples=60, deadline=None)
@given(h=st.integers(1, 12), w=st.integers(1, 12), ratio=st.floats(0.05, 0.95),
       batch=st.integers(1, 5), seed=st.integers(0, 10_000), mode=st.sampled_from(["beit", "simmim"]),
       min_block=st.sampled_from([None, 1, 4, 9]), placement=st.sampled_from(["clipped", "inside"]))
def test_exact_count_on_random_2d_grids(h: int, w: int, ratio: float, batch: int, seed: int, mode: str,
                                        min_block: int | None, placement: str) -> None:
    n = h * w
    if n < 2:
        return
    masker = build_masker("block", {"mode": mode, "min_block_tokens": min_block, "placement": placement})
    ctx = make_ctx((h, w), ("h", "w"), batch=batch, ratio=ratio, seed=seed)
    plan = masker(ctx)
    plan.validate(n)
    assert plan.n_mask == n - num_visible(n, ratio)
    assert plan.mask.shape == (batch, n)


@settings(max_examples=30, deadline=None)
@given(t=st.integers(1, 5), h=st.integers(1, 7), w=st.integers(1, 7), ratio=st.floats(0.1, 0.95),
       seed=st.integers(0, 1000))
def test_exact_count_on_3d_and_1d_grids(t: int, h: int, w: int, ratio: float, seed: int) -> None:
    masker = build_masker("block")
    n = t * h * w
    if n >= 2:
        plan = masker(make_ctx((t, h, w), ("t", "h", "w"), ratio=ratio, seed=seed))
        plan.validate(n)
        assert plan.n_mask == n - num_visible(n, ratio)
    length = h * w
    if length >= 2:
        plan = masker(make_ctx((length,), ("time",), ratio=ratio, seed=seed))
        plan.validate(length)
        assert plan.n_mask == length - num_visible(length, ratio)


def test_deterministic_under_a_seed() -> None:
    masker = build_masker("block")
    a = masker(make_ctx((14, 14), ("h", "w"), batch=8, seed=3)).mask
    b = masker(make_ctx((14, 14), ("h", "w"), batch=8, seed=3)).mask
    c = masker(make_ctx((14, 14), ("h", "w"), batch=8, seed=4)).mask
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    assert not torch.equal(a[0], a[1]), "samples of one batch should get different masks"


@pytest.mark.parametrize("mode", ["beit", "simmim", "inside"])
@pytest.mark.parametrize("grid,ratio", [((14, 14), 0.4), ((8, 8), 0.5), ((8, 16), 0.75)])
def test_masks_are_spatially_clumped(mode: str, grid: tuple[int, int], ratio: float) -> None:
    ctx_args = dict(batch=64, ratio=ratio, seed=0)
    options = {"placement": "inside"} if mode == "inside" else {"mode": mode}
    block = build_masker("block", options)(make_ctx(grid, ("h", "w"), **ctx_args)).mask
    random = build_masker("random")(make_ctx(grid, ("h", "w"), **ctx_args)).mask
    assert boundary_pairs(block, *grid) < 0.6 * boundary_pairs(random, *grid)


def test_clipped_placement_has_no_position_bias() -> None:
    """Rectangles placed inside the grid (BEiT) cover central tokens far more often than corner
    ones; clipped placement (the default) covers every position about equally, like random."""
    def position_sd(options: dict[str, str]) -> float:
        plan = build_masker("block", options)(make_ctx((8, 8), ("h", "w"), batch=1000, ratio=0.5))
        return float(plan.mask.float().mean(dim=0).std())

    assert position_sd({}) < 0.04
    assert position_sd({"placement": "inside"}) > 0.1


def test_tubes_repeat_the_plane_over_time() -> None:
    t, h, w = 4, 6, 6
    plan = build_masker("block")(make_ctx((t, h, w), ("t", "h", "w"), batch=16, ratio=0.9, seed=1))
    m = plan.mask.view(16, t, h, w)
    agree = (m == m[:, :1]).float().mean()
    assert agree > 0.97  # only the fix-up (< t tokens per sample) leaves the tubes


def test_time_axis_found_by_name() -> None:
    # ("h", "w", "t"): the repeated axis is the one named "t", wherever it sits
    plan = build_masker("block")(make_ctx((6, 6, 3), ("h", "w", "t"), batch=8, ratio=0.75, seed=2))
    m = plan.mask.view(8, 6, 6, 3)
    assert (m == m[..., :1]).float().mean() > 0.97


def test_rejects_a_gridless_layout() -> None:
    layout = TokenLayout.unordered(32)
    ctx = MaskContext(batch_size=2, num_tokens=32, mask_ratio=0.6, layout=layout,
                      positions=torch.zeros(32, 3), generator=torch.Generator().manual_seed(0),
                      device=torch.device("cpu"))
    with pytest.raises(ValueError, match="needs a token grid"):
        build_masker("block")(ctx)


@pytest.mark.parametrize("options,match", [
    ({"aspect_min": "2"}, "aspect_min"),
    ({"min_block_tokens": "0"}, "min_block_tokens"),
    ({"min_block_tokens": "8", "max_block_tokens": "4"}, "max_block_tokens"),
    ({"mode": "circles"}, "mode"),
    ({"placement": "anywhere"}, "placement"),
    ({"mask_patch_size": "0"}, "mask_patch_size"),
])
def test_bad_options_are_config_errors(options: dict[str, str], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        build_masker("block", options)


def test_options_from_strings() -> None:
    masker = build_masker("block", {"mode": "simmim", "mask-patch-size": "3", "min-block-tokens": "none"})
    assert masker.config.mode == "simmim" and masker.config.mask_patch_size == 3
    assert masker.config.min_block_tokens is None


def test_simmim_follows_coarse_cells() -> None:
    # 8x8 grid, 2x2 cells, 50%: exactly 8 whole cells fit the target, so no fix-up is needed
    plan = build_masker("block", {"mode": "simmim", "mask_patch_size": 2})(
        make_ctx((8, 8), ("h", "w"), batch=8, ratio=0.5, seed=5))
    cells = plan.mask.view(8, 4, 2, 4, 2)
    assert bool((cells.all(dim=(2, 4)) | ~cells.any(dim=(2, 4))).all())
    assert float(plan.logs["block_fixup_frac"]) == 0.0


def test_fixup_grows_from_the_border_and_trims_loose_ends() -> None:
    mask = torch.zeros(1, 5, 5, dtype=torch.bool)
    mask[0, 1:4, 1:4] = True  # a 3x3 square
    grown = exact_mask(mask, 10, torch.Generator().manual_seed(0))
    assert bool(grown[mask].all()) and int(grown.sum()) == 10
    assert float(neighbour_count(mask)[grown & ~mask].min()) >= 1  # the extra token touches the square
    trimmed = exact_mask(mask, 8, torch.Generator().manual_seed(0))
    removed = mask & ~trimmed
    assert int(trimmed.sum()) == 8 and bool(trimmed[~mask].logical_not().all())
    assert float(neighbour_count(mask)[removed].max()) == 2  # a corner went, not the centre


def test_large_batch_gets_exact_and_distinct_masks() -> None:
    plan = build_masker("block")(make_ctx((14, 14), ("h", "w"), batch=256, ratio=0.75))
    plan.validate(196)
    assert plan.n_mask == 147
    assert len({tuple(row.tolist()) for row in plan.mask}) > 200
