"""Filtered-noise, attention, hard-patch, learned and composite maskers: counts, determinism, behaviour."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from maskkit.config_utils import ConfigError
from maskkit.losses import ReconstructionMSE
from maskkit.maskers.base import MaskContext, MaskPlan, ModelShape, TrainingProgress, gumbel_scores
from maskkit.maskers.compose import apply_hints
from maskkit.maskers.fixed_view import FixedModelView
from maskkit.maskers.hard_patches import pairwise_rank_loss
from maskkit.maskers.stats import mask_statistics
from maskkit.modalities.image.tokenizer import ImagePatchTokenizer
from maskkit.model.mae import MaskedAutoencoder, model_preset
from maskkit.registry import build_masker, masker_names
from maskkit.tokens import TokenBatch, TokenLayout
from maskkit.train.step import TrainingModule

NOISE = ["noise-red", "noise-blue", "noise-green", "noise-purple"]
GRIDS = {1: ((48,), ("time",)), 2: ((8, 10), ("h", "w")), 3: ((4, 6, 6), ("t", "h", "w"))}


def make_ctx(grid=(8, 8), axes=("h", "w"), batch=4, ratio=0.75, seed=0, layout=None, positions=None,
             progress=None, **kw) -> MaskContext:
    layout = layout or TokenLayout.from_grid(grid, axes)
    if positions is None:
        positions = layout.grid_coordinates().float()
    return MaskContext(batch_size=batch, num_tokens=layout.num_tokens, mask_ratio=ratio, layout=layout,
                       positions=positions, generator=torch.Generator().manual_seed(seed),
                       device=torch.device("cpu"), progress=progress or TrainingProgress(), **kw)


def fake_tokens(ctx: MaskContext, dim: int = 16, seed: int = 0) -> TokenBatch:
    g = torch.Generator().manual_seed(seed)
    emb = torch.randn(ctx.batch_size, ctx.num_tokens, dim, generator=g)
    return TokenBatch(embeddings=emb, targets=emb, positions=ctx.positions, layout=ctx.layout)


def feature_ctx(batch=4, ratio=0.75, seed=0, dim=16, grid=(8, 8), **kw) -> MaskContext:
    ctx = make_ctx(grid=grid, batch=batch, ratio=ratio, seed=seed, **kw)
    feats = torch.randn(batch, ctx.num_tokens, dim, generator=torch.Generator().manual_seed(seed + 1))
    ctx.model = FixedModelView(ModelShape(depth=4, embed_dim=dim), features_fn=lambda layer: feats)
    ctx.tokens = fake_tokens(ctx, dim, seed)
    return ctx


def assert_exact(plan: MaskPlan, ctx: MaskContext) -> None:
    plan.validate(ctx.num_tokens)
    assert plan.n_mask == ctx.n_mask
    assert torch.equal(plan.mask.sum(1), torch.full((ctx.batch_size,), ctx.n_mask))


def test_gumbel_scores_sample_softmax():
    logits = torch.tensor([0.0, 1.0, 2.0]).expand(20000, -1)
    scores = gumbel_scores(logits, torch.Generator().manual_seed(0))
    assert bool(torch.isfinite(scores).all())
    freq = torch.bincount(scores.argmax(1), minlength=3).float() / 20000
    assert torch.allclose(freq, logits[0].softmax(0), atol=0.02)


def test_all_catalogue_names_registered():
    names = set(masker_names())
    for name in [*NOISE, "attention", "hard-patches", "learned", "curriculum", "mixture"]:
        assert name in names
        masker = build_masker(name)
        assert masker.description and masker.reference
        assert isinstance(masker.describe_config(), dict)


# --------------------------------------------------------------------------- filtered noise
@settings(max_examples=30, deadline=None)
@given(name=st.sampled_from(NOISE), rank=st.sampled_from([1, 2, 3]), batch=st.integers(1, 5),
       ratio=st.floats(0.05, 0.95), seed=st.integers(0, 1000))
def test_noise_exact_counts_any_rank(name, rank, batch, ratio, seed):
    grid, axes = GRIDS[rank]
    ctx = make_ctx(grid, axes, batch=batch, ratio=ratio, seed=seed)
    assert_exact(build_masker(name)(ctx), ctx)


@pytest.mark.parametrize("name", NOISE)
def test_noise_deterministic_under_seed(name):
    masker = build_masker(name)
    a = masker(make_ctx(seed=3)).mask
    b = masker(make_ctx(seed=3)).mask
    c = masker(make_ctx(seed=4)).mask
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


@pytest.mark.parametrize("rank", [1, 2, 3])
def test_noise_colours_have_their_spectra(rank):
    """Neighbour-pair statistic: red clumps, blue disperses, green sits between."""
    grid, axes = {1: ((256,), ("time",)), 2: ((16, 16), ("h", "w")), 3: ((6, 10, 10), ("t", "h", "w"))}[rank]
    clump = {}
    for name in NOISE:
        ctx = make_ctx(grid, axes, batch=64, ratio=0.5, seed=1)
        clump[name] = float(mask_statistics(build_masker(name)(ctx), ctx.layout)["clumping"])
    assert clump["noise-red"] > 1.3
    assert clump["noise-blue"] < 0.95
    assert clump["noise-red"] > clump["noise-green"] > 1.05
    assert clump["noise-green"] > clump["noise-purple"] > clump["noise-blue"]


def test_noise_axis_scale_makes_an_axis_smoother():
    layout = TokenLayout.from_grid((16, 16), ("time", "freq"))
    ctx = make_ctx(layout=layout, batch=64, ratio=0.5)
    stats = mask_statistics(build_masker("noise-red", {"sigma": 1.0, "axis_scale": "4,0.5"})(ctx), layout)
    assert float(stats["clumping/time"]) > float(stats["clumping/freq"]) + 0.2


def test_noise_needs_a_grid_and_checks_options():
    masker = build_masker("noise-green")
    ctx = make_ctx(layout=TokenLayout.unordered(32), positions=torch.randn(32, 3))
    with pytest.raises(ValueError, match="needs a token grid"):
        masker(ctx)
    with pytest.raises(ConfigError, match="sigma"):
        build_masker("noise-red", {"sigma": "-1"})
    with pytest.raises(ConfigError, match="`masker.sigma_low` < `masker.sigma_high`"):
        build_masker("noise-green", {"sigma_low": 3, "sigma_high": 1})
    with pytest.raises(ConfigError, match="axis_scale"):
        build_masker("noise-red", {"axis_scale": "1,1,1"}).check_layout(make_ctx().layout)


# --------------------------------------------------------------------------- hints
@settings(max_examples=30, deadline=None)
@given(ratio=st.floats(0.1, 0.9), hint=st.floats(0.0, 1.0), batch=st.integers(1, 4),
       mode=st.sampled_from(["pool", "visible_only"]))
def test_apply_hints_exact_and_reveals(ratio, hint, batch, mode):
    ctx = make_ctx(batch=batch, ratio=ratio)
    base = build_masker("noise-red")(ctx)
    out = apply_hints(base, hint, ctx, compensate_from=mode)
    assert_exact(out, ctx)
    n_hint = int(min(hint, 1.0) * ctx.n_mask)
    if mode == "visible_only":
        n_hint = min(n_hint, ctx.n_keep)
        # exactly n_hint tokens of the informed mask became visible
        revealed = (base.mask & ~out.mask).sum(1)
        assert torch.equal(revealed, torch.full((batch,), n_hint))
    else:
        assert bool(((base.mask & ~out.mask).sum(1) <= n_hint).all())


def test_apply_hints_by_score_and_from_bool_mask():
    ctx = make_ctx(batch=2)
    mask = torch.zeros(2, 64, dtype=torch.bool)
    mask[:, :ctx.n_mask] = True
    scores = torch.arange(64.0).expand(2, -1)
    out = apply_hints(mask, 0.25, ctx, hint_scores=scores, compensate_from="visible_only")
    n_hint = int(0.25 * ctx.n_mask)
    revealed = torch.nonzero(mask[0] & ~out.mask[0]).flatten()
    assert torch.equal(revealed, torch.arange(ctx.n_mask - n_hint, ctx.n_mask))


def test_full_hints_give_uniform_random_masks():
    ctx = make_ctx(batch=4000, ratio=0.75, grid=(4, 4))
    informed = torch.arange(16.0).expand(4000, -1)  # the same informed mask for every sample
    plan = MaskPlan.from_scores(informed, ctx.n_mask)
    out = apply_hints(plan, 1.0, ctx)
    freq = out.mask.float().mean(0)
    assert float((freq - 0.75).abs().max()) < 0.04


# --------------------------------------------------------------------------- attention
def cls_attention(batch: int, n: int, favourite: torch.Tensor, prefix: int = 1):
    """Fake (B, H, P+N, P+N) attention where every query attends most to ``favourite`` tokens."""
    logits = torch.zeros(batch, 2, prefix + n, prefix + n)
    logits[..., prefix + favourite] = 3.0
    logits = logits + 0.01 * torch.randn(logits.shape, generator=torch.Generator().manual_seed(0))
    return logits.softmax(-1)


@pytest.mark.parametrize("prefix", [1, 0])
def test_attention_masks_most_attended(prefix):
    ctx = make_ctx(batch=3, ratio=0.25)  # 16 hidden of 64
    favourite = torch.tensor([1, 5, 9, 11, 20, 22, 30, 33, 40, 41, 42, 50, 55, 60, 62, 63])
    attn = cls_attention(3, 64, favourite, prefix)
    ctx.model = FixedModelView(attention_fn=lambda layer: attn)
    plan = build_masker("attention")(ctx)
    assert_exact(plan, ctx)
    expected = torch.zeros(64, dtype=torch.bool)
    expected[favourite] = True
    assert torch.equal(plan.mask, expected.expand(3, -1))
    low = build_masker("attention", {"mode": "low", "masking_prob": 1.0})(
        make_ctx(batch=3, ratio=0.25, model=FixedModelView(attention_fn=lambda layer: attn)))
    assert not bool((low.mask & expected).any())


def test_attention_hints_and_masking_prob():
    favourite = torch.arange(0, 64, 4)
    attn = cls_attention(200, 64, favourite)
    expected = torch.zeros(64, dtype=torch.bool)
    expected[favourite] = True
    hinted = build_masker("attention", {"hint_ratio": 0.5})(
        make_ctx(batch=200, ratio=0.25, model=FixedModelView(attention_fn=lambda layer: attn)))
    assert_exact(hinted, make_ctx(batch=200, ratio=0.25))
    kept_informed = (hinted.mask & expected).sum(1)
    assert bool((kept_informed >= 8).all()) and bool((kept_informed < 16).any())
    mixed = build_masker("attention", {"masking_prob": 0.5})(
        make_ctx(batch=200, ratio=0.25, model=FixedModelView(attention_fn=lambda layer: attn)))
    informed_rows = (mixed.mask == expected).all(1).float().mean()
    assert 0.35 < float(informed_rows) < 0.65
    assert abs(float(mixed.logs["informed_fraction"]) - float(informed_rows)) < 1e-6


# --------------------------------------------------------------------------- hard patches
@settings(max_examples=20, deadline=None)
@given(ratio=st.floats(0.1, 0.9), batch=st.integers(1, 4), alpha=st.floats(0.0, 1.0), seed=st.integers(0, 99))
def test_hard_patches_exact_counts(ratio, batch, alpha, seed):
    ctx = feature_ctx(batch=batch, ratio=ratio, seed=seed)
    plan = build_masker("hard-patches", {"alpha_max": alpha, "schedule": "constant"})(ctx)
    assert_exact(plan, ctx)


def test_hard_patches_hides_predicted_hard_tokens_on_schedule():
    masker = build_masker("hard-patches", {"feature_dim": 16})
    with torch.no_grad():  # head predicts feature 0: make it the identity on that channel
        masker.head.fc1.weight.zero_()
        masker.head.fc1.bias.fill_(0.0)
        masker.head.fc1.weight[0, 0] = 1.0
        masker.head.fc2.weight.zero_()
        masker.head.fc2.weight[0, 0] = 1.0
    progress = TrainingProgress(epoch=9, epochs=10)
    ctx = feature_ctx(batch=4, progress=progress)
    feats = ctx.features(-1)
    plan = masker(ctx)
    assert float(plan.logs["hpm_alpha"]) == pytest.approx(0.5)
    predicted = masker.head(feats)
    n_hard = int(0.5 * ctx.n_mask)
    hard = predicted.argsort(1, descending=True)[:, :n_hard]
    assert bool(plan.mask.gather(1, hard).all())
    assert masker.alpha(TrainingProgress(epoch=0, epochs=10)) == pytest.approx(0.05)


def test_rank_loss_learns_the_order():
    torch.manual_seed(0)
    masker = build_masker("hard-patches", {"feature_dim": 16, "hidden": 32})
    feats = torch.randn(4, 32, 16)
    target = feats[..., 3] - 0.5 * feats[..., 7]
    opt = torch.optim.Adam(masker.parameters(), lr=1e-2)

    def agreement():
        pred = masker.head(feats).detach()
        return float(((pred.unsqueeze(1) - pred.unsqueeze(2)).sign()
                      == (target.unsqueeze(1) - target.unsqueeze(2)).sign()).float().mean())

    before = agreement()
    for _ in range(40):
        loss = pairwise_rank_loss(masker.head(feats), target, max_pairs=100_000)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert agreement() > max(before, 0.85)
    sampled = pairwise_rank_loss(masker.head(feats), target, max_pairs=50, generator=torch.Generator())
    assert torch.isfinite(sampled)


# --------------------------------------------------------------------------- learned sampler
@settings(max_examples=20, deadline=None)
@given(ratio=st.floats(0.1, 0.9), batch=st.integers(1, 4), draw=st.sampled_from(["masked", "visible"]),
       seed=st.integers(0, 99))
def test_learned_exact_counts(ratio, batch, draw, seed):
    ctx = feature_ctx(batch=batch, ratio=ratio, seed=seed, grid=(6, 6))
    torch.manual_seed(0)
    plan = build_masker("learned", {"draw": draw, "hidden": 16, "heads": 2})(ctx)
    assert_exact(plan, ctx)


def test_learned_deterministic_and_grid_free():
    torch.manual_seed(0)
    masker = build_masker("learned", {"hidden": 16, "heads": 2})
    layout = TokenLayout.unordered(32)
    positions = torch.randn(3, 32, 3, generator=torch.Generator().manual_seed(5))
    masks = []
    for _ in range(2):
        ctx = make_ctx(layout=layout, positions=positions, batch=3, seed=7)
        ctx.tokens = fake_tokens(ctx)
        masks.append(masker(ctx).mask)
    assert torch.equal(masks[0], masks[1])


def test_learned_reinforce_raises_probability_of_hard_tokens():
    """Hidden tokens with high error gain probability; the sampler then hides them more often."""
    torch.manual_seed(0)
    masker = build_masker("learned", {"hidden": 16, "heads": 2, "loss_weight": 1.0, "reward": "zscore"})
    opt = torch.optim.Adam(masker.parameters(), lr=5e-3)
    hard = torch.zeros(36, dtype=torch.bool)
    hard[:6] = True
    error = 0.1 + hard.float().expand(8, -1)
    rates = []
    for step in range(40):
        ctx = feature_ctx(batch=8, ratio=0.5, seed=step, grid=(6, 6))
        ctx.tokens = fake_tokens(ctx, seed=0)
        plan = masker(ctx)
        rates.append(float(plan.mask[:, hard].float().mean()))
        loss = masker.auxiliary_loss(ctx, plan, None, error)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert sum(rates[:5]) / 5 < 0.7
    assert sum(rates[-5:]) / 5 > 0.9


# --------------------------------------------------------------------------- composition
def test_curriculum_switches_at_fraction_and_epoch():
    masker = build_masker("curriculum", {"first": "random", "second": "noise-red",
                                         "second_options": "sigma=3", "switch_fraction": 0.4})
    assert masker.second.config.sigma == 3.0
    for step, stage in [(0, 0.0), (3, 0.0), (4, 1.0), (9, 1.0)]:
        ctx = make_ctx(progress=TrainingProgress(epoch=step, step=step, epochs=10, steps_per_epoch=1))
        plan = masker(ctx)
        assert_exact(plan, ctx)
        assert float(plan.logs["curriculum_stage"]) == stage
    by_epoch = build_masker("curriculum", {"switch_epoch": 2, "second": "noise-blue"})
    assert by_epoch.stage(TrainingProgress(epoch=1, step=90, epochs=3, steps_per_epoch=50)) == 0
    assert by_epoch.stage(TrainingProgress(epoch=2, step=100, epochs=3, steps_per_epoch=50)) == 1
    with pytest.raises(ConfigError, match="first"):
        build_masker("curriculum", {"first": "no-such-masker"})
    with pytest.raises(ConfigError, match="second"):
        build_masker("curriculum", {"second": "noise-red", "second_options": {"sigma": -2}})
    with pytest.raises(ValueError, match="needs a token grid"):
        masker.check_layout(TokenLayout.unordered(16))


def test_curriculum_state_holds_the_children():
    masker = build_masker("curriculum", {"second": "learned",
                                         "second_options": "hidden=16;heads=2;feature_dim=8"})
    keys = list(masker.state_dict())
    assert keys and all(k.startswith("second.sampler.") for k in keys)


def test_mixture_frequencies_follow_probabilities():
    masker = build_masker("mixture", {"maskers": "random,noise-red,noise-blue",
                                      "probabilities": "0.2,0.5,0.3",
                                      "options": "noise-red.sigma=1;2.sigma=0.7"})
    assert masker.maskers[1].config.sigma == 1.0 and masker.maskers[2].config.sigma == 0.7
    ctx = make_ctx(batch=2, grid=(4, 4), seed=0)
    for _ in range(5):
        plan = masker(ctx)
        assert_exact(plan, ctx)
        assert float(plan.logs["mixture_choice"]) in (0.0, 1.0, 2.0)
    counts = [0, 0, 0]
    for _ in range(4000):
        counts[masker.choose(ctx)] += 1
    for c, p in zip(counts, [0.2, 0.5, 0.3], strict=True):
        assert abs(c / 4000 - p) < 0.03
    with pytest.raises(ConfigError, match="probabilities"):
        build_masker("mixture", {"maskers": "random,noise-red", "probabilities": "1"})
    with pytest.raises(ConfigError, match="options"):
        build_masker("mixture", {"maskers": "random", "options": "noise-red.sigma=1"})


# --------------------------------------------------------------------------- through the training step
def training_module(name: str, options: dict, seed: int = 0) -> TrainingModule:
    torch.manual_seed(seed)
    config = model_preset("nano")
    model = MaskedAutoencoder(ImagePatchTokenizer((16, 16), 4, 3, config.embed_dim), config)
    masker = build_masker(name, options)
    masker.bind_model(model.shape)
    return TrainingModule(model, masker, ReconstructionMSE(), 0.75)


@pytest.mark.parametrize("name,options", [
    ("hard-patches", {"schedule": "constant"}),
    ("learned", {}),
    ("curriculum", {"first": "random", "second": "learned", "switch_fraction": 0.5}),
    ("mixture", {"maskers": "hard-patches,learned"}),
    ("attention", {"hint_ratio": 0.25}),
])
def test_training_step_gradients_reach_masker(name, options):
    module = training_module(name, options)
    x = torch.randn(4, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    gen = torch.Generator().manual_seed(0)
    out = module(x, gen, TrainingProgress(epoch=1, step=1, epochs=2, steps_per_epoch=1))
    out.plan.validate(16)
    out.loss.backward()
    params = dict(module.masker.named_parameters())
    if name == "attention":
        assert not params
        return
    assert "masker_aux_loss" in out.logs
    used = [p for p in params.values() if p.grad is not None and float(p.grad.abs().sum()) > 0]
    assert used, f"no masker parameter of {name} received a gradient"
    assert all(p.grad is not None for p in params.values())  # idle children join the graph (DDP)


def test_learned_masker_checkpoint_round_trip():
    module = training_module("learned", {})
    state = module.state_dict()
    fresh = training_module("learned", {"draw": "masked"}, seed=1)
    fresh.load_state_dict(state)
    x = torch.randn(2, 3, 16, 16)
    a = module(x, torch.Generator().manual_seed(1), TrainingProgress()).plan.mask
    b = fresh(x, torch.Generator().manual_seed(1), TrainingProgress()).plan.mask
    assert torch.equal(a, b)


def test_trainer_runs_learned_maskers_end_to_end(toy_config):
    """Through build_run (bind_model), the trainer's optimiser groups and per-epoch diagnostics."""
    from maskkit.train.metrics import read_metrics
    from maskkit.train.trainer import run_training

    cfg = toy_config(epochs=2, max_steps_per_epoch=2, masker="curriculum",
                     masker_options={"first": "hard-patches", "second": "learned", "switch_epoch": 1})
    result = run_training(cfg)
    epochs = [r for r in read_metrics(result.out_dir) if r["type"] == "epoch"]
    assert len(epochs) == 2 and all(math.isfinite(r["loss"]) for r in epochs)
    assert epochs[0]["masker/curriculum_stage"] == 0.0 and epochs[1]["masker/curriculum_stage"] == 1.0
    assert "masker/hpm_alpha" in epochs[0] and "masker/sampler_entropy" in epochs[1]
    assert epochs[1]["mask/collapse"] in ("ok", "positional", "collapsed")
