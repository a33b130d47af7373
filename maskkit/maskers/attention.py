"""Attention-guided masking (AttMask): hide the tokens the model's own encoder attends to most.

AttMask scores tokens by a teacher's last-layer CLS-to-patch attention; maskkit has no teacher in
an MAE, so the score comes from the current encoder's no-grad attention on the full input (like
AMT). Without a CLS token the score is the mean attention each token receives.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

from maskkit.config_utils import ConfigError
from maskkit.maskers.base import MaskContext, Masker, MaskPlan, exact_topk_plan
from maskkit.maskers.compose import apply_hints


@dataclass(frozen=True)
class AttentionConfig:
    """``mode`` high hides the most attended tokens, low the least. ``hint_ratio`` reveals that
    fraction of the informed mask (re-hidden elsewhere at random). ``masking_prob`` is the
    per-sample probability of the informed mask (else random). ``score`` auto = CLS attention when
    the model has a CLS token, else attention received."""

    mode: Literal["high", "low"] = "high"
    layer: int = -1
    hint_ratio: float = 0.0
    masking_prob: float = 1.0
    score: Literal["auto", "cls", "received"] = "auto"

    def __post_init__(self) -> None:
        if not 0.0 <= self.hint_ratio <= 1.0:
            raise ConfigError(f"`masker.hint_ratio` must be in [0, 1], got {self.hint_ratio}")
        if not 0.0 <= self.masking_prob <= 1.0:
            raise ConfigError(f"`masker.masking_prob` must be in [0, 1], got {self.masking_prob}")


def attention_scores(attn: Tensor, num_tokens: int, score: str = "auto") -> Tensor:
    """(B, H, P+N, P+N) attention -> (B, N) per-token score, P = prefix tokens (CLS) in front.

    ``cls``: CLS-to-token attention averaged over heads (AttMask). ``received``: attention each
    token receives, averaged over heads and over the token queries.
    """
    prefix = attn.shape[-1] - num_tokens
    if prefix < 0:
        raise ValueError(f"attention covers {attn.shape[-1]} tokens, fewer than the {num_tokens} to mask")
    if score == "auto":
        score = "cls" if prefix > 0 else "received"
    attn = attn.float().mean(dim=1)  # heads
    if score == "cls":
        if prefix == 0:
            raise ConfigError("`masker.score` cls needs a CLS token, but the model has none")
        return attn[:, 0, prefix:]
    return attn[:, prefix:, prefix:].mean(dim=1)


class AttentionMasker(Masker):
    name = "attention"
    description = ("AttMask-style: hide the tokens the current encoder attends to most (or least), "
                   "from a no-grad pass over the full input; optional hints and per-sample probability.")
    reference = ("Kakogeorgiou et al., What to Hide from Your Students: Attention-Guided Masked Image "
                 "Modeling, ECCV 2022")
    needs_model = True
    Config = AttentionConfig

    def plan(self, ctx: MaskContext) -> MaskPlan:
        cfg = self.config
        scores = attention_scores(ctx.attention(cfg.layer), ctx.num_tokens, cfg.score)
        if cfg.mode == "low":
            scores = -scores
        plan = exact_topk_plan(scores, ctx.n_mask, ctx, jitter=1e-6 / ctx.num_tokens)
        plan = apply_hints(plan, cfg.hint_ratio, ctx)
        if cfg.masking_prob < 1.0:
            use = ctx.uniform(ctx.batch_size, 1) < cfg.masking_prob
            random_mask = MaskPlan.from_shuffle(ctx.uniform(ctx.batch_size, ctx.num_tokens).argsort(dim=1),
                                                ctx.n_keep).mask
            mask = torch.where(use, plan.mask, random_mask)
            plan = MaskPlan.from_scores(mask.float(), ctx.n_mask)
            plan.logs["informed_fraction"] = use.float().mean()
        return plan
