"""Tokenizer contract: a modality's learnable front end (sample -> TokenBatch) and its inverse."""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn

from maskkit.contract import adopt_renamed, require_members
from maskkit.tokens import TokenBatch, TokenLayout


class Tokenizer(nn.Module):
    """Subclasses set ``embed_dim``, ``target_dim`` and ``layout`` in ``__init__``.

    - ``tokenize(x)``: batch of samples -> TokenBatch (embeddings without positions, raw targets).
    - ``untokenize(targets, tokens)``: (B, N, P) targets (or predictions in target space) back to
      samples, for pictures; ``tokens`` carries per-batch context (e.g. point-group centres).
    - ``build_position_embedding(dim)``: a module mapping positions to (1 or B, N, dim); the MAE
      builds one for the encoder width and one for the decoder width.
    """

    embed_dim: int
    target_dim: int
    layout: TokenLayout

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """Checked when the plug-in's class is defined (see maskkit.contract)."""
        super().__init_subclass__(**kwargs)
        adopt_renamed(cls, {"make_position_embedding": "build_position_embedding"})
        require_members(cls, Tokenizer, {"tokenize": None, "build_position_embedding": "make_position_embedding"})

    def tokenize(self, x: Tensor) -> TokenBatch:
        raise NotImplementedError

    def forward(self, x: Tensor) -> TokenBatch:
        return self.tokenize(x)

    def untokenize(self, targets: Tensor, tokens: TokenBatch) -> Tensor:
        raise NotImplementedError

    def build_position_embedding(self, dim: int) -> nn.Module:
        raise NotImplementedError

    def token_centres(self, tokens: TokenBatch) -> Tensor:
        """(B, N, k) token positions in input units, for attention distance; defaults to positions."""
        return tokens.batched_positions().float()
