"""Device, precision, seeding and distributed-environment decisions, made once per run."""

from __future__ import annotations

import contextlib
import os
import random
from dataclasses import dataclass

import numpy as np
import torch

from maskkit.config_utils import ConfigError
from maskkit.threads import local_world_size
from maskkit.train.cluster import launcher_ranks


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def dist_info_from_env() -> DistInfo:
    """What torchrun (RANK/WORLD_SIZE/LOCAL_RANK) or else SLURM told us; a plain process is rank 0 of 1."""
    rank, world_size, local_rank = launcher_ranks()
    return DistInfo(rank=rank, world_size=world_size, local_rank=local_rank)


def resolve_device(name: str, dist: DistInfo | None = None) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError("`device` cuda was requested but no CUDA device is available")
        # a node's ranks share its GPUs by local rank; where each task sees only its own GPU
        # (SLURM --gpus-per-task, CUDA_VISIBLE_DEVICES per rank) the count is 1 and the index 0
        index = dist.local_rank % torch.cuda.device_count() if dist is not None and dist.enabled \
            else torch.cuda.current_device()
        torch.cuda.set_device(index)
        return torch.device("cuda", index)
    if name != "cpu":
        raise ConfigError(f"`device` must be auto, cpu or cuda; got {name!r}")
    return torch.device("cpu")


def cpu_supports_bf16() -> bool:
    """bf16 autocast on CPU is only fast with native bf16 (AVX512-BF16/AMX); elsewhere it is ~17x slower."""
    try:
        return bool(torch.cpu._is_avx512_bf16_supported())  # type: ignore[attr-defined]
    except AttributeError:
        return False


def resolve_precision(precision: str, device: torch.device) -> torch.dtype | None:
    """Autocast dtype, or None for plain fp32. Default: bf16 on CUDA, fp32 on CPU."""
    if precision == "auto":
        return torch.bfloat16 if device.type == "cuda" else None
    if precision == "fp32":
        return None
    if precision == "bf16":
        if device.type == "cpu" and not cpu_supports_bf16():
            raise ConfigError("`precision` bf16 on this CPU has no native bf16 (it would run ~17x slower); "
                              "use fp32 here or bf16 on CUDA")
        return torch.bfloat16
    if precision == "fp16":
        if device.type != "cuda":
            raise ConfigError("`precision` fp16 needs CUDA")
        return torch.float16
    raise ConfigError(f"`precision` must be auto, fp32, bf16 or fp16; got {precision!r}")


def resolve_num_workers(requested: int | None, device: torch.device, dist: DistInfo) -> int:
    """``None`` means auto: no workers on CPU, else the cores per local rank minus one (at most 8)."""
    if requested is not None:
        return requested
    if device.type == "cpu":
        return 0
    local = local_world_size() if local_world_size() > 1 else dist.world_size
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(0, min(8, cores // local - 1))


def tf32_for_fp32_runs(device: torch.device, dtype: torch.dtype | None) -> None:
    """fp32 runs on CUDA use TF32 tensor cores for their matmuls (bench rows time what training runs).

    One API only, here and in the graph maths that turn TF32 off again
    (``torch.set_float32_matmul_precision``): setting ``allow_tf32`` or a backend's
    ``fp32_precision`` beside it makes ``torch.get_float32_matmul_precision()`` raise.
    """
    if device.type == "cuda" and dtype is None:
        torch.set_float32_matmul_precision("high")


def precision_name(dtype: torch.dtype | None) -> str:
    """What a run actually computes in: fp32, bf16 or fp16 (never "auto")."""
    return {None: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}[dtype]


def autocast(device: torch.device, dtype: torch.dtype | None) -> contextlib.AbstractContextManager:
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def step_seed(seed: int, step: int, rank: int = 0) -> int:
    """Seed of the mask generator at a step: masks replay exactly after resume and differ per rank."""
    return int(np.random.SeedSequence([seed, step, rank]).generate_state(1, dtype=np.uint64)[0] % (2**63 - 1))
