"""Checkpoints: complete, atomic (temp file + fsync + rename), loaded with ``weights_only=True``.

A checkpoint holds everything needed to continue bit-for-bit on CPU: model, masker, optimizer,
scaler, all RNG states and the position inside the epoch.
"""

from __future__ import annotations

import os
import random
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch

FORMAT = "maskkit-checkpoint"
VERSION = 1


class CheckpointError(ValueError):
    """A checkpoint is missing, unreadable, foreign or incompatible; the message says which and why."""


def rng_state() -> dict[str, Any]:
    np_state = np.random.get_state()
    state: dict[str, Any] = {
        "python": list(random.getstate()[1]) + [random.getstate()[2] if random.getstate()[2] is not None else -1],
        "python_version": random.getstate()[0],
        "numpy_keys": torch.from_numpy(np_state[1].astype(np.int64)),
        "numpy_pos": int(np_state[2]),
        "numpy_has_gauss": int(np_state[3]),
        "numpy_gauss": float(np_state[4]),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    py = state["python"]
    gauss = None if py[-1] == -1 else py[-1]
    random.setstate((state["python_version"], tuple(int(v) for v in py[:-1]), gauss))
    np.random.set_state(("MT19937", state["numpy_keys"].numpy().astype(np.uint32), state["numpy_pos"],
                         state["numpy_has_gauss"], state["numpy_gauss"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def atomic_save(obj: dict[str, Any], path: Path) -> None:
    """Write to ``path.tmp`` in the same directory, fsync, then rename over ``path``.

    A crash or a full disk leaves the previous file untouched; the temp file is removed on error.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    try:
        with open(tmp, "wb") as fh:
            torch.save(obj, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise CheckpointError(f"could not write checkpoint {path}: {exc.strerror or exc}") from None
    try:  # make the rename durable
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError:
        pass


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load safely (no pickled code) and check it is a maskkit checkpoint of a known version."""
    p = Path(path)
    if p.is_dir():
        p = resolve_checkpoint_path(p)
    if not p.is_file():
        raise CheckpointError(f"{p}: no such checkpoint")
    try:
        ckpt = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for corrupt/foreign files
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"{p}: not a loadable maskkit checkpoint ({first[:200]})") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise CheckpointError(f"{p}: not a maskkit checkpoint (missing format marker)")
    version = ckpt.get("version")
    if version != VERSION:
        raise CheckpointError(f"{p}: checkpoint version {version} is not supported (this maskkit reads {VERSION})")
    for key in ("model", "config"):
        if key not in ckpt:
            raise CheckpointError(f"{p}: checkpoint is incomplete (no {key!r})")
    return ckpt


def resolve_checkpoint_path(path: str | Path) -> Path:
    """A run directory means its ``checkpoints/last.pt``; a file is used as is."""
    p = Path(path)
    if p.is_dir():
        candidate = p / "checkpoints" / "last.pt"
        if candidate.is_file():
            return candidate
        raise CheckpointError(f"{p}: run directory has no checkpoints/last.pt")
    return p


def list_checkpoints(run_dir: str | Path) -> list[Path]:
    """Periodic checkpoints in epoch order, then last.pt."""
    ckdir = Path(run_dir) / "checkpoints"
    periodic = sorted(ckdir.glob("epoch_*.pt"), key=lambda q: int(re.findall(r"\d+", q.stem)[0]))
    last = ckdir / "last.pt"
    return periodic + ([last] if last.is_file() else [])


def prune_checkpoints(run_dir: Path, keep: int) -> None:
    if keep <= 0:
        return
    periodic = [p for p in list_checkpoints(run_dir) if p.name != "last.pt"]
    for old in periodic[:-keep]:
        old.unlink(missing_ok=True)


def check_compatible(ckpt: dict[str, Any], expected: dict[str, Any], source: str) -> None:
    """Refuse a checkpoint made for another modality / model shape, naming what differs."""
    saved = ckpt["config"]
    for key in ("modality", "model"):
        if key in expected and saved.get(key) != expected[key]:
            raise CheckpointError(f"{source}: checkpoint was trained with {key}={saved.get(key)!r}, "
                                  f"this run uses {key}={expected[key]!r}")
    if "resolved_model" in expected and _model_shape(saved.get("resolved_model")) != _model_shape(
            expected["resolved_model"]):
        raise CheckpointError(f"{source}: checkpoint model shape {saved.get('resolved_model')} differs from "
                              f"this run's {expected['resolved_model']}")


def _model_shape(values: dict[str, Any] | None) -> dict[str, Any] | None:
    """A saved model config with today's defaults filled in (fields added later compare equal)."""
    if values is None:
        return None
    from dataclasses import asdict, fields

    from maskkit.model.mae import ModelConfig

    known = {f.name for f in fields(ModelConfig)}
    try:
        return asdict(ModelConfig(**{k: v for k, v in values.items() if k in known}))
    except (TypeError, ValueError):
        return dict(values)


def load_run_model(path: str | Path, device: str | torch.device = "cpu"):
    """(model, modality, TrainConfig, checkpoint) rebuilt from a run directory or checkpoint file."""
    from maskkit.config_utils import build_dataclass
    from maskkit.model.mae import ModelConfig
    from maskkit.train.build import build_modality, build_model
    from maskkit.train.config import TrainConfig

    ckpt = load_checkpoint(path)
    saved = dict(ckpt["config"])
    modality = build_modality(saved["modality"], saved.get("modality_options", {}))
    model_cfg = build_dataclass(ModelConfig, saved["resolved_model"])
    model = build_model(modality, model_cfg)
    try:
        model.load_state_dict(ckpt["model"])
    except RuntimeError as exc:
        raise CheckpointError(f"{path}: weights do not fit the model ({str(exc).splitlines()[0]})") from None
    model.to(device).eval()
    fields = {k: v for k, v in saved.items() if k not in ("resolved_model",)}
    config = TrainConfig.from_dict(fields)
    return model, modality, config, ckpt
