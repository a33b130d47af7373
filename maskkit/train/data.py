"""Replayable data order: a permutation per (seed, epoch), sharded across ranks, resumable mid-epoch."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from maskkit.config_utils import ConfigError
from maskkit.modality import MaskkitDataset, collate_samples
from maskkit.safe_io import write_text

if TYPE_CHECKING:
    from maskkit.train.config import TrainConfig
    from maskkit.train.runtime import DistInfo

HOLDOUT_SEED = 20_241_123  # fixed: every seed and every masker of a study holds out the same samples


def holdout_split(num_samples: int, fraction: float) -> tuple[np.ndarray, np.ndarray]:
    """(train indices, held-out indices), sorted; independent of the run's seed."""
    if fraction <= 0:
        return np.arange(num_samples), np.arange(0)
    count = min(num_samples - 1, max(1, round(num_samples * fraction)))
    held = np.sort(np.random.default_rng(HOLDOUT_SEED).permutation(num_samples)[:count])
    return np.setdiff1d(np.arange(num_samples), held), held


def check_batch_fits(batch_size: int, num_samples: int, world_size: int = 1) -> None:
    """A batch needs that many distinct samples on each rank: a larger one would be filled by repeating
    the data (one sample seen several times per step) and, when huge, by materialising the repeats."""
    per_rank = num_samples // max(1, world_size)
    if batch_size > per_rank:
        where = f" per rank ({world_size} ranks)" if world_size > 1 else ""
        raise ConfigError(f"`batch_size` {batch_size} is larger than the {per_rank} training samples{where}; "
                          f"use a batch of at most {per_rank}")


class EpochIndexed(Dataset):
    """Wraps a dataset so each index carries its epoch: ``(epoch, index)`` -> ``dataset[index]``.

    Workers (persistent ones included) hold their own dataset copies; carrying the epoch with the
    index keeps augmentation (drawn from ``rng_for(index)``) identical to a single-process run.
    """

    def __init__(self, dataset: MaskkitDataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, item: tuple[int, int]):
        epoch, index = item
        if self.dataset.epoch != epoch:
            self.dataset.set_epoch(epoch)
        return self.dataset[index]


class EpochOrderSampler(Sampler[tuple[int, int]]):
    """Indices of one epoch for one rank: same seed + epoch -> same order, whatever the workers.

    The permutation is padded to a multiple of ``world_size * batch_size`` so every rank runs the
    same number of full batches (DDP needs equal step counts); ``start_batch`` skips batches already
    trained before a resume.
    """

    def __init__(self, num_samples: int, batch_size: int, seed: int, rank: int = 0, world_size: int = 1,
                 max_batches: int | None = None, indices: np.ndarray | None = None) -> None:
        self.indices = torch.as_tensor(indices, dtype=torch.long) if indices is not None else None
        self.num_samples = len(self.indices) if self.indices is not None else num_samples
        self.batch_size = batch_size
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.max_batches = max_batches
        self.epoch = 0
        self.start_batch = 0

    def set_epoch(self, epoch: int, start_batch: int = 0) -> None:
        self.epoch = epoch
        self.start_batch = start_batch

    @property
    def batches_per_epoch(self) -> int:
        per_rank = self.num_samples // self.world_size
        n = max(1, per_rank // self.batch_size) if per_rank >= self.batch_size else 1
        return min(n, self.max_batches) if self.max_batches else n

    def epoch_indices(self) -> list[int]:
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        perm = torch.randperm(self.num_samples, generator=g)
        needed = self.batches_per_epoch * self.batch_size * self.world_size
        if needed > perm.numel():  # tiny datasets: wrap around
            reps = -(-needed // perm.numel())
            perm = perm.repeat(reps)
        perm = perm[:needed]
        if self.indices is not None:  # a permutation of the allowed samples (e.g. without the hold-out)
            perm = self.indices[perm]
        mine = perm[self.rank::self.world_size]
        return mine[self.start_batch * self.batch_size:].tolist()

    def __iter__(self) -> Iterator[tuple[int, int]]:
        return iter([(self.epoch, i) for i in self.epoch_indices()])

    def __len__(self) -> int:
        return (self.batches_per_epoch - self.start_batch) * self.batch_size


def build_loader(dataset: MaskkitDataset, sampler: EpochOrderSampler, num_workers: int,
                pin_memory: bool) -> DataLoader:
    """Workers persist across epochs and prefetch; pinned memory on CUDA for async copies."""
    return DataLoader(EpochIndexed(dataset), batch_size=sampler.batch_size, sampler=sampler,
                      num_workers=num_workers, pin_memory=pin_memory, drop_last=True,
                      collate_fn=collate_samples, persistent_workers=num_workers > 0,
                      prefetch_factor=4 if num_workers > 0 else None)


def build_train_sampler(cfg: TrainConfig, num_samples: int, dist: DistInfo, out: Path) -> EpochOrderSampler:
    """This rank's sampler over the training indices; with ``holdout_fraction`` the held-out indices are
    recorded in ``holdout.json`` (rank 0), where evaluation and fine-tuning find them."""
    train_idx, held = holdout_split(num_samples, cfg.holdout_fraction)
    check_batch_fits(cfg.batch_size, len(train_idx), dist.world_size)
    sampler = EpochOrderSampler(num_samples, cfg.batch_size, cfg.seed, dist.rank, dist.world_size,
                                cfg.max_steps_per_epoch, indices=train_idx if len(held) else None)
    if len(held) and dist.is_main:
        out.mkdir(parents=True, exist_ok=True)
        write_text(out / "holdout.json", json.dumps(
            {"num_samples": num_samples, "fraction": cfg.holdout_fraction, "indices": held.tolist()}))
    return sampler
