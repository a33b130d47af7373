"""One rank of tests/test_fsdp_compile.py, started by torchrun (gloo, CPU): FSDP2 with the trainer's
compile policy, graphs counted by a backend that records each graph dynamo hands it and runs it
eagerly (tracing only: no inductor, so it takes seconds). Writes ``OUT/rank<r>.json``.

    python -m torch.distributed.run --standalone --nproc-per-node=2 tests/fsdp_compile_worker.py OUT
"""

from __future__ import annotations

import copy
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch._dynamo as dynamo
import torch.distributed as dist
from torch._dynamo.utils import counters

sys.path.insert(0, str(Path(__file__).parent))
import toy  # noqa: E402,F401  (registers the "toy" modality)

from maskkit.maskers.base import TrainingProgress  # noqa: E402
from maskkit.train.build import build_run  # noqa: E402
from maskkit.train.config import TrainConfig  # noqa: E402
from maskkit.train.distributed import compile_blocks, compiles_per_block, fsdp_wrap  # noqa: E402
from maskkit.train.runtime import DistInfo  # noqa: E402
from maskkit.train.step import TrainingModule  # noqa: E402

#: model options and autocast dtype: nano (4 encoder + 2 decoder blocks of width 64) in fp32 and
#: under bf16 (FSDP then makes every norm its own fp32 group), and a deeper model whose decoder is
#: narrower and whose blocks recompute their activations in backward
CASES: dict[str, tuple[dict[str, Any], torch.dtype | None]] = {
    "nano": ({}, None),
    "deeper": ({"depth": 7, "decoder_depth": 3, "decoder_dim": 32, "grad_checkpoint": True}, None),
    "nano-bf16": ({}, torch.bfloat16),
}
STEPS = 2


def counting_backend(graphs: list[torch.fx.GraphModule]) -> Callable[..., Any]:
    def backend(gm: torch.fx.GraphModule, example_inputs: list[Any]) -> Callable[..., Any]:  # noqa: ARG001
        graphs.append(gm)
        return gm.forward

    return backend


def train_steps(plain: TrainingModule, batch: torch.Tensor, policy: str, amp: torch.dtype | None) -> dict[str, Any]:
    """``STEPS`` SGD steps of a fresh FSDP copy compiled as ``policy`` says (``eager``: not at all):
    each step's loss, the graphs dynamo had built after each step, and its graph breaks."""
    module = copy.deepcopy(plain)
    graphs: list[torch.fx.GraphModule] = []
    dynamo.reset()
    counters.clear()
    if policy == "reconstruction":  # before fsdp_wrap, as the trainer does for DDP and one process
        module.compile_reconstruction(backend=counting_backend(graphs))
    wrapped = fsdp_wrap(module, amp)
    if policy == "blocks":  # after fsdp_wrap, as the trainer does under FSDP
        compile_blocks(wrapped, backend=counting_backend(graphs))
    opt = torch.optim.SGD(wrapped.parameters(), lr=1e-3)
    losses, graphs_after = [], []
    for step in range(STEPS):
        with torch.autocast("cpu", dtype=amp or torch.bfloat16, enabled=amp is not None):
            out = wrapped(batch, torch.Generator().manual_seed(7 + step),
                          TrainingProgress(step=step, epochs=1, steps_per_epoch=STEPS))
        out.loss.backward()
        opt.step()
        opt.zero_grad()
        losses.append(out.loss.item())
        graphs_after.append(len(graphs))
    return {"losses": losses, "graphs_after_step": graphs_after,
            "graph_breaks": sum(counters["graph_break"].values()),
            "unique_graphs": counters["stats"]["unique_graphs"],
            "graph_ops": [len(gm.graph.nodes) for gm in graphs]}


def main(out: Path) -> None:
    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    torch.set_num_threads(1)
    result: dict[str, Any] = {"per_block_policy": compiles_per_block("fsdp", DistInfo(rank, world)), "cases": {}}
    for name, (options, amp) in CASES.items():
        torch.manual_seed(0)  # the same initial weights on both ranks
        cfg = TrainConfig(modality="toy", model="nano", model_options=options, out=str(out / "run"))
        parts = build_run(cfg, with_data=True)
        batch = torch.stack([parts.dataset[i][0] for i in range(4 * rank, 4 * rank + 4)])
        plain = TrainingModule(parts.model, parts.masker, parts.loss, parts.mask_ratio)
        # the whole-reconstruction compile (the policy before per-block) once, for its graph count
        policies = ("eager", "blocks", "reconstruction") if name == "nano" else ("eager", "blocks")
        result["cases"][name] = {"amp": amp is not None,
                                 **{policy: train_steps(plain, batch, policy, amp) for policy in policies}}
    (out / f"rank{rank}.json").write_text(json.dumps(result, indent=1))
    dist.destroy_process_group()


if __name__ == "__main__":
    main(Path(sys.argv[1]))
