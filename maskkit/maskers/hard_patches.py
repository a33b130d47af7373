"""Hard-patch mining (HPM): a small head predicts which tokens will be hard to reconstruct, and an
easy-to-hard schedule hides a growing share of those.

HPM trains a second decoder on an EMA model; here the predictor is a small MLP (part of the masker,
trained by the masker's auxiliary loss) on no-grad encoder features of the full input, which the
step computes anyway for informed masking. It learns the *order* of per-token reconstruction
losses with HPM's relative (pairwise BCE) objective, so the loss scale does not matter.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from maskkit.config_utils import ConfigError
from maskkit.maskers.base import MaskContext, Masker, MaskPlan, ModelShape, TrainingProgress, uniform_from


def input_layer(in_dim: int, out_dim: int) -> nn.Module:
    """Linear layer whose input width is found at the first call when ``in_dim`` is 0."""
    return nn.LazyLinear(out_dim) if in_dim <= 0 else nn.Linear(in_dim, out_dim)


def materialize(layer: nn.Module, in_dim: int) -> None:
    """Give a lazy layer its shape now (before the optimiser or DDP sees it)."""
    if isinstance(layer, nn.modules.lazy.LazyModuleMixin) and layer.has_uninitialized_params():
        ref = next(layer.parameters())
        with torch.no_grad():
            layer(torch.zeros(1, in_dim, device=ref.device, dtype=ref.dtype))


class LossPredictor(nn.Module):
    """(B, N, D) token features -> (B, N) predicted reconstruction loss (a ranking score)."""

    def __init__(self, hidden: int, in_dim: int = 0) -> None:
        super().__init__()
        self.fc1 = input_layer(in_dim, hidden)
        self.fc2 = nn.Linear(hidden, 1)

    def forward(self, features: Tensor) -> Tensor:
        x = F.layer_norm(features.to(self.fc2.weight.dtype), features.shape[-1:])
        return self.fc2(F.gelu(self.fc1(x))).squeeze(-1)


def pairwise_rank_loss(pred: Tensor, target: Tensor, max_pairs: int,
                       generator: MaskContext | torch.Generator | None = None) -> Tensor:
    """HPM's relative loss: BCE of sigmoid(pred_j - pred_i) against [target_j > target_i].

    ``pred``/``target`` are (B, M). All ordered pairs are used while M(M-1) <= ``max_pairs``;
    beyond that ``max_pairs`` random pairs per sample (from the mask context's global-batch draws
    when one is passed). Pairs with equal targets are skipped.
    """
    b, m = pred.shape
    if m * (m - 1) <= max_pairs:
        logits = pred.unsqueeze(1) - pred.unsqueeze(2)  # [b, i, j] = pred_j - pred_i
        t_i, t_j = target.unsqueeze(2), target.unsqueeze(1)
    else:
        if generator is None:
            generator = torch.Generator(device=pred.device).manual_seed(0)
        u = uniform_from(generator, (b, 2 * max_pairs), pred.device)
        ij = (u * m).long().clamp_max(m - 1)
        i, j = ij[:, :max_pairs], ij[:, max_pairs:]
        logits = pred.gather(1, j) - pred.gather(1, i)
        t_i, t_j = target.gather(1, i), target.gather(1, j)
    label = (t_j > t_i).to(logits.dtype)
    valid = (t_j != t_i).to(logits.dtype)
    bce = F.binary_cross_entropy_with_logits(logits, label, reduction="none")
    return (bce * valid).sum() / valid.sum().clamp_min(1.0)


@dataclass(frozen=True)
class HardPatchesConfig:
    """``alpha_max``: final share of the mask chosen by predicted hardness (HPM: 0.5), reached by
    ``schedule`` epoch (alpha = alpha_max (epoch+1)/epochs, HPM), step (by progress fraction) or
    constant. ``layer``: encoder block whose full-input features feed the head. ``max_pairs``:
    pairs per sample in the ranking loss before it samples. ``feature_dim`` 0 = found at first use."""

    alpha_max: float = 0.5
    schedule: Literal["epoch", "step", "constant"] = "epoch"
    layer: int = -1
    hidden: int = 128
    loss_weight: float = 1.0
    max_pairs: int = 16384
    feature_dim: int = 0

    def __post_init__(self) -> None:
        if not 0.0 <= self.alpha_max <= 1.0:
            raise ConfigError(f"`masker.alpha_max` must be in [0, 1], got {self.alpha_max}")
        if self.hidden < 1:
            raise ConfigError(f"`masker.hidden` must be >= 1, got {self.hidden}")
        if self.max_pairs < 1:
            raise ConfigError(f"`masker.max_pairs` must be >= 1, got {self.max_pairs}")
        if self.loss_weight < 0:
            raise ConfigError(f"`masker.loss_weight` must be >= 0, got {self.loss_weight}")


class HardPatchesMasker(Masker):
    name = "hard-patches"
    design_budget = (800, "HPM uses 800 epochs")
    description = ("HPM: a small head learns to rank tokens by reconstruction loss; an easy-to-hard "
                   "schedule hides a growing share of predicted-hard tokens, the rest at random.")
    reference = "Wang et al., Hard Patches Mining for Masked Image Modeling, CVPR 2023"
    needs_model = True
    Config = HardPatchesConfig

    def __init__(self, config: HardPatchesConfig | None = None) -> None:
        super().__init__(config)
        self.head = LossPredictor(self.config.hidden, self.config.feature_dim)

    def bind_model(self, shape: ModelShape) -> None:
        """Shape the head from the model's width before the optimiser/DDP are built."""
        materialize(self.head.fc1, shape.embed_dim)

    def all_parameters_used(self) -> bool:
        return self.config.loss_weight > 0  # the head trains only through its auxiliary loss

    def alpha(self, progress: TrainingProgress) -> float:
        cfg = self.config
        if cfg.schedule == "constant":
            return cfg.alpha_max
        if cfg.schedule == "step":
            return cfg.alpha_max * progress.fraction
        return cfg.alpha_max * min(1.0, (progress.epoch + 1) / max(1, progress.epochs))

    def plan(self, ctx: MaskContext) -> MaskPlan:
        alpha = self.alpha(ctx.progress)
        n_hard = int(alpha * ctx.n_mask)
        score = ctx.uniform(ctx.batch_size, ctx.num_tokens)  # in [0, 1): the random share
        if n_hard > 0:
            with torch.no_grad():
                predicted = self.head(ctx.features(self.config.layer))
            hard = predicted.argsort(dim=1, descending=True)[:, :n_hard]
            score = score.scatter(1, hard, 2.0)  # predicted-hard tokens outrank every random score
        plan = MaskPlan.from_scores(score, ctx.n_mask)
        plan.logs["hpm_alpha"] = torch.full((), alpha, device=ctx.device)  # no host-to-device copy
        return plan

    def auxiliary_loss(self, ctx: MaskContext, plan: MaskPlan, output: Any,
                       per_token_loss: Tensor) -> Tensor | None:
        if self.config.loss_weight == 0:
            return None
        predicted = self.head(ctx.features(self.config.layer))
        pred = predicted.gather(1, plan.ids_mask)
        target = per_token_loss.detach().float().gather(1, plan.ids_mask)
        loss = pairwise_rank_loss(pred.float(), target, self.config.max_pairs, ctx)
        return self.config.loss_weight * loss
