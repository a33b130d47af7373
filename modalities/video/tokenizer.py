"""Video tubelets (VideoMAE / MAE-ST): a strided Conv3d embeds t x p x p space-time cubes.

Input ``(B, C, T, H, W)``; the token grid is ``(T/t, H/p, W/p)`` with axes ``("t", "h", "w")`` in
row-major order (every spatial token of the first time slice, then the next slice). Targets are
the raw tubelet pixels in (frame, row, column, channel) order; the loss normalises them per token
(norm-pix) when asked.
"""

from __future__ import annotations

from torch import Tensor, nn

from maskkit.errors import ConfigError
from maskkit.positions import FixedGridPositionEmbedding
from maskkit.tokenizer import Tokenizer
from maskkit.tokens import TokenBatch, TokenLayout


def tubeletify(video: Tensor, tubelet: int, patch: int) -> Tensor:
    """(B, C, T, H, W) -> (B, gt*gh*gw, t*p*p*C)."""
    b, c, t, h, w = video.shape
    gt, gh, gw = t // tubelet, h // patch, w // patch
    x = video.reshape(b, c, gt, tubelet, gh, patch, gw, patch)
    x = x.permute(0, 2, 4, 6, 3, 5, 7, 1)  # b, gt, gh, gw, t, p, p, c
    return x.reshape(b, gt * gh * gw, tubelet * patch * patch * c)


def untubeletify(tokens: Tensor, tubelet: int, patch: int, grid: tuple[int, int, int],
                 channels: int) -> Tensor:
    """Inverse of :func:`tubeletify`."""
    b = tokens.shape[0]
    gt, gh, gw = grid
    x = tokens.reshape(b, gt, gh, gw, tubelet, patch, patch, channels)
    x = x.permute(0, 7, 1, 4, 2, 5, 3, 6)  # b, c, gt, t, gh, p, gw, p
    return x.reshape(b, channels, gt * tubelet, gh * patch, gw * patch)


class TubeletTokenizer(Tokenizer):
    def __init__(self, num_frames: int, image_size: tuple[int, int], tubelet_size: int, patch_size: int,
                 channels: int, embed_dim: int) -> None:
        super().__init__()
        h, w = image_size
        if num_frames % tubelet_size:
            raise ConfigError(f"`num_frames` {num_frames} is not divisible by `tubelet_size` {tubelet_size}")
        if h % patch_size or w % patch_size:
            raise ConfigError(f"frame size `image_size` {h}x{w} is not divisible by `patch_size` {patch_size}")
        self.input_size = (num_frames, h, w)
        self.tubelet_size = tubelet_size
        self.patch_size = patch_size
        self.channels = channels
        self.embed_dim = embed_dim
        self.target_dim = tubelet_size * patch_size * patch_size * channels
        grid = (num_frames // tubelet_size, h // patch_size, w // patch_size)
        self.layout = TokenLayout.from_grid(grid, ("t", "h", "w"))
        kernel = (tubelet_size, patch_size, patch_size)
        self.proj = nn.Conv3d(channels, embed_dim, kernel_size=kernel, stride=kernel)
        nn.init.xavier_uniform_(self.proj.weight.view(embed_dim, -1))
        nn.init.zeros_(self.proj.bias)
        scale = self.layout.grid_coordinates().new_tensor(kernel).float()
        centres = (self.layout.grid_coordinates().float() + 0.5) * scale  # (N, 3) in (frame, row, col)
        self.register_buffer("centres", centres, persistent=False)

    def tokenize(self, x: Tensor) -> TokenBatch:
        if x.dim() != 5 or tuple(x.shape[1:]) != (self.channels, *self.input_size):
            t, h, w = self.input_size
            raise ValueError(f"expected clips of shape (B, {self.channels}, {t}, {h}, {w}), "
                             f"got {tuple(x.shape)}")
        emb = self.proj(x).flatten(2).transpose(1, 2)
        return TokenBatch(embeddings=emb, targets=tubeletify(x, self.tubelet_size, self.patch_size),
                          positions=self.centres, layout=self.layout)

    def untokenize(self, targets: Tensor, tokens: TokenBatch | None = None) -> Tensor:
        return untubeletify(targets, self.tubelet_size, self.patch_size, self.layout.grid,  # type: ignore[arg-type]
                            self.channels)

    def build_position_embedding(self, dim: int) -> nn.Module:
        """3-D sin-cos over (t, h, w): each axis gets an even share of the channels."""
        return FixedGridPositionEmbedding(self.layout.grid_coordinates(), dim)


__all__ = ["TubeletTokenizer", "tubeletify", "untubeletify"]
