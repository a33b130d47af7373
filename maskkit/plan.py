"""``MaskPlan``: which tokens the encoder sees. The contract between maskers, the model and the loss."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor

from maskkit.config_utils import ConfigError


def check_mask_ratio(value: float, setting: str = "mask_ratio") -> float:
    """The one rule for a mask ratio: a finite fraction strictly between 0 and 1."""
    if not 0.0 < value < 1.0:  # also false for NaN
        raise ConfigError(f"`{setting}` must be in (0, 1), got {value}")
    return value


def num_visible(num_tokens: int, mask_ratio: float) -> int:
    """MAE's rule: ``n_keep = int(N * (1 - r))`` (floor), at least one visible token."""
    check_mask_ratio(mask_ratio)
    return max(1, int(num_tokens * (1.0 - mask_ratio)))


@dataclass
class MaskPlan:
    """Which tokens the encoder sees. ``mask`` is True where a token is hidden (MAE convention).

    Every sample keeps the same number of tokens, so the encoder runs on dense tensors.
    """

    ids_keep: Tensor  # (B, n_keep) long, visible token indices
    ids_mask: Tensor  # (B, n_mask) long, hidden token indices
    ids_restore: Tensor  # (B, N) long: position of each token in cat([ids_keep, ids_mask])
    mask: Tensor  # (B, N) bool
    logs: dict[str, Tensor | float] = field(default_factory=dict)
    #: (B, N) log-probability of each token under a learned sampler that drew this plan (REINFORCE)
    log_prob: Tensor | None = None

    @property
    def n_keep(self) -> int:
        return self.ids_keep.shape[1]

    @property
    def n_mask(self) -> int:
        return self.ids_mask.shape[1]

    @classmethod
    def from_shuffle(cls, ids_shuffle: Tensor, n_keep: int) -> MaskPlan:
        """MAE's construction: the first ``n_keep`` entries of a per-sample permutation stay visible."""
        ids_restore = torch.argsort(ids_shuffle, dim=1)
        batch, n = ids_shuffle.shape
        # position i of the shuffle is hidden when i >= n_keep (no Python scalar written into a tensor)
        hidden = torch.arange(n, device=ids_shuffle.device) >= n_keep
        mask = torch.gather(hidden.unsqueeze(0).expand(batch, n), 1, ids_restore)
        return cls(ids_keep=ids_shuffle[:, :n_keep], ids_mask=ids_shuffle[:, n_keep:],
                   ids_restore=ids_restore, mask=mask)

    @classmethod
    def from_scores(cls, scores: Tensor, n_mask: int) -> MaskPlan:
        """Hide the ``n_mask`` highest-scoring tokens of each sample (ties broken by the sort)."""
        n = scores.shape[1]
        order = torch.argsort(scores, dim=1, descending=True, stable=True)  # masked first
        ids_shuffle = torch.flip(order, dims=[1])  # visible (lowest scores) first
        return cls.from_shuffle(ids_shuffle, n - n_mask)

    @classmethod
    def from_mask(cls, mask: Tensor) -> MaskPlan:
        """From a boolean mask that already hides the same count in every sample."""
        counts = mask.sum(dim=1)
        n_mask = int(counts[0])
        if not bool((counts == n_mask).all()):
            raise ValueError("every sample must hide the same number of tokens")
        return cls.from_scores(mask.float(), n_mask)

    def head(self, count: int) -> MaskPlan:
        """The plan of the first ``count`` samples (logs and losses are not carried)."""
        return MaskPlan(ids_keep=self.ids_keep[:count], ids_mask=self.ids_mask[:count],
                        ids_restore=self.ids_restore[:count], mask=self.mask[:count])

    def validate(self, num_tokens: int) -> None:
        """Raise if the plan is not an exact, consistent partition (used in tests and debug runs)."""
        batch = self.mask.shape[0]
        if self.n_keep + self.n_mask != num_tokens:
            raise AssertionError("ids_keep and ids_mask must cover every token")
        both = torch.cat([self.ids_keep, self.ids_mask], dim=1).sort(dim=1).values
        expected = torch.arange(num_tokens, device=both.device).expand(batch, -1)
        if not torch.equal(both, expected):
            raise AssertionError("ids_keep and ids_mask must be a partition of the tokens")
        if not bool((self.mask.sum(1) == self.n_mask).all()):
            raise AssertionError("mask count differs from ids_mask")
        if bool(self.mask.gather(1, self.ids_keep).any()):
            raise AssertionError("a visible index is marked masked")
