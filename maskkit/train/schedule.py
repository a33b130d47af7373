"""Per-iteration learning rate: linear warmup then half-cycle cosine (as in MAE's recipe)."""

from __future__ import annotations

import math


def lr_at(step: float, total_steps: float, warmup_steps: float, peak_lr: float, min_lr: float = 0.0) -> float:
    """``step`` may be fractional (epoch + fraction, in optimiser steps)."""
    if warmup_steps > 0 and step < warmup_steps:
        return peak_lr * step / warmup_steps
    span = max(total_steps - warmup_steps, 1e-12)
    progress = min(1.0, (step - warmup_steps) / span)
    return min_lr + (peak_lr - min_lr) * 0.5 * (1.0 + math.cos(math.pi * progress))


def scaled_lr(base_lr: float, effective_batch: int) -> float:
    """MAE's linear scaling rule: lr = base_lr * effective_batch / 256."""
    return base_lr * effective_batch / 256.0
