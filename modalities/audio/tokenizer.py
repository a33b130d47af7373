"""Spectrogram patches (Audio-MAE): non-overlapping (time x freq) patches of a log-mel "image".

Input ``(B, 1, T, F)`` with time first; the token grid is ``(T/pt, F/pf)`` with axes
``("time", "freq")`` in row-major order (all frequency patches of the first time step, then the next).
Targets are the raw patch values in (time, freq) order.
"""

from __future__ import annotations

from torch import Tensor, nn

from maskkit.errors import ConfigError
from maskkit.positions import FixedGridPositionEmbedding
from maskkit.tokenizer import Tokenizer
from maskkit.tokens import TokenBatch, TokenLayout


def patchify_2d(x: Tensor, patch: tuple[int, int]) -> Tensor:
    """(B, C, T, F) -> (B, gt*gf, pt*pf*C) with values in (time, freq, channel) order."""
    b, c, t, f = x.shape
    pt, pf = patch
    gt, gf = t // pt, f // pf
    x = x.reshape(b, c, gt, pt, gf, pf).permute(0, 2, 4, 3, 5, 1)
    return x.reshape(b, gt * gf, pt * pf * c)


def unpatchify_2d(patches: Tensor, patch: tuple[int, int], grid: tuple[int, int], channels: int) -> Tensor:
    """Inverse of :func:`patchify_2d`."""
    b = patches.shape[0]
    (gt, gf), (pt, pf) = grid, patch
    x = patches.reshape(b, gt, gf, pt, pf, channels).permute(0, 5, 1, 3, 2, 4)
    return x.reshape(b, channels, gt * pt, gf * pf)


class SpectrogramPatchTokenizer(Tokenizer):
    def __init__(self, num_frames: int, n_mels: int, patch_size: tuple[int, int], embed_dim: int,
                 channels: int = 1) -> None:
        super().__init__()
        pt, pf = patch_size
        if num_frames % pt or n_mels % pf:
            raise ConfigError(f"spectrogram {num_frames}x{n_mels} (`num_frames` x `n_mels`) is not divisible by "
                              f"`patch_size` {pt}x{pf}")
        self.input_size = (num_frames, n_mels)
        self.patch_size = (pt, pf)
        self.channels = channels
        self.embed_dim = embed_dim
        self.target_dim = pt * pf * channels
        self.layout = TokenLayout.from_grid((num_frames // pt, n_mels // pf), ("time", "freq"))
        self.proj = nn.Conv2d(channels, embed_dim, kernel_size=(pt, pf), stride=(pt, pf))
        nn.init.xavier_uniform_(self.proj.weight.view(embed_dim, -1))
        nn.init.zeros_(self.proj.bias)
        scale = self.layout.grid_coordinates().new_tensor([pt, pf]).float()
        centres = (self.layout.grid_coordinates().float() + 0.5) * scale  # (N, 2) in (frame, mel bin)
        self.register_buffer("centres", centres, persistent=False)

    def tokenize(self, x: Tensor) -> TokenBatch:
        if x.dim() != 4 or tuple(x.shape[1:]) != (self.channels, *self.input_size):
            raise ValueError(f"expected spectrograms of shape (B, {self.channels}, {self.input_size[0]}, "
                             f"{self.input_size[1]}), got {tuple(x.shape)}")
        emb = self.proj(x).flatten(2).transpose(1, 2)
        return TokenBatch(embeddings=emb, targets=patchify_2d(x, self.patch_size), positions=self.centres,
                          layout=self.layout)

    def untokenize(self, targets: Tensor, tokens: TokenBatch | None = None) -> Tensor:
        return unpatchify_2d(targets, self.patch_size, self.layout.grid, self.channels)  # type: ignore[arg-type]

    def build_position_embedding(self, dim: int) -> nn.Module:
        return FixedGridPositionEmbedding(self.layout.grid_coordinates(), dim)


__all__ = ["SpectrogramPatchTokenizer", "patchify_2d", "unpatchify_2d"]
