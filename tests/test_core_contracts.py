"""Contracts of the core types: layouts, plans, the random masker, positions, config parsing."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from maskkit.config_utils import ConfigError, build_dataclass, parse_key_values
from maskkit.maskers.base import MaskContext, MaskPlan, expected_random_iou, num_visible
from maskkit.positions import sincos_1d, sincos_grid
from maskkit.registry import RegistryError, build_masker, get_masker, get_modality
from maskkit.tokens import TokenLayout


def make_ctx(b, n, ratio, seed=0, layout=None):
    layout = layout or TokenLayout.unordered(n)
    return MaskContext(batch_size=b, num_tokens=n, mask_ratio=ratio, layout=layout,
                       positions=torch.zeros(n, 3), generator=torch.Generator().manual_seed(seed),
                       device=torch.device("cpu"))


def mae_reference_masking(noise: torch.Tensor, ratio: float):
    """MAE's published construction, written from the paper's description (argsort of noise)."""
    n, length = noise.shape
    keep = int(length * (1 - ratio))
    ids_shuffle = torch.argsort(noise, dim=1)
    ids_restore = torch.argsort(ids_shuffle, dim=1)
    mask = torch.ones(n, length)
    mask[:, :keep] = 0
    return ids_shuffle[:, :keep], torch.gather(mask, 1, ids_restore).bool(), ids_restore


def test_layout_grid_coordinates_row_major():
    layout = TokenLayout.from_grid((2, 3), ("h", "w"))
    assert layout.num_tokens == 6
    assert layout.grid_coordinates().tolist() == [[0, 0], [0, 1], [0, 2], [1, 0], [1, 1], [1, 2]]
    with pytest.raises(ValueError):
        TokenLayout.from_grid((2, 3), ("h",))
    assert not TokenLayout.unordered(5).has_grid


@settings(max_examples=60, deadline=None)
@given(b=st.integers(1, 6), n=st.integers(2, 300), ratio=st.floats(0.01, 0.99))
def test_random_masker_exact_counts(b, n, ratio):
    plan = build_masker("random")(make_ctx(b, n, ratio))
    plan.validate(n)
    assert plan.n_keep == num_visible(n, ratio) == max(1, int(n * (1 - ratio)))
    assert plan.mask.sum(1).eq(n - plan.n_keep).all()


def test_random_masker_equals_mae_construction():
    ctx = make_ctx(4, 196, 0.75, seed=123)
    plan = build_masker("random")(ctx)
    noise = torch.rand(4, 196, generator=torch.Generator().manual_seed(123))
    ids_keep, mask, ids_restore = mae_reference_masking(noise, 0.75)
    assert torch.equal(plan.ids_keep, ids_keep)
    assert torch.equal(plan.mask, mask)
    assert torch.equal(plan.ids_restore, ids_restore)


def test_random_masker_deterministic_and_seed_sensitive():
    m = build_masker("random")
    a, b, c = m(make_ctx(3, 64, 0.75, 1)), m(make_ctx(3, 64, 0.75, 1)), m(make_ctx(3, 64, 0.75, 2))
    assert torch.equal(a.mask, b.mask)
    assert not torch.equal(a.mask, c.mask)


def test_plan_from_scores_and_mask():
    scores = torch.tensor([[0.1, 0.9, 0.5, 0.3], [0.8, 0.2, 0.6, 0.4]])
    plan = MaskPlan.from_scores(scores, 2)
    plan.validate(4)
    assert plan.mask.tolist() == [[False, True, True, False], [True, False, True, False]]
    assert torch.equal(MaskPlan.from_mask(plan.mask).mask, plan.mask)
    with pytest.raises(ValueError):
        MaskPlan.from_mask(torch.tensor([[True, False], [True, True]]))


def test_mask_ratio_out_of_range():
    with pytest.raises(ValueError, match="`mask_ratio` must be in"):
        num_visible(10, 1.0)


def test_expected_random_iou_matches_simulation():
    n, k = 64, 48
    g = torch.Generator().manual_seed(0)
    masks = torch.zeros(4000, n, dtype=torch.bool)
    idx = torch.rand(4000, n, generator=g).argsort(1)[:, :k]
    masks.scatter_(1, idx, True)
    a, b = masks[:2000], masks[2000:]
    iou = ((a & b).sum(1).float() / (a | b).sum(1).float()).mean().item()
    assert abs(iou - expected_random_iou(n, k)) < 0.01


def test_sincos_embeddings():
    e = sincos_1d(torch.arange(5), 8)
    assert e.shape == (5, 8)
    assert torch.allclose(e[0], torch.tensor([0.0] * 4 + [1.0] * 4))
    grid = TokenLayout.from_grid((2, 3, 4), ("t", "h", "w")).grid_coordinates()
    assert sincos_grid(grid, 30).shape == (24, 30)  # widths not divisible by the rank still work
    assert len({tuple(r.tolist()) for r in sincos_grid(grid, 30)}) == 24  # distinct positions


def test_registry_errors_name_known_entries():
    with pytest.raises(RegistryError, match="unknown masker 'nope'.*random"):
        get_masker("nope")
    with pytest.raises(RegistryError, match="unknown modality 'nope'"):
        get_modality("nope")


def test_config_parsing_errors():
    from dataclasses import dataclass

    @dataclass
    class C:
        a: int = 1
        b: float = 0.5
        c: bool = False

    assert build_dataclass(C, {"a": "3", "b": "0.25", "c": "true"}) == C(3, 0.25, True)
    with pytest.raises(ConfigError, match="unknown option `z`.*valid options: a, b, c"):
        build_dataclass(C, {"z": 1})
    with pytest.raises(ConfigError, match="`a` expects an integer"):
        build_dataclass(C, {"a": "x"})
    with pytest.raises(ConfigError, match="key=value"):
        parse_key_values(["novalue"], "--masker-opt")


def test_scan_files_reports_every_bad_file_in_one_line():
    import warnings

    from maskkit.modality import DataError, scan_files

    def check(name):
        if name.startswith("bad"):
            raise DataError(f"{name}: broken header")
        return len(name)

    items = ["a.wav", "bad1.wav", "b.wav", "bad2.wav"]
    with pytest.raises(DataError) as err:
        scan_files(items, check, "error", "--data x")
    message = str(err.value)
    assert "2 unreadable file(s)" in message and "bad1.wav: broken header" in message
    assert "bad2.wav: broken header" in message and "\n" not in message
    with warnings.catch_warnings(record=True):
        warnings.simplefilter("always")
        good, results, skipped = scan_files(items, check, "skip", "--data x")
    assert good == ["a.wav", "b.wav"] and results == [5, 5]
    assert skipped == [("bad1.wav", "broken header"), ("bad2.wav", "broken header")]
    with pytest.raises(DataError, match="none of the 1 files"):
        scan_files(["bad.wav"], check, "skip", "--data x")
