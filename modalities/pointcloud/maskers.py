"""Point-MAE's block masking: hide the groups nearest to a random seed centre.

It reads only token positions (per-sample centres), so it works on any layout whose positions are
coordinates; it lives here because only point clouds lack a grid for the grid block maskers.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from maskkit.config_utils import ConfigError
from maskkit.maskers.base import MaskContext, Masker, MaskPlan, exact_topk_plan


@dataclass
class PointBlockConfig:
    num_seeds: int = 1  # >1: hide the groups nearest to any of several seeds (several smaller blocks)

    def __post_init__(self) -> None:
        if self.num_seeds < 1:
            raise ConfigError(f"`masker.num_seeds` must be >= 1, got {self.num_seeds}")


class PointBlockMasker(Masker):
    name = "point-block"
    design_budget = (300, "Point-MAE pre-trains for 300 epochs")
    description = ("Hide the n_mask groups nearest to a random seed centre (a contiguous block of the "
                   "shape); exact count per sample.")
    reference = "Pang et al., Masked Autoencoders for Point Cloud Self-supervised Learning, ECCV 2022"
    Config = PointBlockConfig

    def plan(self, ctx: MaskContext) -> MaskPlan:
        pos = ctx.batched_positions().to(ctx.device).float()  # (B, N, k)
        b, n, _ = pos.shape
        seeds = min(self.config.num_seeds, n)
        pick = (ctx.uniform(b, n)).argsort(dim=1)[:, :seeds]  # distinct random seed tokens per sample
        seed_pos = torch.gather(pos, 1, pick.unsqueeze(-1).expand(-1, -1, pos.shape[-1]))
        dist = torch.cdist(pos, seed_pos).min(dim=-1).values  # (B, N) distance to the nearest seed
        scale = dist.amax(dim=1, keepdim=True).clamp_min(1e-12)
        # nearest = highest score; jitter (relative 1e-6) only breaks exact ties
        return exact_topk_plan(-dist / scale, ctx.n_mask, ctx)


__all__ = ["PointBlockConfig", "PointBlockMasker"]
