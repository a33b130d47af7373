"""``ts-span``: hide one contiguous run of patches, the 1-D analogue of block masking.

Registered through this package's ``maskkit.maskers`` entry point (see pyproject.toml); it is an
example of a third-party masker and follows the core rules: exact count per sample, randomness
through ``ctx.uniform`` (global-batch draws), batched tensor ops.
"""

from __future__ import annotations

import torch

from maskkit.maskers.base import MaskContext, Masker, MaskPlan


class SpanMasker(Masker):
    name = "ts-span"
    description = "Hide one contiguous span of n_mask patches at a random start (1-D token grids)."
    reference = "maskkit-timeseries example"
    needs_grid = True
    grid_ranks = (1,)

    def plan(self, ctx: MaskContext) -> MaskPlan:
        n, n_mask = ctx.num_tokens, ctx.n_mask
        start = (ctx.uniform(ctx.batch_size) * (n - n_mask + 1)).long().clamp_(max=n - n_mask)  # (B,)
        idx = torch.arange(n, device=ctx.device)
        hidden = (idx[None, :] >= start[:, None]) & (idx[None, :] < start[:, None] + n_mask)
        return MaskPlan.from_scores(hidden.float(), n_mask)


__all__ = ["SpanMasker"]
