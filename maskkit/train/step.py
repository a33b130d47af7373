"""One masked-modelling step as a module: tokenize -> mask -> encode/decode -> loss.

Everything that has parameters (model, masker, loss) sits under this module, so DDP/FSDP wrap
one object and every gradient (including learned maskers' auxiliary losses) is synchronised.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from maskkit.losses import Loss
from maskkit.masking.base import MaskContext, Masker, MaskPlan, TrainingProgress
from maskkit.model.mae import MAEOutput, MaskedAutoencoder
from maskkit.model.view import TokenModelView
from maskkit.tokens import TokenBatch


@dataclass
class StepOutput:
    loss: Tensor  # total loss to back-propagate (reconstruction + masker auxiliary)
    recon_loss: Tensor
    per_token: Tensor
    plan: MaskPlan
    tokens: TokenBatch
    output: MAEOutput
    logs: dict[str, Tensor | float] = field(default_factory=dict)


def make_context(model: MaskedAutoencoder, tokens: TokenBatch, mask_ratio: float,
                 generator: torch.Generator, progress: TrainingProgress,
                 rank: int = 0, world_size: int = 1) -> MaskContext:
    """Context whose model view runs the model lazily (no grad), only when a masker asks."""
    return MaskContext(
        batch_size=tokens.batch_size, num_tokens=tokens.num_tokens, mask_ratio=mask_ratio,
        layout=tokens.layout, positions=tokens.positions, generator=generator,
        device=tokens.embeddings.device, progress=progress, tokens=tokens,
        model=TokenModelView(model, tokens), rank=rank, world_size=world_size,
    )


class TrainingModule(nn.Module):
    def __init__(self, model: MaskedAutoencoder, masker: Masker, loss: Loss, mask_ratio: float) -> None:
        super().__init__()
        self.model = model
        self.masker = masker
        self.loss_fn = loss
        self.mask_ratio = mask_ratio
        self.rank = 0  # set by the trainer under data parallelism (see MaskContext.uniform)
        self.world_size = 1

    def forward(self, x: Tensor, generator: torch.Generator, progress: TrainingProgress) -> StepOutput:
        tokens = self.model.tokenize(x)
        ctx = make_context(self.model, tokens, self.mask_ratio, generator, progress,
                           rank=self.rank, world_size=self.world_size)
        plan = self.masker(ctx)
        out = self.model(tokens, plan)
        recon = self.loss_fn(out.pred, tokens.targets, plan)
        total = recon.loss
        logs: dict[str, Tensor | float] = dict(plan.logs)
        if plan.aux_loss is not None:
            total = total + plan.aux_loss
            logs["masker_aux_loss"] = plan.aux_loss.detach()
        extra = self.masker.auxiliary_loss(ctx, plan, out, recon.per_token)
        if extra is not None:
            total = total + extra
            logs["masker_aux_loss"] = extra.detach()
        return StepOutput(loss=total, recon_loss=recon.loss, per_token=recon.per_token, plan=plan,
                          tokens=tokens, output=out, logs=logs)
