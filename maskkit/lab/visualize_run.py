"""Draw a saved run as ``maskkit visualize`` does: its masker (at the point of its schedule where the
checkpoint was written), a mask draw, the reconstruction, and, on data with object masks, the object
coverage beside random masking and beside the same masker reading the untrained model."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from maskkit.errors import ConfigError
from maskkit.interop.resize import load_resized
from maskkit.lab.coverage import coverage_probe, masker_coverage, object_coverage, random_coverage, untrained_baseline
from maskkit.lab.visualize import build_visual_batch, pick_samples, render
from maskkit.maskers.base import Masker, TrainingProgress
from maskkit.registry import build_masker
from maskkit.safe_io import check_can_write
from maskkit.train.build import build_dataset
from maskkit.train.checkpoint import resolve_checkpoint_path


@dataclass
class Visualization:
    """Where the picture went, and what it measured, one line each (for a console or a log)."""

    path: Path
    lines: list[str] = field(default_factory=list)


def run_masker(config: Any, ckpt: dict[str, Any], masker: str | None,
               masker_options: dict[str, Any] | None) -> Masker:
    """The run's own masker with its saved state (unless other options are given), or another one."""
    if masker is None or masker == config.masker:
        m = build_masker(config.masker, {**config.masker_options, **(masker_options or {})})
        if masker_options is None and "masker" in ckpt:
            m.load_state_dict(ckpt["masker"], strict=False)  # e.g. self-guided "started" state
        return m
    return build_masker(masker, masker_options or {})


def saved_progress(config: Any, ckpt: dict[str, Any], masker: Masker) -> TrainingProgress:
    """Where training stood at the checkpoint: the masker's own record when it kept one."""
    if masker.last_progress.step > 0:
        return masker.last_progress
    pos = ckpt.get("position", {})
    steps_per_epoch = max(1, int(pos.get("global_step", 0)) // max(1, int(pos.get("epoch", 0)) or 1))
    return TrainingProgress(epoch=int(pos.get("epoch", 0)), step=int(pos.get("global_step", 0)),
                            epochs=max(config.epochs, 1), steps_per_epoch=steps_per_epoch)


def visualize_run(run: str | Path, out: str | Path | None = None, num_samples: int = 8, masker: str | None = None,
                  masker_options: dict[str, Any] | None = None, mask_ratio: float | None = None,
                  data: str | None = None, seed: int = 0, overrides: dict[str, Any] | None = None,
                  device: torch.device | None = None) -> Visualization:
    """Write the picture (default ``RUN/visualize.png``); ``masker_options`` None keeps the saved state."""
    if num_samples < 1:
        raise ConfigError(f"`num_samples` must be >= 1, got {num_samples}")
    dev = device or torch.device("cpu")
    ckpt_path = resolve_checkpoint_path(run)
    target = Path(out) if out is not None else (
        Path(run) / "visualize.png" if Path(run).is_dir() else ckpt_path.with_suffix(".png"))
    check_can_write(target)  # a read-only folder fails now, not after the pictures are drawn
    model, modality, config, ckpt = load_resized(ckpt_path, overrides or None, dev)
    ratio = mask_ratio if mask_ratio is not None else config.mask_ratio
    if ratio is None or not 0 < ratio < 1:
        raise ConfigError(f"`mask_ratio` must be in (0, 1), got {ratio}")
    m = run_masker(config, ckpt, masker, masker_options).to(dev)
    dataset = build_dataset(modality, data if data is not None else config.data, train=False, seed=config.seed)
    progress = saved_progress(config, ckpt, m)
    probe = coverage_probe(dataset, modality, model.tokenizer, num_samples)  # None without object masks
    x = probe.inputs if probe is not None else pick_samples(dataset, num_samples)  # un-augmented, with masks
    batch = build_visual_batch(model, modality.build_loss(), m, ratio, x, seed=seed, progress=progress)
    title = f"{config.modality} · masker {m.name} · ratio {ratio:g}"
    lines: list[str] = []
    if probe is not None:
        fractions = probe.fractions.to(batch.plan.mask.device)
        batch.object_fraction = fractions
        batch.extra_rows = {**(batch.extra_rows or {}), "object": fractions}
        cov = object_coverage(batch.plan.mask, fractions)
        expected = random_coverage(fractions.shape[1], ratio)
        title += f" · object coverage {float(cov.nanmean()):.2f} (random {expected:.2f})"
        lines.append(f"object coverage (share of object tokens hidden): {float(cov.nanmean()):.3f} over "
                     f"{int(cov.isfinite().sum())} samples; random masking: {expected:.3f}; per sample: "
                     + " ".join(f"{v:.2f}" for v in cov.tolist()))
        baseline = untrained_baseline(m, modality, model.config, config.seed, dev)
        if baseline is not None:
            untrained = masker_coverage(*baseline, probe, ratio, progress, seed=seed, device=dev)["coverage"]
            title += f" · untrained model {untrained:.2f}"
            lines.append(f"the same masker on the untrained model of seed {config.seed}: {untrained:.3f}")
    render(modality, batch, target, title=title)
    return Visualization(target, lines)


__all__ = ["Visualization", "run_masker", "saved_progress", "visualize_run"]
