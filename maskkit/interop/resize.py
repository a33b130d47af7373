"""Run a trained model at another input size (image size, frame count, spectrogram length).

Sin-cos positions are recomputed from the new grid for free (they are not saved); learned tables
(``pos_embed="learned"``) are interpolated over the grid: bicubic for 2-D grids, trilinear for
video's (t, h, w), linear for 1-D. Point clouds need nothing: their positions are an MLP of group
centres, so another ``num_groups`` just works.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from maskkit.config_utils import ConfigError, build_dataclass
from maskkit.model.mae import ModelConfig
from maskkit.model.weights import fit_state_to_grid
from maskkit.model.weights import resize_table as resize_table  # its home was here
from maskkit.train.build import build_modality, build_model
from maskkit.train.checkpoint import CheckpointError, load_checkpoint, load_run_model
from maskkit.train.config import TrainConfig

#: options that change the input size; other overrides would change what the weights mean
SIZE_OPTIONS = ("image_size", "num_frames", "num_points", "num_groups")


def check_size_overrides(overrides: dict[str, Any]) -> None:
    bad = sorted(set(overrides) - set(SIZE_OPTIONS))
    if bad:
        raise ConfigError(f"only the input size can change after pretraining ({', '.join(SIZE_OPTIONS)}); "
                          f"got {', '.join(bad)}")


def load_resized(path: str | Path, overrides: dict[str, Any] | None, device: str | torch.device = "cpu"):
    """``load_run_model`` at another input size: (model, modality, TrainConfig, checkpoint).

    ``overrides`` are modality options (``image_size``, ``num_frames``...); None or {} loads as trained.
    """
    if not overrides:
        return load_run_model(path, device)
    check_size_overrides(overrides)
    ckpt = load_checkpoint(path)
    saved = dict(ckpt["config"])
    old_options = dict(saved.get("modality_options", {}))
    new_options = {**old_options, **overrides}
    model_cfg = build_dataclass(ModelConfig, saved["resolved_model"])
    old_grid = build_modality(saved["modality"], old_options).build_tokenizer(model_cfg.embed_dim).layout.grid
    modality = build_modality(saved["modality"], new_options)
    model = build_model(modality, model_cfg)
    state = fit_state_to_grid(ckpt["model"], old_grid, model.tokenizer.layout.grid)
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise CheckpointError(f"{path}: weights do not fit the model at the new size "
                              f"({str(exc).splitlines()[0]})") from None
    model.to(device).eval()
    saved["modality_options"] = modality.options_dict()
    return model, modality, TrainConfig.from_saved(saved), {**ckpt, "config": {**ckpt["config"], **saved}}


def size_overrides(image_size: str | None = None, num_frames: int | None = None,
                   extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """CLI values (None = not given) -> modality option overrides."""
    out: dict[str, Any] = dict(extra or {})
    if image_size is not None:
        out["image_size"] = image_size
    if num_frames is not None:
        out["num_frames"] = num_frames
    return out
