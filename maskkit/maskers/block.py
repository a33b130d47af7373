"""Block-wise masking: hide random rectangles of the token grid (BEiT), or coarse cells (SimMIM).

Neighbouring patches are strongly correlated, so hiding whole regions makes reconstruction harder
than MAE's scattered masks. Rectangles rarely add up to the target count, so after placing them
every sample is fixed up to the exact count: missing tokens are taken next to the masked region
(most masked 4-neighbours first, ties at random), surplus tokens are released from its edges
(fewest masked neighbours first). The fix-up keeps masks clumped and the encoder input dense.

Placement: BEiT keeps rectangles inside the grid, which hides central tokens far more often than
corner ones; the default ``clipped`` placement lets rectangles overlap the edge so that every
token is equally likely to be hidden (``placement=inside`` reproduces BEiT).

Grids: 1-D ``(L,)`` is treated as a ``(1, L)`` strip, 2-D grids (``(h, w)``, ``(time, freq)``)
directly, and 3-D grids ``(t, h, w)`` as tubes: one 2-D block mask is drawn on the spatial plane
and repeated over every time slice (VideoMAE-style), then fixed up to the exact 3-D count, which
moves fewer than ``t`` tokens off the tubes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

from maskkit.config_utils import ConfigError
from maskkit.maskers.base import MaskContext, Masker, MaskPlan, uniform_from
from maskkit.tokens import TokenLayout

_TIME_AXES = ("t", "time", "frame", "frames")


@dataclass
class BlockMaskConfig:
    """Options of the ``block`` masker (``masker_options``, ``masker.<name>``)."""

    #: ``beit``: random rectangles; ``simmim``: random square cells of mask_patch_size tokens a side
    mode: Literal["beit", "simmim"] = "beit"
    #: smallest rectangle area in tokens; None scales BEiT's 16 at 14x14 to the grid (at least 4)
    min_block_tokens: int | None = None
    #: largest rectangle area in tokens; None: up to the number still to mask
    max_block_tokens: int | None = None
    #: aspect ratios are drawn log-uniformly from [aspect_min, 1 / aspect_min]
    aspect_min: float = 0.3
    #: side of a SimMIM cell, in tokens
    mask_patch_size: int = 2
    #: ``clipped``: rectangles may overlap the grid's edge (no position bias); ``inside``: as BEiT
    placement: Literal["clipped", "inside"] = "clipped"
    #: rectangle rounds per batch; None: 2 * ceil(target / min_block) + 10, at most 100
    max_rounds: int | None = None

    def __post_init__(self) -> None:
        if self.min_block_tokens is not None and self.min_block_tokens < 1:
            raise ConfigError(f"`masker.min_block_tokens` must be >= 1, got {self.min_block_tokens}")
        if self.max_block_tokens is not None and self.max_block_tokens < 1:
            raise ConfigError(f"`masker.max_block_tokens` must be >= 1, got {self.max_block_tokens}")
        if (self.min_block_tokens is not None and self.max_block_tokens is not None
                and self.max_block_tokens < self.min_block_tokens):
            raise ConfigError(f"`masker.max_block_tokens` ({self.max_block_tokens}) must be >= "
                              f"`min_block_tokens` ({self.min_block_tokens})")
        if not 0.0 < self.aspect_min <= 1.0:
            raise ConfigError(f"`masker.aspect_min` must be in (0, 1], got {self.aspect_min}")
        if self.mask_patch_size < 1:
            raise ConfigError(f"`masker.mask_patch_size` must be >= 1, got {self.mask_patch_size}")
        if self.max_rounds is not None and self.max_rounds < 1:
            raise ConfigError(f"`masker.max_rounds` must be >= 1, got {self.max_rounds}")


def plane_of(layout: TokenLayout) -> tuple[tuple[int, int], int, int]:
    """``((h, w), repeats, time_axis)``: the 2-D plane blocks are drawn on, how many slices share
    it and where the repeated axis sits in the grid (-1 when there is none)."""
    grid = layout.grid
    if grid is None:
        raise ValueError("block masking needs a token grid")
    if len(grid) == 1:
        return (1, grid[0]), 1, -1
    if len(grid) == 2:
        return (grid[0], grid[1]), 1, -1
    if len(grid) == 3:
        names = [a.lower() for a in layout.axes]
        t_axis = next((i for i, a in enumerate(names) if a in _TIME_AXES), 0)
        h, w = (g for i, g in enumerate(grid) if i != t_axis)
        return (h, w), grid[t_axis], t_axis
    raise ValueError(f"block masking supports 1-D, 2-D and 3-D grids, got {layout.axes}")


def neighbour_count(mask: Tensor) -> Tensor:
    """(B, *grid) bool -> (B, *grid) float: how many axis-aligned neighbours are masked."""
    m = mask.float()
    count = torch.zeros_like(m)
    for dim in range(1, m.dim()):
        n = m.shape[dim]
        if n < 2:
            continue
        count.narrow(dim, 1, n - 1).add_(m.narrow(dim, 0, n - 1))
        count.narrow(dim, 0, n - 1).add_(m.narrow(dim, 1, n - 1))
    return count


def fixup_scores(mask: Tensor, generator: MaskContext | torch.Generator) -> Tensor:
    """(B, N) scores whose top-k is ``mask`` grown or trimmed to exactly k hidden tokens.

    Masked tokens always outrank unmasked ones; within each group, more masked neighbours rank
    higher and ties are broken at random, so growth happens at the region's border and trimming
    at its loosest edges. Pass the mask context so the tie-breaking noise is a global-batch draw.
    """
    neighbours = neighbour_count(mask)
    offset = 2.0 * (mask.dim() - 1) + 2.0  # above any neighbour count plus noise
    noise = uniform_from(generator, tuple(mask.shape), mask.device) * 0.5
    return (mask.float() * offset + neighbours + noise).flatten(1)


def exact_mask(mask: Tensor, target: int, generator: MaskContext | torch.Generator) -> Tensor:
    """``mask`` (B, *grid) fixed up to exactly ``target`` hidden tokens per sample."""
    scores = fixup_scores(mask, generator)
    out = torch.zeros_like(scores, dtype=torch.bool)
    if target > 0:
        out.scatter_(1, scores.topk(target, dim=1).indices, True)
    return out.view(mask.shape)


def default_min_block(plane_tokens: int) -> int:
    """BEiT uses 16 tokens at 14x14 = 196; scale with the grid, keep at least 4 and at most 16."""
    return int(min(16, max(4, round(16 * plane_tokens / 196))))


class BlockMasker(Masker):
    name = "block"
    design_budget = (800, "block masking was ablated in MAE at 800 epochs")
    description = ("Random rectangles on the token grid (BEiT block-wise) or random coarse cells (SimMIM), "
                   "fixed up to the exact count; 3-D grids get tubes.")
    reference = ("Bao et al., BEiT: BERT Pre-Training of Image Transformers, ICLR 2022; "
                 "Xie et al., SimMIM, CVPR 2022")
    needs_grid = True
    grid_ranks = (1, 2, 3)
    Config = BlockMaskConfig

    def plan(self, ctx: MaskContext) -> MaskPlan:
        (h, w), repeats, t_axis = plane_of(ctx.layout)
        n_mask = ctx.n_mask
        per_slice = min(h * w, n_mask // repeats)
        if self.config.mode == "simmim":
            raw = self._coarse_cells(ctx, h, w, per_slice)
        else:
            raw = self._rectangles(ctx, h, w, per_slice)
        plane = exact_mask(raw, per_slice, ctx)  # (B, h, w)
        if repeats == 1:
            blocks = raw.reshape(ctx.batch_size, -1)
            final = plane.reshape(ctx.batch_size, -1)
        else:
            tubes = plane.unsqueeze(t_axis + 1).expand(*self._grid_shape(ctx, t_axis, plane))
            blocks = raw.unsqueeze(t_axis + 1).expand_as(tubes).reshape(ctx.batch_size, -1)
            final = exact_mask(tubes.contiguous(), n_mask, ctx).reshape(ctx.batch_size, -1)
        plan = MaskPlan.from_scores(final.float(), n_mask)
        fixed = (final & ~blocks).sum(dim=1).float() + (blocks & ~final).sum(dim=1).float()
        plan.logs["block_fixup_frac"] = (fixed / max(1, n_mask)).mean()
        return plan

    @staticmethod
    def _grid_shape(ctx: MaskContext, t_axis: int, plane: Tensor) -> tuple[int, ...]:
        shape = list(plane.shape)
        shape.insert(t_axis + 1, ctx.layout.grid[t_axis])  # type: ignore[index]
        return tuple(shape)

    # ----------------------------------------------------------------------------------- BEiT
    def _rectangles(self, ctx: MaskContext, h: int, w: int, target: int) -> Tensor:
        """Place one rectangle per sample per round, accepting it when it adds between 1 and the
        remaining number of tokens (a sample with fewer than a smallest rectangle left rarely fits
        another one; the fix-up grows its region instead).

        The random numbers of every round are one global-batch draw; rounds run with no host sync
        (a fixed number of rounds, no data-dependent early exit), so every rank draws exactly what
        one process with the global batch draws.
        """
        b, device = ctx.batch_size, ctx.device
        mask = torch.zeros(b, h, w, dtype=torch.bool, device=device)
        if target == 0:
            return mask
        cfg = self.config
        min_area = min(cfg.min_block_tokens or default_min_block(h * w), target)
        max_area = min(cfg.max_block_tokens or target, target)
        max_area = max(max_area, min_area)
        rounds = cfg.max_rounds or min(100, 2 * math.ceil(target / min_area) + 10)
        log_lo, log_hi = math.log(cfg.aspect_min), -math.log(cfg.aspect_min)
        rows = torch.arange(h, device=device).view(1, h, 1)
        cols = torch.arange(w, device=device).view(1, 1, w)
        u = ctx.uniform(b, rounds, 4)  # (B, R, 4): area, aspect, y, x of every round, one draw
        aspect = torch.exp(log_lo + u[..., 1] * (log_hi - log_lo))
        count = torch.zeros(b, dtype=torch.long, device=device)
        for r in range(rounds):  # loop over rounds (not samples): each depends on the ones before
            remaining = target - count
            upper = remaining.clamp(max=max_area).clamp(min=min_area).float()
            area = min_area + u[:, r, 0] * (upper - min_area)
            rh = torch.round(torch.sqrt(area * aspect[:, r])).clamp(1, h)
            rw = torch.round(area / rh).clamp(1, w)
            if cfg.placement == "clipped":  # any overlap with the grid: every cell equally likely
                y0 = torch.floor(u[:, r, 2] * (h + rh - 1)) - (rh - 1)
                x0 = torch.floor(u[:, r, 3] * (w + rw - 1)) - (rw - 1)
            else:  # inside the grid (BEiT): central cells are covered more often
                y0 = torch.floor(u[:, r, 2] * (h - rh + 1))
                x0 = torch.floor(u[:, r, 3] * (w - rw + 1))
            y0, x0 = y0.long().view(b, 1, 1), x0.long().view(b, 1, 1)
            rh, rw = rh.long().view(b, 1, 1), rw.long().view(b, 1, 1)
            rect = (rows >= y0) & (rows < y0 + rh) & (cols >= x0) & (cols < x0 + rw)
            new = (rect & ~mask).sum(dim=(1, 2))
            accept = (new > 0) & (new <= remaining)
            mask |= rect & accept.view(b, 1, 1)
            count += new * accept
        return mask

    # --------------------------------------------------------------------------------- SimMIM
    def _coarse_cells(self, ctx: MaskContext, h: int, w: int, target: int) -> Tensor:
        """Hide random coarse cells (edge cells may be partial) until at least ``target`` tokens."""
        b, device = ctx.batch_size, ctx.device
        k = self.config.mask_patch_size
        ch, cw = math.ceil(h / k), math.ceil(w / k)
        side_h = (h - torch.arange(ch, device=device) * k).clamp(max=k)
        side_w = (w - torch.arange(cw, device=device) * k).clamp(max=k)
        sizes = (side_h.view(-1, 1) * side_w.view(1, -1)).reshape(-1)  # tokens per cell
        order = ctx.uniform(b, ch * cw).argsort(dim=1)
        sorted_sizes = sizes[order]
        before = sorted_sizes.cumsum(dim=1) - sorted_sizes
        chosen = torch.zeros(b, ch * cw, dtype=torch.bool, device=device)
        chosen.scatter_(1, order, before < target)
        cells = chosen.view(b, ch, cw)
        return cells.repeat_interleave(k, dim=1).repeat_interleave(k, dim=2)[:, :h, :w]


__all__ = ["BlockMaskConfig", "BlockMasker", "exact_mask", "fixup_scores", "neighbour_count", "plane_of"]
