"""Original / masked / reconstruction pictures for any modality, from a run's parts or a checkpoint."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from maskkit.errors import DataError
from maskkit.losses import Loss
from maskkit.maskers.base import Masker, TrainingProgress
from maskkit.modality import MaskkitDataset, Modality, VisualBatch
from maskkit.model.mae import MaskedAutoencoder
from maskkit.train.step import build_context


def pick_samples(dataset: MaskkitDataset, num_samples: int) -> torch.Tensor:
    """Evenly spaced samples (so several classes show up, and the same ones every time), stacked into a
    batch; augmentation is drawn as in epoch 0, so pictures and probes compare across checkpoints."""
    n = len(dataset)
    if n == 0:
        raise DataError("cannot pick samples from an empty dataset")
    idx = torch.linspace(0, n - 1, min(num_samples, n)).round().long().tolist()
    saved = getattr(dataset, "epoch", None)
    if saved is not None:
        dataset.epoch = 0
    try:
        return torch.stack([_input_of(dataset[i]) for i in idx])
    finally:
        if saved is not None:
            dataset.epoch = saved


def _input_of(item: Any) -> torch.Tensor:
    return item[0] if isinstance(item, (tuple, list)) else item


@torch.no_grad()
def build_visual_batch(model: MaskedAutoencoder, loss: Loss, masker: Masker, mask_ratio: float,
                       x: torch.Tensor, seed: int = 0, progress: TrainingProgress | None = None,
                       fill_value: float = 0.0) -> VisualBatch:
    model.eval()
    device = next(model.parameters()).device
    x = x.to(device)
    tokens = model.tokenize(x)
    generator = torch.Generator(device=device).manual_seed(seed)
    ctx = build_context(model, tokens, mask_ratio, generator, progress or TrainingProgress())
    extra = masker.explain(ctx) or None  # cluster ids, informed mask, hints... as (B, N) maps
    generator.manual_seed(seed)  # the plan below draws as if explain had not run
    plan = masker(ctx)
    out = model(tokens, plan)
    pred = loss.to_sample_space(out.pred, tokens.targets)
    hidden = plan.mask.unsqueeze(-1)
    masked = torch.where(hidden, torch.full_like(tokens.targets, fill_value), tokens.targets)
    pasted = torch.where(hidden, pred.to(tokens.targets.dtype), tokens.targets)
    return VisualBatch(inputs=x, tokens=tokens, plan=plan, pred_targets=pred, masked_targets=masked,
                       pasted_targets=pasted, tokenizer=model.tokenizer, extra_rows=extra)


def render_reconstructions(parts, path: Path, device: torch.device, num_samples: int = 8, seed: int = 0,
                           masker: Masker | None = None) -> Path:
    """Picture of a run's model on a few samples of its data (used at the end of training)."""
    x = pick_samples(parts.dataset, num_samples)
    model = parts.model
    was_training = model.training
    batch = build_visual_batch(model, parts.loss, masker or parts.masker, parts.mask_ratio, x.to(device),
                               seed=seed)
    model.train(was_training)
    return render(parts.modality, batch, path)


def render(modality: Modality, batch: VisualBatch, path: Path, title: str | None = None) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return modality.render(batch, path, title=title)
