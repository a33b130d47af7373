"""``compile`` under FSDP2 compiles each block alone (``TrainingModule.compile_blocks``): FSDP's
per-block hooks then fall between graphs by design instead of breaking one reconstruction graph.

One torchrun launch (gloo, 2 CPU ranks, ~9 s of it start-up) runs tests/fsdp_compile_worker.py:
two SGD steps of toy models (fp32 and bf16) per compile policy, graphs counted by a backend that records each
graph dynamo builds and runs it eagerly (no inductor), so the counts are dynamo's alone.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from maskkit.train.distributed import compiles_per_block
from maskkit.train.runtime import DistInfo

WORKER = Path(__file__).resolve().parent / "fsdp_compile_worker.py"
ENV = dict(os.environ, OMP_NUM_THREADS="1", MASKKIT_THREADS="1")


@pytest.fixture(scope="module")
def ranks(tmp_path_factory) -> list[dict]:
    out = tmp_path_factory.mktemp("fsdp-compile")
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2",
               str(WORKER), str(out)]
    proc = subprocess.run(command, env=ENV, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return [json.loads((out / f"rank{rank}.json").read_text()) for rank in range(2)]


def test_compile_policy_is_per_block_only_for_fsdp_over_several_ranks():
    two, one = DistInfo(rank=0, world_size=2), DistInfo()
    assert compiles_per_block("fsdp", two)
    # one process is never sharded (wrap leaves it as is); DDP has no per-block hooks
    assert not compiles_per_block("fsdp", one)
    assert not any(compiles_per_block(strategy, info) for strategy in ("ddp", "auto") for info in (one, two))


@pytest.mark.distributed
def test_fsdp_compiles_one_graph_per_unit_shape_whatever_the_depth(ranks):
    """Encoder blocks all see (B, 1 + kept, D), decoder blocks (B, 1 + N, Dd): two shapes. In fp32 a
    block holds no FSDP group but its own, so it compiles whole: two graphs. Under bf16 each norm
    is its own (fp32) FSDP group, so the units are a block's attention and its MLP: four graphs.
    All built in the first step, none after (units of one shape share a graph: their parameters are
    graph inputs), no graph break, for 4 + 2 blocks as for 7 + 3 recomputed in backward. The
    whole-reconstruction compile, by contrast, breaks at FSDP's hooks."""
    for rank in ranks:
        assert rank["per_block_policy"]
        for name, case in rank["cases"].items():
            expected = 2 * (2 if case["amp"] else 1)
            blocks = case["blocks"]
            assert blocks["graphs_after_step"] == [expected, expected], name
            assert blocks["unique_graphs"] == expected and blocks["graph_breaks"] == 0, name
        whole = rank["cases"]["nano"]["reconstruction"]  # measured on torch 2.13: 7 graphs, 5 breaks
        assert whole["graph_breaks"] > 0 and whole["unique_graphs"] > 2


@pytest.mark.distributed
def test_fsdp_with_compiled_blocks_computes_what_eager_fsdp_computes(ranks):
    """The first step's loss, and the next one's after an SGD step through FSDP's gradients."""
    for rank in ranks:
        for name, case in rank["cases"].items():
            eager = case["eager"]["losses"]
            for policy in ("blocks", "reconstruction"):
                if policy in case:
                    got = case[policy]["losses"]
                    assert got == pytest.approx(eager, abs=1e-6, rel=0), (name, policy, got, eager)
