"""Learned token sampler (AdaMAE): a small network scores tokens, the mask is a draw without
replacement (Gumbel-top-k), and a REINFORCE-style term trains the network from reconstruction error.

The sampler reads the tokenizer's embeddings (detached) plus parameter-free Fourier features of
token positions, so it needs no model features and works for any modality. Its last layer starts
near zero, so training begins with (almost) uniform random masking.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from maskkit.config_utils import ConfigError
from maskkit.maskers.base import MaskContext, Masker, MaskPlan, ModelShape, gumbel_scores
from maskkit.maskers.hard_patches import input_layer, materialize
from maskkit.model.vit import Block


def position_features(positions: Tensor, width: int) -> Tensor:
    """(B, N, k) coordinates -> (B, N, width) sin/cos features, parameter-free and unit-free.

    Each sample's coordinates are centred and scaled to [-1, 1] per axis; frequencies grow
    geometrically from pi up to about the number of tokens per axis, so neighbouring tokens differ.
    """
    b, n, k = positions.shape
    per_axis = width // (2 * k)
    if per_axis == 0:
        return positions.new_zeros(b, n, width)
    centred = positions - positions.mean(dim=1, keepdim=True)
    unit = centred / centred.abs().amax(dim=1, keepdim=True).clamp_min(1e-6)
    top = max(2.0, 2.0 * n ** (1.0 / k))
    freqs = math.pi * top ** (torch.arange(per_axis, device=positions.device, dtype=unit.dtype)
                              / max(1, per_axis - 1))
    angles = unit.unsqueeze(-1) * freqs  # (B, N, k, F)
    feats = torch.cat([angles.sin(), angles.cos()], dim=-1).reshape(b, n, -1)
    return F.pad(feats, (0, width - feats.shape[-1]))


class SamplerNet(nn.Module):
    """Embeddings + positions -> one transformer block -> one logit per token (AdaMAE's sampler)."""

    def __init__(self, hidden: int, heads: int, in_dim: int = 0) -> None:
        super().__init__()
        self.hidden = hidden
        self.embed = input_layer(in_dim, hidden)
        self.block = Block(hidden, heads)
        self.norm = nn.LayerNorm(hidden)
        self.head = nn.Linear(hidden, 1, bias=False)  # softmax ignores a shared shift
        nn.init.normal_(self.head.weight, std=1e-3)

    def forward(self, embeddings: Tensor, positions: Tensor) -> Tensor:
        dtype = self.head.weight.dtype
        x = F.layer_norm(embeddings.to(dtype), embeddings.shape[-1:])
        x = self.embed(x) + position_features(positions.to(dtype), self.hidden)
        return self.head(self.norm(self.block(x))).squeeze(-1)


@dataclass(frozen=True)
class LearnedConfig:
    """``draw`` masked: the logits rank tokens to hide (the sampler learns to hide high-error
    tokens); visible: they rank tokens to show, as in AdaMAE's code. ``reward`` ratio: error /
    its mean over hidden tokens; zscore: centred and scaled (lower-variance). ``loss_weight``:
    AdaMAE's 1e-4. ``feature_dim`` 0 = embedding width found at first use."""

    hidden: int = 64
    heads: int = 4
    draw: Literal["masked", "visible"] = "masked"
    reward: Literal["ratio", "zscore"] = "ratio"
    loss_weight: float = 1e-4
    temperature: float = 1.0
    feature_dim: int = 0

    def __post_init__(self) -> None:
        if self.hidden < 2 or self.heads < 1 or self.hidden % self.heads:
            raise ConfigError(f"`masker.hidden` ({self.hidden}) must be >= 2 and divisible by "
                              f"`masker.heads` ({self.heads})")
        if self.temperature <= 0:
            raise ConfigError(f"`masker.temperature` must be > 0, got {self.temperature}")
        if self.loss_weight < 0:
            raise ConfigError(f"`masker.loss_weight` must be >= 0, got {self.loss_weight}")


class LearnedMasker(Masker):
    name = "learned"
    design_budget = (800, "AdaMAE uses 800 epochs")
    description = ("AdaMAE-style learned sampler: a one-block network gives token logits, masks are "
                   "Gumbel-top-k draws, trained by a REINFORCE term on reconstruction error.")
    reference = ("Bandara et al., AdaMAE: Adaptive Masking for Efficient Spatiotemporal Learning with "
                 "MAEs, CVPR 2023")
    Config = LearnedConfig

    def __init__(self, config: LearnedConfig | None = None) -> None:
        super().__init__(config)
        cfg = self.config
        self.sampler = SamplerNet(cfg.hidden, cfg.heads, cfg.feature_dim)

    def bind_model(self, shape: ModelShape) -> None:
        """Shape the input layer from the model's width before the optimiser/DDP are built."""
        materialize(self.sampler.embed, shape.embed_dim)

    def all_parameters_used(self) -> bool:
        return self.config.loss_weight > 0  # the sampler trains only through its auxiliary loss

    def log_probs(self, ctx: MaskContext) -> Tensor:
        if ctx.tokens is None:
            raise RuntimeError("masker 'learned' needs the token embeddings (ctx.tokens)")
        logits = self.sampler(ctx.tokens.embeddings.detach(), ctx.batched_positions())
        return F.log_softmax(logits.float() / self.config.temperature, dim=1)

    def plan(self, ctx: MaskContext) -> MaskPlan:
        log_p = self.log_probs(ctx)
        scores = gumbel_scores(log_p.detach(), ctx)  # global-batch draw
        if self.config.draw == "visible":  # top n_keep draws stay visible
            scores = -scores
        plan = MaskPlan.from_scores(scores, ctx.n_mask)
        plan.log_prob = log_p
        with torch.no_grad():
            entropy = -(log_p.exp() * log_p).sum(dim=1).mean()
        plan.logs["sampler_entropy"] = entropy / math.log(ctx.num_tokens)
        return plan

    def auxiliary_loss(self, ctx: MaskContext, plan: MaskPlan, output: Any,
                       per_token_loss: Tensor) -> Tensor | None:
        """-(mean over hidden tokens of log p(token) * normalised error): raises the probability of
        hidden tokens that were hard to reconstruct."""
        if self.config.loss_weight == 0:
            return None
        log_p = plan.log_prob if plan.log_prob is not None else self.log_probs(ctx)
        err = per_token_loss.detach().float().gather(1, plan.ids_mask)
        if self.config.reward == "zscore":
            spread = err.std(dim=1, keepdim=True, unbiased=False)
            reward = (err - err.mean(dim=1, keepdim=True)) / (spread + 1e-6)
        else:
            reward = err / err.mean(dim=1, keepdim=True).clamp_min(1e-12)
        loss = -(log_p.gather(1, plan.ids_mask) * reward).mean()
        return self.config.loss_weight * loss
