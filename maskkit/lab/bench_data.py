"""Data-pipeline benchmark: how many samples/s the loader delivers, beside the training step.

Benchmarking a data source times the loader alone (decode, augment, collate; ``num_workers`` = N
DataLoader processes, the same loader training uses) and the training step on the same data, and
says which bounds the run: training runs at roughly the slower of the two.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass

from maskkit.train.build import build_run
from maskkit.train.config import TrainConfig
from maskkit.train.data import EpochOrderSampler, build_loader


@dataclass
class LoaderResult:
    data: str
    num_workers: int
    batch_size: int
    batches: int
    samples_per_s: float
    ms_per_batch: float
    start_s: float  # opening the dataset (index scan or cache) before the first batch

    def to_dict(self) -> dict:
        return asdict(self)


def bench_loader(config: TrainConfig, num_workers: int, batches: int = 20, warmup: int = 2) -> LoaderResult:
    """Time ``batches`` batches of the training loader after ``warmup`` (workers started, caches warm)."""
    t0 = time.perf_counter()
    parts = build_run(config, with_data=True, train=True)
    start_s = time.perf_counter() - t0
    dataset = parts.dataset
    assert dataset is not None
    sampler = EpochOrderSampler(len(dataset), config.batch_size, config.seed)
    loader = build_loader(dataset, sampler, num_workers, pin_memory=False)

    def stream():
        epoch = 0
        while True:  # across epochs when the data is smaller than warm-up + timed batches
            sampler.set_epoch(epoch)
            yield from loader
            epoch += 1

    batches_iter = stream()
    for _ in range(warmup):
        next(batches_iter)
    t_start = time.perf_counter()
    for _ in range(batches):
        next(batches_iter)
    elapsed = max(time.perf_counter() - t_start, 1e-9)
    timed = batches
    batches_iter.close()
    return LoaderResult(data=str(config.data), num_workers=num_workers, batch_size=config.batch_size,
                        batches=timed, samples_per_s=timed * config.batch_size / elapsed,
                        ms_per_batch=elapsed / max(timed, 1) * 1e3, start_s=start_s)


def bound_by(loader_samples_per_s: float, step_samples_per_s: float) -> str:
    """Which part limits training, in words."""
    if loader_samples_per_s < step_samples_per_s:
        return (f"data loading bounds the run ({loader_samples_per_s:.0f} < {step_samples_per_s:.0f} samples/s): "
                "add `num_workers` or use cheaper decoding")
    return (f"the training step bounds the run ({step_samples_per_s:.0f} <= {loader_samples_per_s:.0f} "
            "samples/s from the loader)")


__all__ = ["LoaderResult", "bench_loader", "bound_by"]
