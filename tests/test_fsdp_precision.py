"""FSDP under bf16 computes what DDP (one process under autocast) computes: inputs and the residual
stream stay fp32, only the blocks' matmul weights are gathered in bf16, which autocast casts to
anyway. Runs in this process on a gloo world of one, so it needs no torchrun and no native bf16
(CPU autocast emulates bf16 where the CPU lacks it: slow, but the same numbers)."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.distributed as dist

from maskkit.maskers.base import TrainingProgress
from maskkit.train.build import build_run
from maskkit.train.config import TrainConfig
from maskkit.train.distributed import fsdp_wrap
from maskkit.train.step import TrainingModule


@pytest.fixture
def world_of_one(tmp_path):
    store = dist.FileStore(str(tmp_path / "store"), 1)
    dist.init_process_group("gloo", store=store, rank=0, world_size=1)
    try:
        yield
    finally:
        dist.destroy_process_group()


def first_step_loss(module: torch.nn.Module, batch: torch.Tensor) -> torch.Tensor:
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = module(batch, torch.Generator().manual_seed(7), TrainingProgress(epochs=1, steps_per_epoch=1))
    out.loss.backward()
    return out.loss.detach().float()


@pytest.mark.parametrize("modality", ["toy", "pointcloud"])
def test_fsdp_bf16_first_step_loss_equals_ddp(world_of_one, tmp_path, modality):
    options = {"num_points": 64, "num_groups": 8, "group_size": 8} if modality == "pointcloud" else {}
    cfg = TrainConfig(modality=modality, model="nano", out=str(tmp_path / "run"), modality_options=options)
    parts = build_run(cfg, with_data=True)
    batch = torch.stack([parts.dataset[i][0] if isinstance(parts.dataset[i], tuple) else parts.dataset[i]
                         for i in range(4)])
    plain = TrainingModule(parts.model, parts.masker, parts.loss, parts.mask_ratio)
    sharded = fsdp_wrap(copy.deepcopy(plain), torch.bfloat16)
    reference, loss = first_step_loss(plain, batch), first_step_loss(sharded, batch)
    # the same bf16 roundings in the same order: equal to float noise (1e-5 is the bar)
    assert abs(loss.item() - reference.item()) <= 1e-5, (loss.item(), reference.item())
    grads = {n: p.grad for n, p in plain.named_parameters() if p.grad is not None}
    for name, p in sharded.named_parameters():
        if p.grad is not None and name in grads:
            g = p.grad.full_tensor() if hasattr(p.grad, "full_tensor") else p.grad
            torch.testing.assert_close(g, grads[name], rtol=1e-3, atol=1e-5, msg=name)
