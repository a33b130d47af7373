"""N ranks mask exactly like one process with the same global batch, for every masker.

Cheap and exact: W "ranks" run as threads in one process, each with its own copy of the masker and
a mask context holding its rows of the global batch (rank r holds global rows r, r + W, ...). Their
collectives (``MaskContext.global_sum``) meet at a barrier, as an all-reduce would. The union of
the ranks' plans must equal the plan one process makes for the whole batch, for two steps (so
state a masker keeps, such as self-guided's position mean, must stay in step too). The real
torchrun runs in tests/test_distributed.py and tests/test_fsdp.py check the same for random,
attention and self-guided end to end.
"""

from __future__ import annotations

import copy
import threading
from dataclasses import dataclass
from typing import Any

import pytest
import torch

from maskkit.maskers.base import MaskContext, MaskPlan, ModelShape, TrainingProgress
from maskkit.maskers.fixed_view import FixedModelView
from maskkit.registry import build_masker
from maskkit.tokens import TokenBatch, TokenLayout

WORLD = 2
LOCAL_BATCH = 3
DIM, HEADS = 8, 2

#: (grid, axes) or None for unordered point-cloud-like tokens with per-sample positions
LAYOUTS: dict[str, tuple[tuple[int, ...], tuple[str, ...]] | None] = {
    "image": ((6, 6), ("h", "w")),
    "audio": ((8, 6), ("time", "freq")),
    "video": ((4, 4, 4), ("t", "h", "w")),
    "series": ((24,), ("time",)),
    "points": None,
}

#: every masker of the catalogue, with the layout it runs on and options that reach its random draws
CASES: list[tuple[str, str, dict[str, Any]]] = [
    ("random", "image", {}),
    ("block", "image", {}),
    ("block", "image", {"mode": "simmim"}),
    ("block", "video", {}),
    ("noise-red", "image", {}),
    ("noise-blue", "image", {}),
    ("noise-green", "video", {}),
    ("noise-purple", "audio", {}),
    ("attention", "image", {"hint_ratio": 0.3, "masking_prob": 0.5}),
    ("attention", "points", {"mode": "low"}),
    ("hard-patches", "image", {"schedule": "constant", "max_pairs": 20}),
    ("learned", "image", {}),
    ("learned", "points", {"draw": "visible"}),
    ("self-guided", "image", {"start": "epoch", "start_epoch": 0}),  # preset: eigh, hints, position mean
    ("self-guided", "image", {"start": "epoch", "start_epoch": 0, "partition": "power",
                              "target": "random", "hint_select": "similarity"}),
    ("self-guided", "image", {"preset": "sgim", "start_epoch": 0}),
    ("curriculum", "image", {"first": "block", "second": "attention", "switch_fraction": 0.5}),
    ("mixture", "image", {"maskers": ["block", "self-guided", "random"],
                          "options": {"self-guided": {"start": "epoch", "start_epoch": 0}}}),
    ("time-freq", "audio", {}),
    ("tube", "video", {}),
    ("frame", "video", {}),
    ("point-block", "points", {"num_seeds": 2}),
    ("saliency", "image", {}),
    ("saliency", "points", {}),
    ("ts-span", "series", {}),
]


class Reducer:
    """A thread all-reduce: every rank adds its value, all get the sum (in rank order)."""

    def __init__(self, world: int) -> None:
        self.barrier = threading.Barrier(world, timeout=60)
        self.slots: list[torch.Tensor | None] = [None] * world

    def sum(self, rank: int, value: torch.Tensor) -> torch.Tensor:
        self.slots[rank] = value.clone()
        self.barrier.wait()
        total = torch.stack([s for s in self.slots if s is not None]).sum(0)
        self.barrier.wait()
        return total


@dataclass
class SimulatedRankContext(MaskContext):
    reducer: Reducer | None = None

    def global_sum(self, value: torch.Tensor) -> torch.Tensor:
        return value if self.reducer is None else self.reducer.sum(self.rank, value)


def global_inputs(layout_name: str, batch: int, seed: int) -> dict[str, Any]:
    spec = LAYOUTS[layout_name]
    g = torch.Generator().manual_seed(seed)
    if spec is None:
        layout = TokenLayout.unordered(20)
        positions = torch.randn(batch, 20, 3, generator=g)
    else:
        layout = TokenLayout.from_grid(*spec)
        positions = layout.grid_coordinates().float()
    n = layout.num_tokens
    return {
        "layout": layout, "positions": positions,
        "embeddings": torch.randn(batch, n, DIM, generator=g),
        "features": torch.randn(batch, n, DIM, generator=g),
        "attention": torch.randn(batch, HEADS, n + 1, n + 1, generator=g).softmax(-1),
        "per_token": torch.rand(batch, n, generator=g),
    }


def rows(t: torch.Tensor, rank: int, world: int) -> torch.Tensor:
    return t[rank::world]


def context(inputs: dict[str, Any], step: int, rank: int, world: int, reducer: Reducer | None) -> MaskContext:
    pick = (lambda t: rows(t, rank, world)) if world > 1 else (lambda t: t)
    positions = inputs["positions"]
    positions = pick(positions) if positions.dim() == 3 else positions
    emb = pick(inputs["embeddings"])
    feats, attn = pick(inputs["features"]), pick(inputs["attention"])
    tokens = TokenBatch(embeddings=emb, targets=emb, positions=positions, layout=inputs["layout"])
    return SimulatedRankContext(
        batch_size=emb.shape[0], num_tokens=emb.shape[1], mask_ratio=0.7, layout=inputs["layout"],
        positions=positions, generator=torch.Generator().manual_seed(1000 + step), device=torch.device("cpu"),
        progress=TrainingProgress(epoch=step, step=step, epochs=2, steps_per_epoch=1), tokens=tokens,
        model=FixedModelView(ModelShape(depth=4, embed_dim=DIM, num_prefix=1), features_fn=lambda layer: feats,
                             attention_fn=lambda layer: attn),
        rank=rank, world_size=world, reducer=reducer)


def run_step(masker: Any, ctx: MaskContext, per_token: torch.Tensor) -> tuple[MaskPlan, torch.Tensor | None]:
    plan = masker(ctx)
    aux = masker.auxiliary_loss(ctx, plan, None, per_token)
    return plan, aux


@pytest.mark.parametrize(("name", "layout_name", "options"), CASES,
                         ids=[f"{c[0]}-{c[1]}-{i}" for i, c in enumerate(CASES)])
def test_ranks_mask_like_one_process(name, layout_name, options):
    base = build_masker(name, options)
    base.bind_model(ModelShape(depth=4, embed_dim=DIM, num_prefix=1))  # before copying, as the trainer does
    base.train()
    single = copy.deepcopy(base)
    ranks = [copy.deepcopy(base) for _ in range(WORLD)]
    total = LOCAL_BATCH * WORLD
    for step in range(2):
        inputs = global_inputs(layout_name, total, seed=step)
        one_plan, one_aux = run_step(single, context(inputs, step, 0, 1, None), inputs["per_token"])
        reducer = Reducer(WORLD)
        results: list[Any] = [None] * WORLD
        errors: list[BaseException] = []

        def work(rank: int, step=step, inputs=inputs, reducer=reducer, results=results, errors=errors) -> None:
            try:
                ctx = context(inputs, step, rank, WORLD, reducer)
                results[rank] = run_step(ranks[rank], ctx, rows(inputs["per_token"], rank, WORLD))
            except BaseException as exc:  # surfaced below
                errors.append(exc)
                reducer.barrier.abort()

        threads = [threading.Thread(target=work, args=(r,)) for r in range(WORLD)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if errors:
            raise errors[0]
        for rank, (plan, _) in enumerate(results):
            plan.validate(inputs["layout"].num_tokens)
            assert torch.equal(plan.mask, rows(one_plan.mask, rank, WORLD)), f"{name} step {step} rank {rank}"
        if one_aux is not None and name == "learned":  # a mean over samples: ranks average to the global one
            mean_aux = torch.stack([aux for _, aux in results]).mean()
            torch.testing.assert_close(mean_aux, one_aux, rtol=1e-5, atol=1e-8)


def test_every_catalogue_masker_is_covered():
    """Every installed masker: the entry points (built-in, modality and plug-in ones), not classes that
    other tests or the API docs' example register by hand."""
    from importlib.metadata import entry_points

    installed = {ep.name for ep in entry_points(group="maskkit.maskers")}
    assert {name for name, _, _ in CASES} == installed


def test_mixture_choice_same_on_every_rank_even_with_batch_one():
    """A per-batch choice must not be split by rows: with one sample per rank it once was."""
    masker = build_masker("mixture", {"maskers": ["random", "block"]})
    inputs = global_inputs("image", WORLD, seed=0)
    choices = set()
    for rank in range(WORLD):
        ctx = context(inputs, 0, rank, WORLD, None)
        masker(ctx)
        choices.add(int(masker.active_index()))
    assert len(choices) == 1


def test_host_generator_gives_device_independent_choices():
    """The mixture's choice comes from a CPU generator when the context has one (no device sync)."""
    inputs = global_inputs("image", 4, seed=0)
    ctx = context(inputs, 0, 0, 1, None)
    ctx.host_generator = torch.Generator().manual_seed(5)
    expected = float(torch.rand((), generator=torch.Generator().manual_seed(5)))
    assert ctx.host_uniform() == expected
