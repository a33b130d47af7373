"""Signals a masker reads from the model's attention (kernel-level, so maskers and the lab share one
definition).

The exploitation rate is the Self-Guided MAE paper's measure of how much the decoder's mask-token
queries draw on visible tokens versus other mask tokens. The paper sees visible tokens lead early in
training and mask tokens overtake them once the encoder has begun to cluster tokens; the
``start=exploitation`` rule of the self-guided masker waits for that crossover.
"""

from __future__ import annotations

import torch
from torch import Tensor

from maskkit.maskers.graph import fp32


@fp32
def exploitation_rates(attentions: list[Tensor], mask: Tensor, num_prefix: int = 0,
                       per_key_normalized: bool = False) -> tuple[Tensor, Tensor]:
    """Per decoder layer: how much the masked positions' queries attend to visible tokens (R_V->O) and
    to mask tokens (R_M->O). Returns two (layers,) tensors averaged over the batch.

    Attention to prefix tokens (CLS, at index 0 when the model has one) counts for neither.
    ``per_key_normalized`` divides each sum by the number of visible / mask keys; without it uniform
    attention at 75 % masking already gives 0.25 vs 0.75.
    """
    m = mask.float()
    v = 1.0 - m
    queries = m.sum(1).clamp_min(1.0)
    visible_rates, mask_rates = [], []
    for attn in attentions:
        a = attn.float().mean(1)[:, num_prefix:, num_prefix:]  # (B, N, N)
        to_visible = (a @ v.unsqueeze(-1)).squeeze(-1)
        to_mask = (a @ m.unsqueeze(-1)).squeeze(-1)
        if per_key_normalized:
            to_visible = to_visible / v.sum(1, keepdim=True).clamp_min(1.0)
            to_mask = to_mask / m.sum(1, keepdim=True).clamp_min(1.0)
        visible_rates.append(((to_visible * m).sum(1) / queries).mean())
        mask_rates.append(((to_mask * m).sum(1) / queries).mean())
    return torch.stack(visible_rates), torch.stack(mask_rates)
