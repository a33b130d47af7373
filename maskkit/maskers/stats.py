"""Mask statistics, computed on the device without host syncs, for per-step and per-epoch logs.

What they answer: does a masker hide the requested share (``mask_ratio``)? Are hidden tokens
clumped or spread compared with random masks (``clumping``: 1 = random, > 1 blobs, < 1 dispersed)?
Do masks of different samples overlap more than random masks would (``iou`` vs ``iou_random``)?
Does every position get hidden equally often over an epoch (:class:`PositionFrequency`)? The last
two detect an informed masker that has collapsed to a fixed spatial pattern
(docs/background/self-guided-small-scale.md); :func:`collapse_verdict` turns them into a verdict.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from maskkit.maskers.base import MaskPlan
from maskkit.tokens import TokenLayout


def as_mask(plan: MaskPlan | Tensor) -> Tensor:
    """(B, N) bool mask, True = hidden, from a plan or a mask."""
    mask = plan.mask if isinstance(plan, MaskPlan) else plan
    if mask.dim() != 2:
        raise ValueError(f"expected a (B, N) mask, got shape {tuple(mask.shape)}")
    return mask.bool()


def realised_ratio(mask: Tensor) -> Tensor:
    return mask.float().mean()


def random_pair_probability(counts: Tensor, num_tokens: int) -> Tensor:
    """P(two given distinct tokens are both hidden) for a uniformly random mask of ``counts``."""
    c = counts.float()
    return c * (c - 1) / max(1, num_tokens * (num_tokens - 1))


def knn_index(positions: Tensor, k: int) -> Tensor:
    """(B, N, d) or (N, d) positions -> (B or 1, N, k) indices of each token's k nearest others."""
    pos = positions.float()
    if pos.dim() == 2:
        pos = pos.unsqueeze(0)
    n = pos.shape[1]
    k = max(1, min(k, n - 1))
    dist = torch.cdist(pos, pos)
    dist = dist + torch.diag(torch.full((n,), float("inf"), device=dist.device))
    return dist.topk(k, dim=-1, largest=False).indices


def clumping(mask: Tensor, layout: TokenLayout, positions: Tensor | None = None,
             k_neighbours: int | None = None) -> dict[str, Tensor]:
    """Share of neighbour pairs with both tokens hidden, against the random expectation.

    Grid tokens: pairs of adjacent tokens along each axis (no wrap), also reported per axis as
    ``clumping/<axis>`` (e.g. ``clumping/time``). Grid-less tokens: each token with its
    ``k_neighbours`` nearest tokens by position (default 2 x coordinate dims, like a grid).
    """
    b, n = mask.shape
    counts = mask.sum(dim=1)
    expected = random_pair_probability(counts, n).mean()
    out: dict[str, Tensor] = {"neighbour_both_masked_random": expected}
    if layout.grid is not None:
        grid_mask = mask.reshape(b, *layout.grid)
        both_total = mask.new_zeros((), dtype=torch.float32)
        pairs_total = 0
        for axis, (size, name) in enumerate(zip(layout.grid, layout.axes, strict=True)):
            if size < 2:
                continue
            dim = axis + 1
            both = (grid_mask.narrow(dim, 0, size - 1) & grid_mask.narrow(dim, 1, size - 1)).float()
            out[f"clumping/{name}"] = both.mean() / expected.clamp_min(1e-12)
            both_total = both_total + both.sum()
            pairs_total += both.numel()
        observed = both_total / max(1, pairs_total)
    else:
        if positions is None:
            raise ValueError("grid-less tokens need positions for the neighbour statistic")
        k = k_neighbours or 2 * positions.shape[-1]
        idx = knn_index(positions, k).expand(b, -1, -1)
        neighbours = mask.gather(1, idx.reshape(b, -1)).reshape(idx.shape)
        observed = (mask.unsqueeze(-1) & neighbours).float().mean()
    out["neighbour_both_masked"] = observed
    out["clumping"] = observed / expected.clamp_min(1e-12)
    return out


def pairwise_iou(mask: Tensor) -> Tensor:
    """Mean IoU of the hidden sets over all pairs of samples in the batch (NaN for one sample)."""
    m = mask.float()
    b = m.shape[0]
    inter = m @ m.T
    counts = m.sum(dim=1)
    union = counts.unsqueeze(0) + counts.unsqueeze(1) - inter
    iou = inter / union.clamp_min(1.0)
    off = ~torch.eye(b, dtype=torch.bool, device=m.device)
    return (iou * off).sum() / (b * (b - 1)) if b > 1 else m.new_full((), float("nan"))


def random_iou(mean_count: Tensor, num_tokens: int) -> Tensor:
    """Tensor form of :func:`maskkit.maskers.base.expected_random_iou`."""
    inter = mean_count * mean_count / num_tokens
    return inter / (2 * mean_count - inter).clamp_min(1e-12)


def cluster_overlap(mask: Tensor, labels: Tensor, target: int | Tensor = 1) -> tuple[Tensor, Tensor]:
    """Per sample: share of hidden tokens inside the target cluster, and the cluster's share of all
    tokens (what a random mask would give). ``labels`` (B, N) int or bool; ``target`` int or (B,)."""
    if isinstance(target, Tensor) and target.dim() == 1:
        target = target.unsqueeze(1)
    inside = labels == target
    m = mask.float()
    overlap = (m * inside.float()).sum(dim=1) / m.sum(dim=1).clamp_min(1.0)
    return overlap, inside.float().mean(dim=1)


def mask_statistics(plan: MaskPlan | Tensor, layout: TokenLayout, positions: Tensor | None = None,
                    labels: Tensor | None = None, target: int | Tensor = 1,
                    k_neighbours: int | None = None) -> dict[str, Tensor]:
    """All per-step statistics as 0-d tensors on the mask's device (no host syncs).

    Keys: ``mask_ratio``, ``neighbour_both_masked`` and its ``_random`` expectation, ``clumping``
    (+ ``clumping/<axis>`` on grids), ``iou``, ``iou_random``, ``iou_excess``; with ``labels``
    also ``cluster_overlap`` and ``cluster_overlap_random``.
    """
    mask = as_mask(plan)
    n = mask.shape[1]
    stats: dict[str, Tensor] = {"mask_ratio": realised_ratio(mask)}
    stats.update(clumping(mask, layout, positions, k_neighbours))
    iou = pairwise_iou(mask)
    expected = random_iou(mask.sum(dim=1).float().mean(), n)
    stats.update(iou=iou, iou_random=expected, iou_excess=iou - expected)
    if labels is not None:
        overlap, share = cluster_overlap(mask, labels, target)
        stats.update(cluster_overlap=overlap.mean(), cluster_overlap_random=share.mean())
    return stats


# --------------------------------------------------------------------------- collapse verdict
#: Thresholds on the *share* of mask variance explained by position (0 random, 1 a fixed mask) and
#: on the normalised IoU excess (iou - iou_rand) / (1 - iou_rand). At r = 0.75 the small-scale
#: report's numbers map to: SG as specified (position sd 0.23-0.27, IoU 0.70-0.74 vs 0.60) ->
#: shares 0.28-0.39 / 0.25-0.35: collapsed; median-threshold fix (sd 0.13-0.16) -> 0.09-0.14 and
#: centred features (sd 0.10-0.11, IoU 0.63-0.65) -> 0.05-0.07 / 0.08-0.13: positional (a warning);
#: dataset-mean removed (sd 0.06, IoU 0.61-0.62) -> 0.02 / 0.03-0.05: ok. In raw units at r = 0.75
#: "collapsed" starts at sd ~0.17 or IoU excess 0.06, "positional" at sd ~0.10 or IoU excess 0.02.
COLLAPSE_SHARE = 0.15
POSITIONAL_SHARE = 0.05


@dataclass(frozen=True)
class CollapseVerdict:
    level: str  # "ok" | "positional" | "collapsed"
    position_share: float  # excess positional variance / r(1-r), finite-sample floor removed
    iou_share: float | None  # (iou - iou_rand) / (1 - iou_rand)
    position_sd: float
    position_sd_floor: float  # binomial sd sqrt(r(1-r)/n_samples) a random masker would show
    iou: float | None
    iou_random: float
    message: str

    @property
    def collapsed(self) -> bool:
        return self.level == "collapsed"


def _random_iou_pair_sd(num_positions: int, mask_ratio: float) -> float:
    """sd of the IoU of two random masks (hypergeometric intersection, delta method)."""
    n = num_positions
    c = mask_ratio * n
    var_inter = c * c * (n - c) ** 2 / (n * n * max(1, n - 1))
    inter = c * c / n
    return 2 * c / max(1e-12, (2 * c - inter) ** 2) * math.sqrt(var_inter)


def collapse_verdict(position_sd: float, mask_ratio: float, n_samples: int, num_positions: int,
                     iou: float | None = None, iou_samples: int | None = None,
                     collapse_share: float = COLLAPSE_SHARE,
                     positional_share: float = POSITIONAL_SHARE) -> CollapseVerdict:
    """Say whether masks follow position rather than content (host floats; call once per epoch).

    Finite samples: over ``n_samples`` masks a random masker's per-position frequencies scatter
    with the binomial sd ``sqrt(r(1-r)/n)``; that variance is subtracted, and the remainder counts
    only when it exceeds three standard errors of a sample variance over ``num_positions``
    positions. The mean pairwise IoU over ``iou_samples`` masks counts only beyond three standard
    errors of the random mean IoU (``sd_pair * sqrt(2 / (n(n-1)))``; omitted = many samples).
    """
    r = float(mask_ratio)
    base_var = max(1e-12, r * (1 - r))
    floor_var = base_var / max(1, n_samples)
    raw_excess = position_sd**2 - floor_var
    noise = 3 * floor_var * math.sqrt(2 / max(1, num_positions - 1))
    position_share = max(0.0, raw_excess) / base_var if raw_excess > noise else 0.0
    iou_rand = float(random_iou(torch.tensor(r * num_positions), num_positions))
    iou_share = None
    if iou is not None and not math.isnan(iou):
        iou_noise = 0.0
        if iou_samples is not None:
            iou_noise = 3 * _random_iou_pair_sd(num_positions, r) * math.sqrt(
                2 / max(1, iou_samples * (iou_samples - 1)))
        excess = iou - iou_rand
        iou_share = max(0.0, excess) / max(1e-12, 1 - iou_rand) if excess > iou_noise else 0.0
    worst = max(position_share, iou_share or 0.0)
    level = "collapsed" if worst >= collapse_share else "positional" if worst >= positional_share else "ok"
    iou_text = f", mask IoU {iou:.2f} vs {iou_rand:.2f} for random" if iou is not None else ""
    summary = (f"per-position masking frequency sd {position_sd:.3f} "
               f"(random over {n_samples} masks: {math.sqrt(floor_var):.3f}){iou_text}")
    message = {
        "collapsed": f"masks are mostly position, not content: {summary}",
        "positional": f"masks partly follow position: {summary}",
        "ok": f"masks do not follow position: {summary}",
    }[level]
    return CollapseVerdict(level=level, position_share=position_share, iou_share=iou_share,
                           position_sd=float(position_sd), position_sd_floor=math.sqrt(floor_var),
                           iou=iou, iou_random=iou_rand, message=message)


class PositionFrequency:
    """Running per-position masking counts (and within-batch IoU) over an epoch, on device.

    ``update`` never syncs; ``frequency``/``spread`` return tensors; ``verdict`` reads host floats
    (once per epoch). For grid-less tokens whose index is not a fixed place (point-cloud groups in
    sampling order) the per-position statistic has no spatial meaning.
    """

    def __init__(self, num_tokens: int, track_iou: bool = True) -> None:
        self.num_tokens = int(num_tokens)
        self.track_iou = track_iou
        self.reset()

    def reset(self) -> None:
        self.counts: Tensor | None = None
        self.samples = 0
        self.iou_sum: Tensor | None = None
        self.iou_batches = 0
        self.iou_batch_samples = 0

    def update(self, plan: MaskPlan | Tensor) -> None:
        mask = as_mask(plan)
        if mask.shape[1] != self.num_tokens:
            raise ValueError(f"mask has {mask.shape[1]} tokens, the accumulator {self.num_tokens}")
        batch_counts = mask.sum(dim=0).to(torch.float64)
        self.counts = batch_counts if self.counts is None else self.counts + batch_counts
        self.samples += mask.shape[0]
        if self.track_iou and mask.shape[0] > 1:
            iou = pairwise_iou(mask).to(torch.float64)
            self.iou_sum = iou if self.iou_sum is None else self.iou_sum + iou
            self.iou_batches += 1
            self.iou_batch_samples += mask.shape[0]

    def frequency(self) -> Tensor:
        if self.counts is None:
            raise ValueError("no masks seen yet")
        return (self.counts / self.samples).float()

    def spread(self) -> Tensor:
        """sd over positions of the masking frequency (0 for an ideal random masker)."""
        return self.frequency().std(unbiased=False)

    def ratio(self) -> Tensor:
        return self.frequency().mean()

    def noise_floor(self) -> Tensor:
        """Binomial sd ``sqrt(r(1-r)/n)`` that a random masker's spread shows after n masks."""
        r = self.ratio()
        return (r * (1 - r) / max(1, self.samples)).sqrt()

    def mean_iou(self) -> Tensor | None:
        return None if self.iou_sum is None else (self.iou_sum / self.iou_batches).float()

    def as_grid(self, layout: TokenLayout) -> Tensor:
        if layout.grid is None:
            raise ValueError("layout has no grid")
        return self.frequency().reshape(layout.grid)

    def verdict(self, iou: float | Tensor | None = None, iou_samples: int | None = None,
                **thresholds: float) -> CollapseVerdict:
        """Collapse verdict from the accumulated counts and (unless given) the accumulated IoU."""
        if iou is None and self.iou_sum is not None:
            iou = self.mean_iou()
            iou_samples = iou_samples or max(2, self.iou_batch_samples // max(1, self.iou_batches))
        iou_value = float(iou) if iou is not None else None
        return collapse_verdict(float(self.spread()), float(self.ratio()), self.samples, self.num_tokens,
                                iou=iou_value, iou_samples=iou_samples, **thresholds)

    def state_dict(self) -> dict[str, object]:
        return {"counts": self.counts, "samples": self.samples, "iou_sum": self.iou_sum,
                "iou_batches": self.iou_batches, "iou_batch_samples": self.iou_batch_samples}

    def load_state_dict(self, state: dict[str, object]) -> None:
        for key, value in state.items():
            setattr(self, key, value)


__all__ = [
    "CollapseVerdict",
    "PositionFrequency",
    "clumping",
    "cluster_overlap",
    "collapse_verdict",
    "mask_statistics",
    "pairwise_iou",
    "random_iou",
    "realised_ratio",
]
