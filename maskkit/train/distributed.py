"""torchrun integration: process group, DDP/FSDP wrapping, full state dicts for rank-0 checkpoints."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
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
        raise ConfigError("several ranks (WORLD_SIZE or SLURM_NTASKS > 1) but no MASTER_ADDR: launch with torchrun, "
                          "or export MASTER_ADDR and MASTER_PORT before srun (docs/distributed.md)")
    dist.init_process_group(backend=backend, rank=info.rank, world_size=info.world_size,
                            device_id=device if device.type == "cuda" else None)


def destroy_process_group() -> None:
    """Leave the process group cleanly (NCCL warns, and may leak, when a process exits inside one)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def needs_unused_parameter_search(module: nn.Module) -> bool:
    """DDP's ``find_unused_parameters`` costs a graph walk every step: only when some trainable masker
    parameter may get no gradient (a learned masker whose auxiliary loss is switched off)."""
    masker = module.masker  # type: ignore[union-attr]
    if not any(p.requires_grad for p in masker.parameters()):
        return False
    return not masker.all_parameters_used()


def wrap(module: nn.Module, info: DistInfo, device: torch.device, strategy: str,
         amp_dtype: torch.dtype | None = None) -> nn.Module:
    if strategy == "fsdp":
        if not info.enabled:
            return module  # one process: FSDP has nothing to shard; checkpoints are identical
        return fsdp_wrap(module, amp_dtype)
    if not info.enabled:
        return module
    return nn.parallel.DistributedDataParallel(
        module, device_ids=[device.index] if device.type == "cuda" else None,
        find_unused_parameters=needs_unused_parameter_search(module))


#: layers FSDP keeps in fp32 under mixed precision (autocast computes them in fp32)
NORMS = (nn.LayerNorm, nn.GroupNorm, nn.RMSNorm)


def fsdp_wrap(module: nn.Module, amp_dtype: torch.dtype | None = None) -> nn.Module:
    """FSDP2 on every encoder/decoder block, then the root, computing what DDP computes.

    Blocks gather their parameters in the autocast dtype (half the all-gather traffic; autocast
    casts the weights of its matmuls to that dtype anyway) and reduce gradients in fp32; the
    sharded master weights and the optimizer stay fp32. Nothing casts activations: FSDP2's default
    ``cast_forward_inputs`` would turn each block's input, i.e. the residual stream, into bf16 (and
    the root's, i.e. the batch itself: point-cloud centres moved), where DDP under autocast keeps
    them fp32. The root keeps fp32 parameters (embeddings, position tables, norms, heads) for the
    same reason: a bf16 position table would make the residual stream bf16 from the start.
    """
    from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard, register_fsdp_forward_method

    blocks = MixedPrecisionPolicy(param_dtype=amp_dtype, reduce_dtype=torch.float32,
                                  cast_forward_inputs=False) if amp_dtype else MixedPrecisionPolicy()
    for block in list(module.model.blocks) + list(module.model.decoder_blocks):  # type: ignore[union-attr]
        norms = [m for m in block.modules() if isinstance(m, NORMS)]
        if amp_dtype and norms:
            fully_shard(norms, mp_policy=MixedPrecisionPolicy(cast_forward_inputs=False))
        fully_shard(block, mp_policy=blocks)
        # FSDP gathers a block's parameters around `forward` only; maskers and probes read
        # attention maps through forward_with_attention, so it gets the same hooks
        register_fsdp_forward_method(block, "forward_with_attention")
    fully_shard(module, mp_policy=MixedPrecisionPolicy(cast_forward_inputs=False))
    return module


def compiles_per_block(strategy: str, info: DistInfo) -> bool:
    """Whether ``compile`` compiles blocks (:func:`compile_blocks`: FSDP over several ranks) rather
    than the whole reconstruction (DDP, and one process, which :func:`wrap` leaves unsharded)."""
    return strategy == "fsdp" and info.enabled


def compile_units(block: nn.Module) -> list[nn.Module]:
    """The largest parts of ``block`` that hold no FSDP group of their own: the block itself, or,
    under mixed precision (each norm its own fp32 group), its attention and its MLP."""
    from torch.distributed.fsdp import FSDPModule

    if not any(isinstance(m, FSDPModule) for m in block.modules() if m is not block):
        return [block]
    return [unit for child in block.children() if not isinstance(child, FSDPModule)
            for unit in compile_units(child)]


def compile_blocks(module: nn.Module, backend: str | Callable[..., Any] = "inductor", **options: Any) -> None:
    """``torch.compile`` under FSDP, after :func:`fsdp_wrap`: each encoder and decoder block alone
    (or its :func:`compile_units`); the glue (tokenizer, position tables, final norms, heads, loss)
    and the masker stay eager.

    FSDP2 gathers and frees a group's parameters in hooks that dynamo never traces, so one graph
    over the reconstruction breaks at each of them (7 graphs and 5 breaks in fp32, 9 and 9 under
    bf16, whatever the depth). Compiled as units, the hooks fall between graphs by design. Units of
    one shape share a graph (parameters are graph inputs, not guarded by identity): one graph per
    unit shape, the encoder's and the decoder's, so 2 graphs (4 under bf16) at any depth. Static
    shapes, as the whole reconstruction's graph has: left to automatic dynamic shapes, the
    decoder's graph turns dynamic only because its blocks share their code with the encoder's
    (another length), and activation checkpointing then compiles a third. ``Module.compile``
    keeps the modules in place: state-dict keys are unchanged.
    """
    options.setdefault("dynamic", False)
    for block in (*module.model.blocks, *module.model.decoder_blocks):  # type: ignore[union-attr]
        for unit in compile_units(block):
            unit.compile(backend=backend, **options)


def unwrap(module: nn.Module) -> nn.Module:
    return module.module if isinstance(module, nn.parallel.DistributedDataParallel) else module


def is_fsdp(module: nn.Module) -> bool:
    return any(type(m).__name__.startswith("FSDP") for m in module.modules())


def full_state_dict(wrapped: nn.Module, model: nn.Module, which: str = "model",
                    is_main: bool = True) -> dict[str, Any]:
    """Unsharded CPU state dict of ``model`` (collective under FSDP: call on every rank; only rank 0
    receives the tensors there). Without FSDP only the main rank copies (it is the only writer)."""
    if is_fsdp(wrapped):
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

        full = get_model_state_dict(wrapped, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
        prefix = f"{which}."
        return {k[len(prefix):]: v for k, v in full.items() if k.startswith(prefix)}
    if not is_main:
        return {}
    return {k: v.detach().cpu().clone() if isinstance(v, torch.Tensor) else v
            for k, v in model.state_dict().items()}


def full_state_dicts(wrapped: nn.Module, parts: dict[str, nn.Module], is_main: bool = True
                     ) -> dict[str, dict[str, Any]]:
    """:func:`full_state_dict` of several submodules (``{"model": model, "masker": masker}``) with one
    gather under FSDP: a checkpoint taken inside a launcher's ~30 s SIGTERM grace gathers the
    model once, not once per part."""
    if is_fsdp(wrapped):
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

        full = get_model_state_dict(wrapped, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
        return {which: {k[len(which) + 1:]: v for k, v in full.items() if k.startswith(f"{which}.")}
                for which in parts}
    return {which: full_state_dict(wrapped, module, which, is_main) for which, module in parts.items()}


def optimizer_state(wrapped: nn.Module, optimizer: torch.optim.Optimizer, is_main: bool = True) -> dict[str, Any]:
    """Optimizer state keyed by parameter name under FSDP (loadable on any world size), else torch's
    own format; collective under FSDP."""
    if is_fsdp(wrapped):
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_optimizer_state_dict

        return get_optimizer_state_dict(wrapped, optimizer,
                                        options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    return optimizer.state_dict() if is_main else {}


def load_full_state(wrapped: nn.Module, module: nn.Module, optimizer: torch.optim.Optimizer,
                    model_state: dict[str, Any], masker_state: dict[str, Any],
                    optimizer_state_dict: dict[str, Any]) -> None:
    """Load a full (unsharded) checkpoint into the run: each rank keeps its own shard under FSDP
    (plain ``load_state_dict`` would copy full tensors into sharded parameters)."""
    if is_fsdp(wrapped):
        from torch.distributed.checkpoint.state_dict import (
            StateDictOptions,
            set_model_state_dict,
            set_optimizer_state_dict,
        )

        options = StateDictOptions(full_state_dict=True)
        full = {f"model.{k}": v for k, v in model_state.items()}
        full.update({f"masker.{k}": v for k, v in masker_state.items()})
        loss_state = module.loss_fn.state_dict()  # type: ignore[union-attr]
        full.update({f"loss_fn.{k}": v for k, v in loss_state.items()})
        set_model_state_dict(wrapped, full, options=options)
        set_optimizer_state_dict(wrapped, optimizer, optimizer_state_dict, options=options)
        return
    module.model.load_state_dict(model_state)  # type: ignore[union-attr]
    module.masker.load_state_dict(masker_state)  # type: ignore[union-attr]
    optimizer.load_state_dict(optimizer_state_dict)


@contextlib.contextmanager
def unsharded(wrapped: nn.Module):
    """Gather the root's FSDP parameters for work outside ``forward`` (probes); every rank must
    enter. Blocks gather their own through their forward hooks. A no-op without FSDP."""
    from torch.distributed.fsdp import FSDPModule

    if isinstance(wrapped, FSDPModule):
        wrapped.unshard()
        try:
            yield
        finally:
            wrapped.reshard()
    else:
        yield


@contextlib.contextmanager
def maybe_no_sync(module: nn.Module, enabled: bool):
    """Skip the gradient all-reduce (DDP) or reduce-scatter (FSDP) on accumulation micro-steps."""
    from torch.distributed.fsdp import FSDPModule

    if enabled and isinstance(module, nn.parallel.DistributedDataParallel):
        with module.no_sync():
            yield
    elif isinstance(module, FSDPModule):
        module.set_requires_gradient_sync(not enabled)
        yield
    else:
        yield


def barrier(info: DistInfo) -> None:
    if info.enabled and dist.is_initialized():
        dist.barrier()


def any_rank(flag: bool, info: DistInfo, device: torch.device) -> bool:
    """True on every rank when it is True on any rank (a collective; one host sync)."""
    if not (info.enabled and dist.is_initialized()):
        return flag
    t = torch.full((1,), 1.0 if flag else 0.0, device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item() > 0)


def all_reduce_mean(value: torch.Tensor, info: DistInfo) -> torch.Tensor:
    if info.enabled and dist.is_initialized():
        value = value.clone()
        dist.all_reduce(value)
        value /= info.world_size
    return value
