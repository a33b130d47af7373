"""1-D patches: a linear embedding of ``patch_size`` consecutive samples; targets are the raw samples.

The layout is a 1-D grid ``(T,)`` with axis ``("time",)``, so grid-aware maskers (and this
package's ``ts-span``) know which tokens are neighbours; positions are patch centres in samples.
"""

from __future__ import annotations

from torch import Tensor, nn

from maskkit.positions import FixedGridPositionEmbedding
from maskkit.tokenizer import Tokenizer
from maskkit.tokens import TokenBatch, TokenLayout


class PatchTokenizer1D(Tokenizer):
    def __init__(self, length: int, patch_size: int, embed_dim: int) -> None:
        super().__init__()
        if length % patch_size:
            raise ValueError(f"signal length {length} is not divisible by patch size {patch_size}")
        self.length = length
        self.patch_size = patch_size
        self.embed_dim = embed_dim
        self.target_dim = patch_size
        self.layout = TokenLayout.from_grid((length // patch_size,), ("time",))
        self.proj = nn.Linear(patch_size, embed_dim)
        nn.init.xavier_uniform_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)
        centres = (self.layout.grid_coordinates().float() + 0.5) * patch_size  # (T, 1) in samples
        self.register_buffer("centres", centres, persistent=False)

    def patchify(self, x: Tensor) -> Tensor:
        """(B, L) -> (B, T, p)."""
        return x.reshape(x.shape[0], -1, self.patch_size)

    def tokenize(self, x: Tensor) -> TokenBatch:
        if x.dim() != 2 or x.shape[1] != self.length:
            raise ValueError(f"expected signals of shape (B, {self.length}), got {tuple(x.shape)}")
        patches = self.patchify(x.float())
        return TokenBatch(embeddings=self.proj(patches), targets=patches, positions=self.centres,
                          layout=self.layout)

    def untokenize(self, targets: Tensor, tokens: TokenBatch | None = None) -> Tensor:
        """(B, T, p) -> (B, L)."""
        return targets.reshape(targets.shape[0], -1)

    def build_position_embedding(self, dim: int) -> nn.Module:
        return FixedGridPositionEmbedding(self.layout.grid_coordinates(), dim)


__all__ = ["PatchTokenizer1D"]
