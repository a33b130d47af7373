"""torchrun integration: process group, DDP/FSDP wrapping, full state dicts for rank-0 checkpoints."""

from __future__ import annotations

import contextlib
import os
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from maskkit.config_utils import ConfigError
from maskkit.train.runtime import DistInfo


def init_process_group(info: DistInfo, device: torch.device) -> None:
    if not info.enabled or dist.is_initialized():
        return
    backend = "nccl" if device.type == "cuda" else "gloo"
    if "MASTER_ADDR" not in os.environ:
        raise ConfigError("WORLD_SIZE > 1 but no MASTER_ADDR: launch multi-process runs with torchrun")
    dist.init_process_group(backend=backend, rank=info.rank, world_size=info.world_size,
                            device_id=device if device.type == "cuda" else None)


def wrap(module: nn.Module, info: DistInfo, device: torch.device, strategy: str) -> nn.Module:
    if strategy == "fsdp":
        if not info.enabled:
            return module  # one process: FSDP has nothing to shard; checkpoints are identical
        from torch.distributed.fsdp import fully_shard

        for block in list(module.model.blocks) + list(module.model.decoder_blocks):  # type: ignore[union-attr]
            fully_shard(block)
        fully_shard(module)
        return module
    if not info.enabled:
        return module
    has_masker_params = any(True for _ in module.masker.parameters())  # type: ignore[union-attr]
    return nn.parallel.DistributedDataParallel(
        module, device_ids=[device.index] if device.type == "cuda" else None,
        find_unused_parameters=has_masker_params)


def unwrap(module: nn.Module) -> nn.Module:
    return module.module if isinstance(module, nn.parallel.DistributedDataParallel) else module


def _is_fsdp(module: nn.Module) -> bool:
    return any(type(m).__name__.startswith("FSDP") for m in module.modules())


def full_state_dict(wrapped: nn.Module, model: nn.Module, which: str = "model") -> dict[str, Any]:
    """Unsharded CPU state dict of ``model`` (collective under FSDP: call on every rank)."""
    if _is_fsdp(wrapped):
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

        full = get_model_state_dict(wrapped, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
        prefix = f"{which}."
        return {k[len(prefix):]: v for k, v in full.items() if k.startswith(prefix)}
    return {k: v.detach().cpu().clone() if isinstance(v, torch.Tensor) else v
            for k, v in model.state_dict().items()}


def optimizer_state(wrapped: nn.Module, optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    if _is_fsdp(wrapped):
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_optimizer_state_dict

        return get_optimizer_state_dict(wrapped, optimizer,
                                        options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    return optimizer.state_dict()


@contextlib.contextmanager
def maybe_no_sync(module: nn.Module, enabled: bool):
    """Skip DDP's gradient all-reduce on accumulation micro-steps."""
    if enabled and isinstance(module, nn.parallel.DistributedDataParallel):
        with module.no_sync():
            yield
    else:
        yield


def barrier(info: DistInfo) -> None:
    if info.enabled and dist.is_initialized():
        dist.barrier()


def all_reduce_mean(value: torch.Tensor, info: DistInfo) -> torch.Tensor:
    if info.enabled and dist.is_initialized():
        value = value.clone()
        dist.all_reduce(value)
        value /= info.world_size
    return value
