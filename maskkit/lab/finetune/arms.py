"""Pretrained and random-init arms under one recipe, side by side (the CLI and studies use this)."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

from maskkit.lab.finetune.config import FinetuneConfig
from maskkit.lab.finetune.trainer import FinetuneResult, run_finetune
from maskkit.safe_io import write_text

ARMS = ("pretrained", "random-init")


def arm_config(base: FinetuneConfig, arm: str) -> FinetuneConfig:
    """The same recipe for both arms; only the starting weights and the output folder differ. With
    ``resume``, an arm that never saved a checkpoint (interrupted before it began) starts fresh."""
    out = Path(base.out) / arm
    return replace(base, init="random" if arm == "random-init" else "pretrained",
                   init_from=None if arm == "random-init" else base.init_from, out=str(out),
                   resume=base.resume and (out / "checkpoints" / "last.pt").is_file())


def finetune_arms(base: FinetuneConfig, baseline: bool = True, console: Any = None) -> dict[str, FinetuneResult]:
    """Run the pretrained arm (and the random-init baseline), write ``OUT/summary.json``."""
    results: dict[str, FinetuneResult] = {}
    for arm in ARMS if baseline else ARMS[:1]:
        if console is not None:
            console.print(f"{base.protocol_name}: {arm}")
        results[arm] = run_finetune(arm_config(base, arm), console=console)
    summary = {"protocol": base.protocol_name, "run": base.run, "config": base.to_dict(),
               "arms": {arm: r.to_dict() for arm, r in results.items()}}
    if "random-init" in results:
        summary["gain"] = results["pretrained"].accuracy - results["random-init"].accuracy
    Path(base.out).mkdir(parents=True, exist_ok=True)
    write_text(Path(base.out) / "summary.json", json.dumps(summary, indent=2))
    return results
