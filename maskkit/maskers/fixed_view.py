"""A :class:`~maskkit.maskers.base.ModelView` from precomputed tensors or functions.

For tests, notebooks, and code that runs its own model: give a masker the features or attention
you already have, without a ``MaskedAutoencoder``. Asking for something not supplied raises.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from torch import Tensor

from maskkit.model.shape import ModelShape
from maskkit.plan import MaskPlan


def _missing(what: str) -> RuntimeError:
    return RuntimeError(f"this FixedModelView was given no {what}")


@dataclass
class FixedModelView:
    shape: ModelShape = field(default_factory=lambda: ModelShape(depth=1, embed_dim=0))
    features_fn: Callable[[int], Tensor] | None = None
    attention_fn: Callable[[int], Tensor] | None = None
    decoder_features_fn: Callable[[int], Tensor] | None = None
    decoder_attention_fn: Callable[[MaskPlan, int], list[Tensor]] | None = None

    def features(self, layer: int) -> Tensor:
        if self.features_fn is None:
            raise _missing("features")
        return self.features_fn(layer)

    def attention(self, layer: int) -> Tensor:
        if self.attention_fn is None:
            raise _missing("attention")
        return self.attention_fn(layer)

    def decoder_features(self, layer: int) -> Tensor:
        if self.decoder_features_fn is None:
            raise _missing("decoder features")
        return self.decoder_features_fn(layer)

    def decoder_attention(self, plan: MaskPlan, samples: int) -> list[Tensor]:
        if self.decoder_attention_fn is None:
            raise _missing("decoder attention")
        return self.decoder_attention_fn(plan, samples)
