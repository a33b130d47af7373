"""Reconstruction losses (modality-neutral; a modality with its own loss keeps it in its package, e.g. Chamfer
with point clouds). Each returns the scalar loss and the per-token loss (for maskers and logs)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from maskkit.plan import MaskPlan


@dataclass
class LossOutput:
    loss: Tensor  # scalar: mean over hidden tokens
    per_token: Tensor  # (B, N) loss of every token (visible ones included, for diagnostics)


class Loss(nn.Module):
    """``forward(pred, targets, plan)``; ``to_sample_space`` undoes any target normalisation."""

    def forward(self, pred: Tensor, targets: Tensor, plan: MaskPlan) -> LossOutput:
        raise NotImplementedError

    def to_sample_space(self, pred: Tensor, targets: Tensor) -> Tensor:
        """Map predictions back to raw target units (for pictures); identity by default."""
        return pred


def masked_mean(per_token: Tensor, plan: MaskPlan) -> Tensor:
    weight = plan.mask.to(per_token.dtype)
    return (per_token * weight).sum() / weight.sum().clamp_min(1.0)


class ReconstructionMSE(Loss):
    """MSE on hidden tokens; with ``norm_pix`` the targets are normalised per token (MAE's
    recommended default, which sharpens high-frequency detail)."""

    def __init__(self, norm_pix: bool = True, eps: float = 1e-6) -> None:
        super().__init__()
        self.norm_pix = norm_pix
        self.eps = eps

    def normalise(self, targets: Tensor) -> Tensor:
        if not self.norm_pix:
            return targets
        mean = targets.mean(dim=-1, keepdim=True)
        var = targets.var(dim=-1, keepdim=True, unbiased=True) if targets.shape[-1] > 1 else torch.ones_like(mean)
        return (targets - mean) / (var + self.eps).sqrt()

    def forward(self, pred: Tensor, targets: Tensor, plan: MaskPlan) -> LossOutput:
        target = self.normalise(targets.float())
        per_token = (pred.float() - target).pow(2).mean(dim=-1)
        return LossOutput(loss=masked_mean(per_token, plan), per_token=per_token)

    def to_sample_space(self, pred: Tensor, targets: Tensor) -> Tensor:
        if not self.norm_pix:
            return pred
        targets = targets.float()
        mean = targets.mean(dim=-1, keepdim=True)
        var = targets.var(dim=-1, keepdim=True, unbiased=True) if targets.shape[-1] > 1 else torch.ones_like(mean)
        return pred.float() * (var + self.eps).sqrt() + mean
