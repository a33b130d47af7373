"""Batched farthest-point sampling and k-nearest-neighbour grouping in plain torch.

Both run on whatever device the points live on, with no custom kernels, so the point-cloud
tokenizer trains on CPU and CUDA alike. FPS loops over the G centres (G is small, 64 by default)
and is vectorised over the batch and the points.
"""

from __future__ import annotations

import torch
from torch import Tensor


@torch.no_grad()
def farthest_point_sample(points: Tensor, num_samples: int, start: int | Tensor = 0) -> Tensor:
    """(B, P, 3) points -> (B, G) indices of ``num_samples`` farthest-point-sampled centres.

    ``start`` is the first centre: one index for every cloud or a (B,) tensor of per-cloud indices.
    Each next centre is the point whose squared distance to the chosen set is largest (ties go to
    the lowest index, as ``argmax`` returns the first maximum).
    """
    b, p, _ = points.shape
    if not 1 <= num_samples <= p:
        raise ValueError(f"cannot sample {num_samples} centres from {p} points")
    pts = points.float()
    idx = torch.empty(b, num_samples, dtype=torch.long, device=points.device)
    if isinstance(start, Tensor):
        current = start.to(device=points.device, dtype=torch.long).reshape(b)
    else:
        current = torch.full((b,), int(start), dtype=torch.long, device=points.device)
    nearest = torch.full((b, p), float("inf"), device=points.device)
    rows = torch.arange(b, device=points.device)
    for i in range(num_samples):
        idx[:, i] = current
        centre = pts[rows, current]  # (B, 3)
        dist = (pts - centre[:, None, :]).pow(2).sum(-1)
        nearest = torch.minimum(nearest, dist)
        current = nearest.argmax(dim=1)
    return idx


@torch.no_grad()
def knn_indices(centres: Tensor, points: Tensor, k: int) -> Tensor:
    """(B, G, 3) centres, (B, P, 3) points -> (B, G, k) indices of each centre's k nearest points,
    nearest first."""
    if not 1 <= k <= points.shape[1]:
        raise ValueError(f"cannot take {k} neighbours from {points.shape[1]} points")
    dist = torch.cdist(centres.float(), points.float())
    return dist.topk(k, dim=-1, largest=False, sorted=True).indices


def gather_points(points: Tensor, index: Tensor) -> Tensor:
    """(B, P, C) points, (B, *S) indices -> (B, *S, C)."""
    b, _, c = points.shape
    flat = index.reshape(b, -1)
    out = torch.gather(points, 1, flat.unsqueeze(-1).expand(-1, -1, c))
    return out.reshape(*index.shape, c)


def group_points(points: Tensor, num_groups: int, group_size: int,
                 start: int | Tensor = 0) -> tuple[Tensor, Tensor, Tensor]:
    """FPS centres and kNN groups: returns (centres (B,G,3), local (B,G,k,3), neighbour index (B,G,k)).

    ``local`` holds each group's points minus its centre (Point-MAE's normalised patches).
    """
    xyz = points[..., :3]
    centre_idx = farthest_point_sample(xyz, num_groups, start)
    centres = gather_points(xyz, centre_idx)
    neighbours = knn_indices(centres, xyz, group_size)
    grouped = gather_points(xyz, neighbours)
    return centres, grouped - centres.unsqueeze(2), neighbours


__all__ = ["farthest_point_sample", "gather_points", "group_points", "knn_indices"]
