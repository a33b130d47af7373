"""The trainer's :class:`~maskkit.maskers.base.ModelView`: one model and one step's tokens.

Maskers never hold the model; they ask this view for features or attention of the current batch,
and every pass runs without gradients.
"""

from __future__ import annotations

import torch
from torch import Tensor

from maskkit.model.mae import MaskedAutoencoder
from maskkit.model.shape import ModelShape
from maskkit.plan import MaskPlan
from maskkit.tokens import TokenBatch


class TokenModelView:
    """Answers a masker's questions about ``model`` on ``tokens`` (see ``ModelView``)."""

    def __init__(self, model: MaskedAutoencoder, tokens: TokenBatch) -> None:
        self.model = model
        self.tokens = tokens

    @property
    def shape(self) -> ModelShape:
        return self.model.shape

    def features(self, layer: int) -> Tensor:
        return self.model.token_features(self.tokens, layer)

    def attention(self, layer: int) -> Tensor:
        return self.model.encoder_attention(self.tokens, [layer])[self.model.resolve_layer(layer)]

    def decoder_features(self, layer: int) -> Tensor:
        return self.model.decoder_token_features(self.tokens, layer)

    @torch.no_grad()
    def decoder_attention(self, plan: MaskPlan, samples: int) -> list[Tensor]:
        b = min(samples, self.tokens.batch_size)
        sub_tokens = self.tokens.head(b)
        sub_plan = plan.head(b)
        out = self.model(sub_tokens, sub_plan, return_attention=True)
        assert out.decoder_attention is not None
        return out.decoder_attention
