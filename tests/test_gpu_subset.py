"""The GPU subset (``MASKKIT_TEST_GPU=1 pytest -m gpu``): paths that only CUDA exercises. Skipped
elsewhere (tests/conftest.py hides the GPUs from every other test)."""

from __future__ import annotations

import warnings

import pytest
import torch

from maskkit.maskers import graph

pytestmark = pytest.mark.gpu


@pytest.fixture
def cuda():
    if not torch.cuda.is_available():
        pytest.fail("MASKKIT_TEST_GPU=1 but CUDA is not available")
    return torch.device("cuda")


def test_power_iteration_on_cuda_agrees_with_cpu_eigh_and_syncs_once_per_round(cuda):
    from test_graph import weak_cluster_graphs

    w = weak_cluster_graphs(10, 196, 0.01, seed=3)
    exact = graph.bipartition(w, "ncut", precision="fp64")
    start = torch.randn(10, 196, 2, generator=torch.Generator().manual_seed(1))
    torch.cuda.set_sync_debug_mode("warn")
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            spec = graph.fiedler_power(w.to(cuda), start=start.to(cuda))
    finally:
        torch.cuda.set_sync_debug_mode(0)
    syncs = [c for c in caught if "synchroniz" in str(c.message)]
    rounds = (spec.iterations + 1).bit_length() - 1
    assert len(syncs) <= rounds  # the convergence reads only: no eigh, no other read back
    same = (graph.split(spec.y, "mean").cpu() == exact.labels).float().mean(-1)
    assert torch.maximum(same, 1 - same).min() >= 0.99


def test_bf16_training_step_on_cuda(cuda, toy_config):
    from maskkit.train.trainer import run_training

    result = run_training(toy_config(device="cuda", precision="bf16", max_steps_per_epoch=2))
    assert result.steps == 2 and torch.isfinite(torch.tensor(result.final_loss))
