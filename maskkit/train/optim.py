"""The optimiser: AdamW parameter groups as MAE sets them, and one guarded optimiser step.

``optimizer_step(t)`` takes the ``Trainer`` (typed ``Any``: importing it here would close an import cycle).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from maskkit.train import distributed as dist_utils
from maskkit.train.schedule import lr_at

if TYPE_CHECKING:
    from maskkit.train.config import TrainConfig


class TrainingStopped(RuntimeError):
    """Raised when the run stops on purpose (non-finite loss with on_nonfinite=stop)."""


def param_groups(module: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """No weight decay on biases, norms, tokens and position tables (as MAE does)."""
    decay, no_decay = [], []
    for name, p in module.named_parameters():
        if not p.requires_grad:
            continue
        if p.ndim <= 1 or name.endswith(("cls_token", "mask_token")) or "pos" in name.split(".")[-1] \
                or name.endswith("_pos.table"):
            no_decay.append(p)
        else:
            decay.append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def build_optimizer(module: nn.Module, cfg: TrainConfig, lr: float, device: torch.device,
                    amp_dtype: torch.dtype | None) -> tuple[torch.optim.AdamW, torch.amp.GradScaler | None]:
    """AdamW (fused on CUDA unless FSDP) and, for fp16, the gradient scaler."""
    fused = device.type == "cuda" and cfg.strategy != "fsdp"
    optimizer = torch.optim.AdamW(param_groups(module, cfg.weight_decay), lr=lr, betas=cfg.betas,
                                  fused=fused or None, foreach=None if fused else True)
    scaler = torch.amp.GradScaler(device.type) if amp_dtype == torch.float16 else None
    return optimizer, scaler


def optimizer_step(t: Any) -> None:
    """Schedule, unscale, clip, then step unless the loss or gradient is non-finite (``on_nonfinite``)."""
    cfg = t.config
    lr = lr_at(t.opt_step, t.total_opt_steps, t.warmup_opt_steps, t.peak_lr, cfg.min_lr)
    for group in t.optimizer.param_groups:
        group["lr"] = lr
    if t.scaler is not None:
        t.scaler.unscale_(t.optimizer)
    params = [p for g in t.optimizer.param_groups for p in g["params"] if p.grad is not None]
    max_norm = cfg.clip_grad if cfg.clip_grad is not None else float("inf")
    grad_norm = torch.nn.utils.clip_grad_norm_(params, max_norm)
    # the one deliberate host sync per optimiser step: a non-finite step must never be applied.
    # With fp16's GradScaler, inf/NaN gradients from a finite loss are the scaler's overflow
    # (it skips that step and lowers the scale): only a non-finite *loss* is a real failure
    # there. The loss is reduced over ranks so every rank takes the same branch.
    if t.scaler is not None:
        group_loss = dist_utils.all_reduce_mean(t._group_loss, t.dist)
        finite = bool(torch.isfinite(group_loss))
    else:
        finite = bool(torch.isfinite(grad_norm))
    if not finite:
        _skip_nonfinite(t)
        return
    if t.scaler is not None:
        t.scaler.step(t.optimizer)
        t.scaler.update()
    else:
        t.optimizer.step()
    t.optimizer.zero_grad(set_to_none=True)
    t.opt_step += 1


def _skip_nonfinite(t: Any) -> None:
    cfg = t.config
    t.metrics.write({"type": "nonfinite", "epoch": t.epoch, "step": t.global_step, "policy": cfg.on_nonfinite})
    t.optimizer.zero_grad(set_to_none=True)
    if t.scaler is not None:
        t.scaler.update()
    if cfg.on_nonfinite == "stop":
        raise TrainingStopped(f"non-finite loss or gradient at epoch {t.epoch} step {t.global_step}; "
                              f"stopped (last good checkpoint kept in {t.out / 'checkpoints'})")
    if t.console is not None and t.dist.is_main:
        t.console.print(f"[yellow]warning:[/] non-finite loss or gradient at step {t.global_step}; step skipped")
