"""Evaluate a saved run as ``maskkit eval`` does: load it (optionally at another input size), rebuild its
random-init twin from the run's seed, and probe both beside the raw input."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from maskkit.interop.resize import load_resized
from maskkit.lab.evaluate import ProbeResult, evaluate_with_baselines
from maskkit.lab.latents import LatentResult, evaluate_latents
from maskkit.modality import Modality
from maskkit.train.build import build_dataset, build_model
from maskkit.train.checkpoint import resolve_checkpoint_path
from maskkit.train.config import TrainConfig


@dataclass
class RunEvaluation:
    """The probe rows and what they were measured on."""

    rows: list[ProbeResult]
    checkpoint_path: Path
    checkpoint: dict[str, Any]
    config: TrainConfig
    modality: Modality
    latents: list[LatentResult]  # one per latent the data declares (empty when it declares none)


def evaluate_run(run: str | Path, data: str | None = None, max_samples: int = 2000, k: int = 10,
                 baselines: bool = True, overrides: dict[str, Any] | None = None,
                 device: torch.device | None = None) -> RunEvaluation:
    """Probe the run's encoder on ``data`` (default: the run's own data) under the fixed protocol."""
    dev = device or torch.device("cpu")
    ckpt_path = resolve_checkpoint_path(run)
    model, modality, config, ckpt = load_resized(ckpt_path, overrides or None, dev)
    dataset = build_dataset(modality, data if data is not None else config.data, train=False, seed=config.seed)
    random_init = None
    if baselines:
        torch.manual_seed(config.seed)  # the same initial weights the run started from
        random_init = build_model(modality, model.config).to(dev)
    rows = evaluate_with_baselines(model, random_init, modality, dataset, dev, seed=config.seed,
                                   max_samples=max_samples, k=k)
    if not baselines:
        rows = [r for r in rows if r.arm == "pretrained"]
    latents = evaluate_latents({"pretrained": model, "random-init": random_init}, modality if baselines else None,
                               dataset, dev, seed=config.seed, max_samples=max_samples)
    return RunEvaluation(rows, ckpt_path, ckpt, config, modality, latents)
