"""One evaluation protocol for every run and baseline of a study.

- Frozen features of the full input -> linear probe and k-NN (``maskkit.lab.evaluate``), on the same
  labelled subset and the same folds (``eval_seed``) for every run, so runs differ only in weights.
- Reconstruction loss on the evaluation data, twice: with the run's own masker (its task) and with
  one shared random mask per sample at the same ratio (the same masks for every run of a cell),
  which is the number that compares maskers fairly.
- Token-clustering metrics from ``maskkit.lab.analysis``.
- Probe accuracy at every kept checkpoint, for the learning curves.
Results are written next to the run (``study_eval.json``) with the protocol they used, so a
finished evaluation is reused only when the protocol still matches.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Subset

from maskkit.lab.analysis import probe_metrics
from maskkit.lab.evaluate import (
    EvaluationError,
    cv_folds,  # the protocol's fold rule, shared so every arm uses identical splits
    extract_features,
    labelled_subset,
    probe,
    raw_features,
)
from maskkit.lab.latents import evaluate_latents
from maskkit.lab.study.config import StudyConfig
from maskkit.lab.study.finetune_eval import finetune_baseline, finetune_run
from maskkit.maskers.base import Masker, TrainingProgress
from maskkit.maskers.random import RandomMasker
from maskkit.modality import MaskkitDataset, Modality, collate_samples
from maskkit.model.mae import MaskedAutoencoder
from maskkit.registry import build_masker
from maskkit.safe_io import ensure_dir, write_text
from maskkit.train.build import build_dataset, build_run
from maskkit.train.checkpoint import list_checkpoints, load_run_model
from maskkit.train.config import TrainConfig
from maskkit.train.runtime import autocast, resolve_precision
from maskkit.train.step import build_context

EVAL_FILE = "study_eval.json"


# --------------------------------------------------------------------------- pieces
def eval_dataset(modality: Modality, study: StudyConfig, config: TrainConfig) -> MaskkitDataset:
    """The evaluation data without augmentation, built with ``eval_seed`` so every run sees the same."""
    return build_dataset(modality, study.eval_data if study.eval_data is not None else config.data,
                         train=False, seed=study.eval_seed)


def eval_indices(dataset: MaskkitDataset, max_samples: int, seed: int) -> np.ndarray:
    n = len(dataset)
    if n <= max_samples:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size=max_samples, replace=False))


def reconstruction_indices(run_dir: Path, dataset: MaskkitDataset, study: StudyConfig) -> tuple[np.ndarray, str]:
    """Samples for the reconstruction loss, and what they are.

    When the run held samples out of training (``holdout.json``) and the evaluation data is the
    training data (same length), only those unseen samples are used; a modality whose evaluation
    data is its own test split (different length) is held out by construction.
    """
    info = read_json(run_dir / "holdout.json")
    if info is not None and int(info["num_samples"]) == len(dataset):
        held = np.asarray(info["indices"], dtype=np.int64)
        if len(held) > study.recon_max_samples:
            pick_idx = np.random.default_rng(study.eval_seed).choice(len(held), study.recon_max_samples,
                                                                      replace=False)
            held = np.sort(held[pick_idx])
        return held, "held-out samples never trained on"
    idx = eval_indices(dataset, study.recon_max_samples, study.eval_seed)
    if study.eval_data is not None:
        return idx, "the evaluation data"
    if info is not None:
        return idx, "the modality's evaluation split (separate from its training split)"
    return idx, "training samples (no hold-out)"


def probe_note(dataset: MaskkitDataset, study: StudyConfig) -> str | None:
    """Why the data cannot be probed (no labels, too few per class), or None when it can."""
    try:
        labelled_subset(dataset, study.eval_max_samples, study.eval_seed)
    except EvaluationError as exc:
        return str(exc)
    return None


def probe_results(model: MaskedAutoencoder, dataset: MaskkitDataset, device: torch.device,
                  study: StudyConfig, arm: str) -> list[dict[str, Any]] | None:
    """Linear probe + k-NN of the study's feature (``probe_feature``; the mean when the model has no
    CLS token), as ``maskkit.lab.evaluate`` does it: same labelled subset and folds for every run.
    None when the data cannot be probed (see :func:`probe_note`)."""
    try:
        idx = labelled_subset(dataset, study.eval_max_samples, study.eval_seed)
    except EvaluationError:
        return None
    labels = np.asarray(dataset.labels)[idx]
    folds = cv_folds(labels, study.eval_seed)
    feats = extract_features(model, dataset, idx, device, amp_dtype=resolve_precision("auto", device))
    name = study.probe_feature if study.probe_feature in feats else "mean"
    return [probe(arm, name, feats[name], labels, folds, k=study.knn_k).to_dict()]


@torch.no_grad()
def reconstruction_loss(model: MaskedAutoencoder, loss_fn: torch.nn.Module, masker: Masker, mask_ratio: float,
                        dataset: MaskkitDataset, indices: np.ndarray, device: torch.device, seed: int,
                        progress: TrainingProgress, batch_size: int = 64,
                        keep_masks: int = 0, host_noise: bool = False) -> tuple[float, list[list[int]]]:
    """Mean loss over hidden tokens; each batch's generator is seeded from (seed, batch index), so a
    masker that draws the same way gives identical masks in every run. ``host_noise`` draws on a
    CPU generator, so the masks are also the same on every device (CPU and CUDA generators give
    different numbers for one seed). Also returns the first ``keep_masks`` masks (1 = hidden) for
    the mask-example figure."""
    model.eval()
    masker.eval()
    amp_dtype = resolve_precision("auto", device)
    loader = DataLoader(Subset(dataset, indices.tolist()), batch_size=batch_size, shuffle=False,
                        collate_fn=collate_samples)
    generator = torch.Generator(device="cpu" if host_noise else device)
    total = torch.zeros((), dtype=torch.float64, device=device)
    hidden = torch.zeros((), dtype=torch.float64, device=device)
    examples: list[list[int]] = []
    for b, (x, _) in enumerate(loader):
        x = x.to(device)
        generator.manual_seed(seed * 1_000_003 + b)
        with autocast(device, amp_dtype):
            tokens = model.tokenize(x)
            ctx = build_context(model, tokens, mask_ratio, generator, progress)
            plan = masker(ctx)
            out = model(tokens, plan)
            recon = loss_fn(out.pred.float(), tokens.targets.float(), plan)
        mask = plan.mask.to(torch.float64)
        total += (recon.per_token.to(torch.float64) * mask).sum()
        hidden += mask.sum()
        if len(examples) < keep_masks:
            examples.extend(plan.mask[: keep_masks - len(examples)].int().cpu().tolist())
    return float(total / hidden.clamp_min(1.0)), examples


def clustering_metrics(model: MaskedAutoencoder, dataset: MaskkitDataset, masker: Masker, mask_ratio: float,
                       device: torch.device, seed: int) -> tuple[dict[str, float] | None, str | None]:
    """Token-clustering metrics of ``maskkit.lab.analysis`` (None and a note when they fail)."""
    try:
        raw = probe_metrics(model, dataset, masker, mask_ratio, device=device, seed=seed,
                            amp_dtype=resolve_precision("auto", device))
    except Exception as exc:  # a secondary metric must not cost the study; the report names the failure
        return None, f"token-clustering metrics failed: {type(exc).__name__}: {str(exc).splitlines()[0][:200]}"
    out = {}
    for key, value in raw.items():
        if isinstance(value, torch.Tensor) and value.numel() == 1:
            value = float(value)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            out[str(key)] = float(value)
    return out, None


def final_progress(ckpt: dict[str, Any], config: TrainConfig) -> TrainingProgress:
    """Where training ended, so scheduled maskers (start epoch, hints) mask as they did at the end."""
    pos = ckpt.get("position", {})
    epochs = int(pos.get("epoch", config.epochs)) or 1
    steps = int(pos.get("global_step", 0))
    per_epoch = max(1, steps // epochs)
    return TrainingProgress(epoch=max(0, epochs - 1), step=max(0, steps - 1), epochs=config.epochs,
                            steps_per_epoch=per_epoch)


def pick(rows: list[dict[str, Any]] | None, arm: str, feature: str) -> dict[str, Any] | None:
    for row in rows or []:
        if row["arm"] == arm and row["feature"] == feature:
            return row
    for row in rows or []:  # e.g. "cls" asked but the model has no CLS token: use the mean
        if row["arm"] == arm:
            return row
    return None


# --------------------------------------------------------------------------- runs
def learning_curve(run_dir: Path, study: StudyConfig, dataset: MaskkitDataset, device: torch.device,
                   final: dict[str, Any] | None) -> list[dict[str, Any]]:
    """Probe accuracy at each kept periodic checkpoint (the final one reuses ``final``)."""
    if not study.resolved_curve_every() or final is None:
        return []
    points = []
    last_epoch = study.epochs
    for path in list_checkpoints(run_dir):
        if path.name == "last.pt":
            continue
        epoch = int(re.findall(r"\d+", path.stem)[0])  # epoch_0004.pt
        if epoch == last_epoch:
            row = final
        else:
            model, _, _, _ = load_run_model(path, device)
            row = pick(probe_results(model, dataset, device, study, "pretrained"), "pretrained",
                       study.probe_feature)
        if row is not None:
            points.append({"epoch": epoch, "linear_acc": row["linear_acc"], "knn_acc": row["knn_acc"]})
    return points


def evaluate_run(run_dir: Path, study: StudyConfig, device: torch.device) -> dict[str, Any]:
    """Evaluate a finished run with the study protocol and write ``run_dir/study_eval.json``."""
    model, modality, config, ckpt = load_run_model(run_dir, device)
    dataset = eval_dataset(modality, study, config)
    probes = probe_results(model, dataset, device, study, "pretrained") if "probe" in study.eval else None
    latents = study_latents({"pretrained": model}, None, dataset, device, study)
    finetune = None
    if study.finetunes:
        finetune = finetune_run(run_dir, study, device)
    masker = build_masker(config.masker, config.masker_options)
    if "masker" in ckpt:
        masker.load_state_dict(ckpt["masker"])
    masker.to(device)
    progress = final_progress(ckpt, config)
    mask_ratio = float(ckpt["config"].get("mask_ratio", config.mask_ratio))
    loss_fn = modality.build_loss().to(device)
    idx, recon_on = reconstruction_indices(run_dir, dataset, study)
    own, own_masks = reconstruction_loss(model, loss_fn, masker, mask_ratio, dataset, idx, device,
                                         study.eval_seed, progress, keep_masks=study.mask_examples)
    shared, shared_masks = reconstruction_loss(model, loss_fn, RandomMasker().to(device), mask_ratio, dataset,
                                               idx, device, study.eval_seed, progress,
                                               keep_masks=study.mask_examples, host_noise=True)
    clustering, note = (clustering_metrics(model, dataset, masker, mask_ratio, device, study.eval_seed)
                        if study.analysis else (None, None))
    final = pick(probes, "pretrained", study.probe_feature)
    layout = model.tokenizer.layout
    result = {
        "protocol": study.protocol(), "run": run_dir.name, "seed": config.seed, "masker": config.masker,
        "mask_ratio": mask_ratio, "patch_size": ckpt["config"].get("modality_options", {}).get("patch_size"),
        "probes": probes, "probe_note": _probe_note(dataset, study, probes), "finetune": finetune,
        "latents": latents, "recon_own": own, "recon_shared": shared, "recon_samples": len(idx), "recon_on": recon_on,
        "clustering": clustering, "clustering_note": note,
        "curve": learning_curve(run_dir, study, dataset, device, final),
        "grid": list(layout.grid) if layout.grid is not None else None, "num_tokens": layout.num_tokens,
        "mask_examples": own_masks, "shared_mask_examples": shared_masks,
        "masker_config": _jsonable(masker.describe_config()),
    }
    write_json(run_dir / EVAL_FILE, result)
    return result


# --------------------------------------------------------------------------- baselines
def initial_parts(config: TrainConfig):
    """The run's modality (adapted to its training data) and its model at the initial weights."""
    return build_run(config, with_data=True, train=True)


def evaluate_baseline(config: TrainConfig, study: StudyConfig, device: torch.device, path: Path) -> dict[str, Any]:
    """Random-init encoder (the runs' exact initial weights for this seed) and the raw input, same protocol."""
    parts = initial_parts(config)
    model = parts.model.to(device).eval()
    dataset = eval_dataset(parts.modality, study, config)
    probes = probe_results(model, dataset, device, study, "random-init") if "probe" in study.eval else None
    finetune = None
    if study.finetunes:
        finetune = finetune_baseline(parts, config, study, device, path.with_name(path.stem + "_finetune"))
    if probes is not None:  # the raw input on the same subset and folds
        idx = labelled_subset(dataset, study.eval_max_samples, study.eval_seed)
        labels = np.asarray(dataset.labels)[idx]
        probes.append(probe("raw-input", "raw", raw_features(parts.modality, dataset, idx), labels,
                            cv_folds(labels, study.eval_seed), k=study.knn_k).to_dict())
    latents = study_latents({"random-init": model}, parts.modality, dataset, device, study)
    clustering, note = (clustering_metrics(model, dataset, RandomMasker().to(device), parts.mask_ratio, device,
                                           study.eval_seed) if study.analysis else (None, None))
    result = {"protocol": study.protocol(), "seed": config.seed,
              "patch_size": parts.modality.options_dict().get("patch_size"), "probes": probes,
              "probe_note": _probe_note(dataset, study, probes), "finetune": finetune, "latents": latents,
              "clustering": clustering, "clustering_note": note}
    write_json(path, result)
    return result


def study_latents(models: dict[str, MaskedAutoencoder], modality: Modality | None, dataset: MaskkitDataset,
                  device: torch.device, study: StudyConfig) -> list[dict[str, Any]] | None:
    """Latent probes (``maskkit.lab.latents``) with the study's subset size, seed and feature; None when
    frozen-feature probes are not requested or the data declares no latents."""
    if "probe" not in study.eval or not dataset.latents:
        return None
    return [r.to_dict() for r in evaluate_latents(models, modality, dataset, device, study.eval_seed,
                                                  study.eval_max_samples, study.probe_feature,
                                                  resolve_precision("auto", device))]


def _probe_note(dataset: MaskkitDataset, study: StudyConfig, probes: list[dict[str, Any]] | None) -> str | None:
    if probes is not None:
        return None
    if "probe" not in study.eval:
        return "frozen-feature probes not requested (eval does not list probe)"
    return probe_note(dataset, study)


# --------------------------------------------------------------------------- files
def write_json(path: Path, payload: dict[str, Any]) -> None:
    """Write via a temporary file, so an interrupted study never leaves half a result behind."""
    ensure_dir(path.parent)
    write_text(path, json.dumps(payload, indent=1))


def read_json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None


def is_current(payload: dict[str, Any] | None, study: StudyConfig) -> bool:
    return payload is not None and payload.get("protocol") == study.protocol()


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))


__all__ = ["EVAL_FILE", "clustering_metrics", "eval_dataset", "evaluate_baseline", "evaluate_run", "is_current",
           "learning_curve", "probe_results", "read_json", "reconstruction_loss", "write_json"]
