"""Space-time maskers for (t, h, w) token grids.

MAE-ST's space-time-agnostic masking is the core ``random`` masker (uniform over all tubelets).
Here: VideoMAE's ``tube`` masking (one spatial mask repeated at every time slice) and ``frame``
masking (whole time slices). Both hit the exact count ``N - int(N * (1 - r))``: when it is not a
multiple of the structure size, one extra structure is hidden in part, at random tokens.
"""

from __future__ import annotations

from torch import Tensor

from maskkit.maskers.base import MaskContext, Masker, MaskPlan


def ranks(values: Tensor) -> Tensor:
    """Rank of every entry along the last axis (0 = smallest), as float."""
    return values.argsort(dim=-1).argsort(dim=-1).float()


def structured_plan(ctx: MaskContext, keep_axes: tuple[str, ...]) -> MaskPlan:
    """Hide whole structures: tokens sharing their coordinates on ``keep_axes`` share one random rank
    (the rank of their structure); token noise in [0, 1) only breaks ties inside a structure, so the
    top ``n_mask`` scores are whole structures plus part of one more."""
    layout = ctx.layout
    grid = layout.grid
    assert grid is not None
    b = ctx.batch_size
    shape = [1] + list(grid)
    struct_shape = [b] + [g if a in keep_axes else 1 for a, g in zip(layout.axes, grid, strict=True)]
    n_struct = 1
    for s in struct_shape[1:]:
        n_struct *= s
    rank = ranks(ctx.uniform(b, n_struct)).view(*struct_shape)
    shape[0] = b
    score = rank.expand(*shape) + ctx.uniform(*shape)
    return MaskPlan.from_scores(score.reshape(b, -1), ctx.n_mask)


class TubeMasker(Masker):
    """VideoMAE tube masking: one random spatial mask, the same at every time slice."""

    name = "tube"
    design_budget = (800, "VideoMAE uses 800-2400 epochs")
    description = "VideoMAE tubes: one random spatial mask repeated in time; exact count via a partial tube."
    reference = "Tong et al., VideoMAE: Masked Autoencoders are Data-Efficient Learners, NeurIPS 2022"
    needs_grid = True
    grid_ranks = (3,)

    def plan(self, ctx: MaskContext) -> MaskPlan:
        axes = ctx.layout.axes
        spatial = tuple(a for a in axes if a != "t") if "t" in axes else axes[1:]
        return structured_plan(ctx, spatial)


class FrameMasker(Masker):
    """Whole time slices hidden (every spatial token of a tubelet step), plus one partial slice."""

    name = "frame"
    description = "Whole time slices hidden at random; exact count via one partial slice."
    reference = "Frame masking, ablated against tube masking in Tong et al., VideoMAE, NeurIPS 2022"
    needs_grid = True
    grid_ranks = (3,)

    def plan(self, ctx: MaskContext) -> MaskPlan:
        time_axis = "t" if "t" in ctx.layout.axes else ctx.layout.axes[0]
        return structured_plan(ctx, (time_axis,))


__all__ = ["FrameMasker", "TubeMasker", "ranks", "structured_plan"]
