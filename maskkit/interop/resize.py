"""Run a trained model at another input size (image size, frame count, spectrogram length).

Sin-cos positions are recomputed from the new grid for free (they are not saved); learned tables
(``pos_embed="learned"``) are interpolated over the grid: bicubic for 2-D grids, trilinear for
video's (t, h, w), linear for 1-D. Point clouds need nothing: their positions are an MLP of group
centres, so another ``num_groups`` just works.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from maskkit.config_utils import ConfigError, build_dataclass
from maskkit.model.mae import ModelConfig
from maskkit.train.build import build_modality, build_model
from maskkit.train.checkpoint import CheckpointError, load_checkpoint, load_run_model
from maskkit.train.config import TrainConfig

#: options that change the input size; other overrides would change what the weights mean
SIZE_OPTIONS = ("image_size", "num_frames", "num_points", "num_groups")


def resize_table(table: Tensor, old_grid: tuple[int, ...] | None, new_grid: tuple[int, ...] | None,
                 label: str = "position table") -> Tensor:
    """(1, N, D) table over ``old_grid`` -> (1, prod(new_grid), D). ``old_grid=None``: a square (or cube)
    grid of the same rank as ``new_grid``, as timm / Hugging Face square checkpoints have."""
    if new_grid is None:
        raise CheckpointError(f"{label}: cannot resize a position table for unordered tokens")
    n, d = table.shape[1], table.shape[-1]
    if old_grid is None:
        side = round(n ** (1.0 / len(new_grid)))
        if side ** len(new_grid) != n:
            raise CheckpointError(f"{label}: a table of {n} positions is not a square {len(new_grid)}-D grid; "
                                  f"cannot fit it to the model's grid {new_grid}")
        old_grid = (side,) * len(new_grid)
    if math.prod(old_grid) != n:
        raise CheckpointError(f"{label}: {n} positions do not form the grid {old_grid}")
    if tuple(old_grid) == tuple(new_grid):
        return table
    mode = {1: "linear", 2: "bicubic", 3: "trilinear"}.get(len(new_grid))
    if mode is None:
        raise CheckpointError(f"{label}: cannot interpolate a {len(new_grid)}-D grid")
    grid = table.float().reshape(1, *old_grid, d).movedim(-1, 1)
    out = F.interpolate(grid, size=tuple(new_grid), mode=mode, align_corners=False)
    return out.movedim(1, -1).reshape(1, -1, d).to(table.dtype)


def fit_state_to_grid(state: dict[str, Tensor], old_grid: tuple[int, ...] | None,
                      new_grid: tuple[int, ...] | None) -> dict[str, Tensor]:
    """Interpolate the learned position tables of a maskkit state dict from one grid to another."""
    out = dict(state)
    for key in ("encoder_pos.table", "decoder_pos.table"):
        if key in out and old_grid != new_grid:
            out[key] = resize_table(out[key], old_grid, new_grid, key)
    return out


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
