"""Property-based checks: config validation never crashes obscurely; tokenizers and plans hold for any shape."""

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from maskkit.config_utils import ConfigError
from maskkit.maskers.base import MaskContext
from maskkit.modalities.image.tokenizer import ImagePatchTokenizer
from maskkit.registry import build_masker
from maskkit.tokens import TokenLayout
from maskkit.train.config import TrainConfig

values = st.one_of(st.integers(-5, 500), st.floats(-2, 2), st.just(float("nan")), st.text(max_size=6), st.booleans(),
                   st.none())


@settings(max_examples=150, deadline=None)
@given(fields=st.dictionaries(st.sampled_from(["epochs", "batch_size", "mask_ratio", "lr", "accum_steps",
                                               "warmup_epochs", "device", "precision", "seed", "save_every",
                                               "num_workers", "betas", "on_nonfinite", "bogus"]), values))
def test_train_config_either_valid_or_one_clear_error(fields):
    try:
        cfg = TrainConfig.from_dict(fields)
    except ConfigError as exc:
        message = str(exc)
        assert message and "\n" not in message
        return
    assert cfg.epochs >= 1 and cfg.batch_size >= 1
    assert cfg.mask_ratio is None or 0 < cfg.mask_ratio < 1
    assert cfg.lr is None or cfg.lr > 0
    assert cfg.warmup_epochs >= 0


@settings(max_examples=40, deadline=None)
@given(gh=st.integers(1, 6), gw=st.integers(1, 6), patch=st.integers(1, 5), channels=st.integers(1, 5),
       batch=st.integers(1, 3))
def test_image_tokenizer_roundtrip_any_shape(gh, gw, patch, channels, batch):
    tok = ImagePatchTokenizer((gh * patch, gw * patch), patch, channels, 8)
    x = torch.randn(batch, channels, gh * patch, gw * patch)
    tokens = tok.tokenize(x)
    assert tokens.embeddings.shape == (batch, gh * gw, 8)
    assert tokens.layout.grid == (gh, gw)
    assert torch.equal(tok.untokenize(tokens.targets, tokens), x)


@settings(max_examples=60, deadline=None)
@given(grid=st.lists(st.integers(1, 9), min_size=1, max_size=3), ratio=st.floats(0.05, 0.95),
       batch=st.integers(1, 4), seed=st.integers(0, 2**31 - 1))
def test_random_and_block_plans_exact_on_any_grid(grid, ratio, batch, seed):
    layout = TokenLayout.from_grid(tuple(grid), ("t", "h", "w")[-len(grid):])
    n = layout.num_tokens
    if n < 2:
        return
    for name in ("random", "block"):
        ctx = MaskContext(batch_size=batch, num_tokens=n, mask_ratio=ratio, layout=layout,
                          positions=layout.grid_coordinates().float(),
                          generator=torch.Generator().manual_seed(seed), device=torch.device("cpu"))
        plan = build_masker(name)(ctx)
        plan.validate(n)
        assert plan.n_keep == max(1, int(n * (1 - ratio)))
