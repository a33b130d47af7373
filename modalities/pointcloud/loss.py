"""Chamfer-L2 loss between predicted and true point groups (Point-MAE): point clouds only, so it lives
with the point-cloud modality."""

from __future__ import annotations

import torch
from torch import Tensor

from maskkit.losses import Loss, LossOutput, masked_mean
from maskkit.plan import MaskPlan


def chamfer_l2(pred: Tensor, target: Tensor) -> tuple[Tensor, Tensor]:
    """Squared-distance Chamfer terms between point sets (..., P, 3) and (..., Q, 3).

    Returns (pred->target mean nearest sq. distance, target->pred mean nearest sq. distance),
    each averaged over its points, shaped like the leading dims.
    """
    d = torch.cdist(pred.float(), target.float()).pow(2)
    return d.min(dim=-1).values.mean(dim=-1), d.min(dim=-2).values.mean(dim=-1)


class ChamferLoss(Loss):
    """Chamfer distance (L2) between predicted and true local point groups (Point-MAE)."""

    def __init__(self, point_dim: int = 3) -> None:
        super().__init__()
        self.point_dim = point_dim

    def forward(self, pred: Tensor, targets: Tensor, plan: MaskPlan) -> LossOutput:
        b, n, _ = targets.shape
        p = pred.reshape(b, n, -1, self.point_dim)
        t = targets.reshape(b, n, -1, self.point_dim)
        forward, backward = chamfer_l2(p, t)
        per_token = forward + backward
        return LossOutput(loss=masked_mean(per_token, plan), per_token=per_token)
