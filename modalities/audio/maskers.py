"""Spectrogram maskers. Unstructured random masking is the core ``random`` masker (Audio-MAE's
pre-training default, ratio 0.8); this module adds Audio-MAE's time/frequency stripes.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from maskkit.errors import ConfigError
from maskkit.maskers.base import MaskContext, Masker, MaskPlan


def ranks(values: Tensor) -> Tensor:
    """Rank of every entry along the last axis (0 = smallest), as float."""
    return values.argsort(dim=-1).argsort(dim=-1).float()


@dataclass
class TimeFreqConfig:
    """``time_prob``/``freq_prob``: chance that a whole time column / frequency row is hidden.

    Leave both unset to derive one probability ``p = 1 - sqrt(1 - ratio)`` for both, so the expected
    union of stripes equals the mask ratio and the exact-count fix-up stays small.
    """

    time_prob: float | None = None
    freq_prob: float | None = None

    def __post_init__(self) -> None:
        for name in ("time_prob", "freq_prob"):
            value = getattr(self, name)
            if value is not None and not 0.0 <= value <= 1.0:
                raise ConfigError(f"`masker.{name}` must be in [0, 1], got {value}")
        if self.time_prob == 0.0 and self.freq_prob == 0.0:
            raise ConfigError("`masker.time_prob` and `masker.freq_prob` cannot both be 0")


class TimeFreqMasker(Masker):
    """Hide whole time columns and frequency rows (independent draws), then fix up to the exact count.

    Each column and each row gets a strength ``prob - u`` (``u`` uniform); a stripe is drawn when its
    strength is positive. All stripes are ranked by strength and every token scores the rank of its
    strongest stripe (plus in-[0, 1) noise), so taking the top ``n_mask`` scores hides the drawn stripes
    and, to hit the exact count, adds the next-strongest stripes or drops the weakest ones; only one
    boundary stripe ends up partly hidden, at random tokens. Works on any (time, freq) grid.
    """

    name = "time-freq"
    description = "Audio-MAE stripes: whole time columns and mel rows; exact count via a partial stripe."
    reference = "Huang et al., Masked Autoencoders that Listen, NeurIPS 2022 (2-D masking)"
    needs_grid = True
    grid_ranks = (2,)
    Config = TimeFreqConfig

    def probabilities(self, ratio: float) -> tuple[float, float]:
        cfg: TimeFreqConfig = self.config
        derived = 1.0 - (1.0 - ratio) ** 0.5
        pt = cfg.time_prob if cfg.time_prob is not None else derived
        pf = cfg.freq_prob if cfg.freq_prob is not None else derived
        return pt, pf

    def plan(self, ctx: MaskContext) -> MaskPlan:
        layout = ctx.layout
        t_axis = layout.axis_index("time") if "time" in layout.axes else 0
        f_axis = 1 - t_axis
        grid = layout.grid
        assert grid is not None
        n_t, n_f = grid[t_axis], grid[f_axis]
        b = ctx.batch_size
        pt, pf = self.probabilities(ctx.mask_ratio)
        strength_t = pt - ctx.uniform(b, n_t)
        strength_f = pf - ctx.uniform(b, n_f)
        rank = ranks(torch.cat([strength_t, strength_f], dim=1))  # (B, n_t + n_f)
        # a disabled axis never contributes stripes, not even in the fix-up
        if pt == 0.0:
            rank[:, :n_t] = -1.0
        if pf == 0.0:
            rank[:, n_t:] = -1.0
        rank_t, rank_f = rank[:, :n_t], rank[:, n_t:]
        shape = (b, n_t, n_f) if t_axis == 0 else (b, n_f, n_t)
        col = rank_t.unsqueeze(2) if t_axis == 0 else rank_t.unsqueeze(1)
        row = rank_f.unsqueeze(1) if t_axis == 0 else rank_f.unsqueeze(2)
        score = torch.maximum(col.expand(shape), row.expand(shape)) + ctx.uniform(*shape)
        plan = MaskPlan.from_scores(score.reshape(b, -1), ctx.n_mask)
        union = self._drawn_union(strength_t, strength_f, t_axis)
        # share of tokens the fix-up had to add or drop (0 = the drawn stripes matched the count)
        plan.logs["stripe_fixup"] = (union.sum(1).float() - ctx.n_mask).abs().mean() / ctx.num_tokens
        return plan

    @staticmethod
    def _drawn_union(strength_t: Tensor, strength_f: Tensor, t_axis: int) -> Tensor:
        """(B, N) union of the drawn stripes before the exact-count fix-up (for the log)."""
        col, row = strength_t > 0, strength_f > 0
        if t_axis == 0:
            union = col.unsqueeze(2) | row.unsqueeze(1)
        else:
            union = row.unsqueeze(2) | col.unsqueeze(1)
        return union.reshape(strength_t.shape[0], -1)


__all__ = ["TimeFreqConfig", "TimeFreqMasker", "ranks"]
