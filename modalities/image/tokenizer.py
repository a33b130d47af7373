"""Image patches: a strided convolution embeds p x p patches; targets are the raw patch pixels."""

from __future__ import annotations

from torch import Tensor, nn

from maskkit.errors import ConfigError
from maskkit.positions import FixedGridPositionEmbedding
from maskkit.tokenizer import Tokenizer
from maskkit.tokens import TokenBatch, TokenLayout


def patchify(images: Tensor, patch: int) -> Tensor:
    """(B, C, H, W) -> (B, h*w, p*p*C), pixels of a patch in (row, col, channel) order."""
    b, c, h, w = images.shape
    gh, gw = h // patch, w // patch
    x = images.reshape(b, c, gh, patch, gw, patch)
    x = x.permute(0, 2, 4, 3, 5, 1)  # b, gh, gw, p, p, c
    return x.reshape(b, gh * gw, patch * patch * c)


def unpatchify(patches: Tensor, patch: int, grid: tuple[int, int], channels: int) -> Tensor:
    """Inverse of :func:`patchify`."""
    b = patches.shape[0]
    gh, gw = grid
    x = patches.reshape(b, gh, gw, patch, patch, channels)
    x = x.permute(0, 5, 1, 3, 2, 4)
    return x.reshape(b, channels, gh * patch, gw * patch)


class ImagePatchTokenizer(Tokenizer):
    def __init__(self, image_size: tuple[int, int], patch_size: int, channels: int, embed_dim: int) -> None:
        super().__init__()
        h, w = image_size
        if h % patch_size or w % patch_size:
            raise ConfigError(f"`image_size` {h}x{w} is not divisible by `patch_size` {patch_size}")
        self.image_size = (h, w)
        self.patch_size = patch_size
        self.channels = channels
        self.embed_dim = embed_dim
        self.target_dim = patch_size * patch_size * channels
        self.layout = TokenLayout.from_grid((h // patch_size, w // patch_size), ("h", "w"))
        self.proj = nn.Conv2d(channels, embed_dim, kernel_size=patch_size, stride=patch_size)
        # MAE initialises the patch projection like a linear layer
        nn.init.xavier_uniform_(self.proj.weight.view(embed_dim, -1))
        nn.init.zeros_(self.proj.bias)
        centres = (self.layout.grid_coordinates().float() + 0.5) * patch_size  # (N, 2) pixel centres
        self.register_buffer("centres", centres, persistent=False)

    def tokenize(self, x: Tensor) -> TokenBatch:
        if x.dim() != 4 or tuple(x.shape[1:]) != (self.channels, *self.image_size):
            raise ValueError(
                f"expected images of shape (B, {self.channels}, {self.image_size[0]}, {self.image_size[1]}),"
                f" got {tuple(x.shape)}")
        emb = self.proj(x).flatten(2).transpose(1, 2)
        return TokenBatch(embeddings=emb, targets=patchify(x, self.patch_size), positions=self.centres,
                          layout=self.layout)

    def untokenize(self, targets: Tensor, tokens: TokenBatch | None = None) -> Tensor:
        return unpatchify(targets, self.patch_size, self.layout.grid, self.channels)  # type: ignore[arg-type]

    def build_position_embedding(self, dim: int) -> nn.Module:
        return FixedGridPositionEmbedding(self.layout.grid_coordinates(), dim)


__all__ = ["ImagePatchTokenizer", "patchify", "unpatchify"]
