"""Position embeddings: fixed sin-cos for grids (1-D/2-D/3-D) and an MLP for continuous coordinates."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from maskkit.errors import ConfigError


def sincos_1d(positions: Tensor, dim: int, temperature: float = 10000.0) -> Tensor:
    """(N,) positions -> (N, dim) embedding; half sines, half cosines (Transformer convention)."""
    if dim % 2:
        raise ValueError(f"sin-cos embedding needs an even dimension, got {dim}")
    omega = torch.arange(dim // 2, dtype=torch.float64) / (dim / 2.0)
    omega = 1.0 / temperature**omega
    angles = positions.to(torch.float64).reshape(-1, 1) * omega.reshape(1, -1)
    return torch.cat([torch.sin(angles), torch.cos(angles)], dim=1).float()


def sincos_grid(grid_coords: Tensor, dim: int) -> Tensor:
    """(N, a) integer grid coordinates -> (N, dim) embedding, splitting ``dim`` across the a axes.

    Each axis gets an even share; leftover channels (when dim is not divisible) are zero, so any
    embedding width works for 1-D, 2-D and 3-D grids.
    """
    n, axes = grid_coords.shape
    share = (dim // axes) // 2 * 2
    if share == 0:
        raise ConfigError(f"embedding width `embed_dim` {dim} is too small for a {axes}-D grid")
    parts = [sincos_1d(grid_coords[:, a], share) for a in range(axes)]
    out = torch.cat(parts, dim=1)
    if out.shape[1] < dim:
        out = torch.cat([out, out.new_zeros(n, dim - out.shape[1])], dim=1)
    return out


class FixedGridPositionEmbedding(nn.Module):
    """Sin-cos embedding of a fixed token grid; ignores the positions passed at call time."""

    def __init__(self, grid_coords: Tensor, dim: int) -> None:
        super().__init__()
        self.register_buffer("table", sincos_grid(grid_coords, dim).unsqueeze(0), persistent=False)

    def forward(self, positions: Tensor) -> Tensor:  # noqa: ARG002 - grid is fixed
        return self.table


class MLPPositionEmbedding(nn.Module):
    """Learned embedding of continuous coordinates (Point-MAE: MLP of group centres)."""

    def __init__(self, coord_dim: int, dim: int, hidden: int = 128) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(coord_dim, hidden), nn.GELU(), nn.Linear(hidden, dim))

    def forward(self, positions: Tensor) -> Tensor:
        if positions.dim() == 2:
            positions = positions.unsqueeze(0)
        return self.net(positions)


class LearnedGridPositionEmbedding(nn.Module):
    """A trainable (1, N, dim) table for a token grid, started from sin-cos (or loaded weights).

    Used when a model comes from a ViT whose positions were learned (timm, Hugging Face): those
    tables cannot be recomputed, so they are parameters, saved in checkpoints and interpolated over
    the grid when the input size changes (``maskkit.interop.resize``).
    """

    def __init__(self, grid: tuple[int, ...], table: Tensor) -> None:
        super().__init__()
        self.grid = tuple(int(g) for g in grid)
        self.table = nn.Parameter(table.detach().clone().reshape(1, -1, table.shape[-1]))

    def forward(self, positions: Tensor) -> Tensor:  # noqa: ARG002 - grid is fixed
        return self.table
