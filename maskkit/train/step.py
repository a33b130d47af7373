"""One masked-modelling step as a module: tokenize -> mask -> encode/decode -> loss.

Everything that has parameters (model, masker, loss) sits under this module, so DDP/FSDP wrap
one object and every gradient (including learned maskers' auxiliary losses) is synchronised.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from maskkit.losses import Loss
from maskkit.maskers.base import MaskContext, Masker, MaskPlan, TrainingProgress
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


def build_context(model: MaskedAutoencoder, tokens: TokenBatch, mask_ratio: float,
                 generator: torch.Generator, progress: TrainingProgress,
                 rank: int = 0, world_size: int = 1,
                 host_generator: torch.Generator | None = None) -> MaskContext:
    """Context whose model view runs the model lazily (no grad), only when a masker asks."""
    return MaskContext(
        batch_size=tokens.batch_size, num_tokens=tokens.num_tokens, mask_ratio=mask_ratio,
        layout=tokens.layout, positions=tokens.positions, generator=generator,
        device=tokens.embeddings.device, progress=progress, tokens=tokens,
        model=TokenModelView(model, tokens), rank=rank, world_size=world_size, host_generator=host_generator,
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
        self._reconstruct: Callable[[TokenBatch, MaskPlan], tuple[MAEOutput, Any]] = self.reconstruct

    def compile_reconstruction(self, backend: str | Callable[..., Any] = "inductor", **options: Any) -> None:
        """``torch.compile`` the encoder, decoder and loss; the masker stays eager.

        Maskers draw from generators, branch on schedules and read Python floats (hint ratios) that
        change every step: compiled, they break the graph at every draw and recompile whenever a
        float changes. The reconstruction sees only tensors of fixed shapes, so it compiles once.
        The policy of one process and DDP; FSDP's is ``maskkit.train.distributed.compile_blocks``.
        """
        self._reconstruct = torch.compile(self.reconstruct, backend=backend, **options)

    def reconstruct(self, tokens: TokenBatch, plan: MaskPlan) -> tuple[MAEOutput, Any]:
        """Encoder on the visible tokens, decoder on all, loss on the hidden ones."""
        out = self.model(tokens, plan)
        return out, self.loss_fn(out.pred, tokens.targets, plan)

    def forward(self, x: Tensor, generator: torch.Generator, progress: TrainingProgress,
                host_generator: torch.Generator | None = None) -> StepOutput:
        tokens = self.model.tokenize(x)
        ctx = build_context(self.model, tokens, self.mask_ratio, generator, progress,
                           rank=self.rank, world_size=self.world_size, host_generator=host_generator)
        plan = self.masker(ctx)
        # only the tensors the reconstruction reads (the plan's logs stay out of compiled code)
        bare = MaskPlan(ids_keep=plan.ids_keep, ids_mask=plan.ids_mask, ids_restore=plan.ids_restore,
                        mask=plan.mask)
        out, recon = self._reconstruct(tokens, bare)
        total = recon.loss
        logs: dict[str, Tensor | float] = dict(plan.logs)
        extra = self.masker.auxiliary_loss(ctx, plan, out, recon.per_token)
        if extra is not None:
            total = total + extra
            logs["masker_aux_loss"] = extra.detach()
        # what leaves the step besides the losses is read, never differentiated: detached, so FSDP2
        # (which hooks every returned tensor for backward) finds no views among them
        tokens = dataclasses.replace(tokens, embeddings=tokens.embeddings.detach())
        out = dataclasses.replace(out, pred=out.pred.detach(), latent=out.latent.detach(),
                                  decoder_hidden=out.decoder_hidden.detach())
        return StepOutput(loss=total, recon_loss=recon.loss, per_token=recon.per_token, plan=plan,
                          tokens=tokens, output=out, logs=logs)
