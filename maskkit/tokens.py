"""The contract between a modality and the core: tokens, what to reconstruct, and where they sit."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import Tensor


@dataclass(frozen=True)
class TokenLayout:
    """How tokens are arranged, so structured maskers know what "neighbouring" means.

    ``grid`` is the token grid in row-major order (``(h, w)``, ``(t, h, w)``, ``(time, freq)``) or
    ``None`` for unordered tokens (point-cloud groups) whose geometry lives only in coordinates.
    ``axes`` names the grid axes (``("h", "w")``, ``("t", "h", "w")``, ``("time", "freq")``) or,
    without a grid, the coordinate axes (``("x", "y", "z")``).
    """

    grid: tuple[int, ...] | None
    axes: tuple[str, ...]
    num_tokens: int

    @classmethod
    def from_grid(cls, grid: tuple[int, ...], axes: tuple[str, ...]) -> TokenLayout:
        if len(grid) != len(axes):
            raise ValueError(f"grid {grid} and axes {axes} must have the same length")
        return cls(grid=tuple(int(g) for g in grid), axes=tuple(axes), num_tokens=math.prod(grid))

    @classmethod
    def unordered(cls, num_tokens: int, axes: tuple[str, ...] = ("x", "y", "z")) -> TokenLayout:
        return cls(grid=None, axes=tuple(axes), num_tokens=int(num_tokens))

    @property
    def has_grid(self) -> bool:
        return self.grid is not None

    def grid_coordinates(self) -> Tensor:
        """(N, len(grid)) integer coordinates of every token on the grid, row-major."""
        if self.grid is None:
            raise ValueError("this layout has no grid")
        axes = [torch.arange(g) for g in self.grid]
        mesh = torch.meshgrid(*axes, indexing="ij")
        return torch.stack([m.reshape(-1) for m in mesh], dim=-1)

    def axis_index(self, name: str) -> int:
        if name not in self.axes:
            raise ValueError(f"layout axes {self.axes} have no axis named {name!r}")
        return self.axes.index(name)


@dataclass
class TokenBatch:
    """One batch, tokenized.

    - ``embeddings`` (B, N, D): learnable token embeddings *without* positions.
    - ``targets`` (B, N, P): what the decoder reconstructs for every token (raw, un-normalised;
      the loss decides about per-token normalisation).
    - ``positions`` (N, k) or (B, N, k): token positions in input units (patch centres in pixels,
      tubelet centres, group centres). Position embeddings and attention distance read these.
    - ``layout``: the token arrangement.
    - ``context``: whatever the tokenizer needs to undo itself for pictures (e.g. group centres).
    """

    embeddings: Tensor
    targets: Tensor
    positions: Tensor
    layout: TokenLayout
    context: dict[str, Tensor] = field(default_factory=dict)

    @property
    def batch_size(self) -> int:
        return self.embeddings.shape[0]

    @property
    def num_tokens(self) -> int:
        return self.embeddings.shape[1]

    def batched_positions(self) -> Tensor:
        """Positions as (B, N, k), expanding shared positions without copying."""
        if self.positions.dim() == 2:
            return self.positions.unsqueeze(0).expand(self.batch_size, -1, -1)
        return self.positions

    def head(self, count: int) -> TokenBatch:
        """The first ``count`` samples (views, no copy); shared positions stay shared."""
        full = self.batch_size

        def cut(t: Tensor) -> Tensor:
            return t[:count] if t.dim() > 0 and t.shape[0] == full else t

        positions = self.positions[:count] if self.positions.dim() == 3 else self.positions
        return TokenBatch(embeddings=self.embeddings[:count], targets=self.targets[:count], positions=positions,
                          layout=self.layout, context={k: cut(v) for k, v in self.context.items()})
