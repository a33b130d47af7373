"""Checkpoints: complete, atomic (temp file + fsync + rename), loaded with ``weights_only=True``.

A checkpoint holds everything needed to continue bit-for-bit on CPU: model, masker, optimizer,
scaler, all RNG states and the position inside the epoch.
"""

from __future__ import annotations

import os
import random
import re
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from maskkit.config_utils import build_dataclass
from maskkit.errors import CheckpointError as CheckpointError  # importable from here as before
from maskkit.model.mae import ModelConfig
from maskkit.safe_io import UnsafePath, create_new, ensure_dir, refuse_planted
from maskkit.train.build import build_modality, build_model
from maskkit.train.config import TrainConfig
from maskkit.train.integrity import (
    CheckpointStatus,
    HashingWriter,
    candidates_newest_first,
    record_path,
    remember_written,
    stage_record,
    verify,
)

FORMAT = "maskkit-checkpoint"
VERSION = 1


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
        # one state per GPU visible at save; restore those that exist now (a resume may see fewer:
        # another node type, or one GPU per task under SLURM)
        for index, cuda_state in enumerate(state["cuda"][:torch.cuda.device_count()]):
            torch.cuda.set_rng_state(cuda_state, index)


def atomic_save(obj: dict[str, Any], path: Path) -> None:
    """Write to ``path.tmp`` in the same directory, fsync, then rename over ``path``.

    A checksum record (``path.sha256``, see :mod:`maskkit.train.integrity`) is renamed into place
    just before the file. A crash or a full disk leaves the previous pair untouched; the temp files
    are removed on error. Temp files are created with ``O_EXCL | O_NOFOLLOW``, and a link planted at
    any of the names is refused (:mod:`maskkit.safe_io`).
    """

    ensure_dir(path.parent)
    tmp = path.with_name(path.name + ".tmp")
    for name in (path, record_path(path)):
        refuse_planted(name, in_place=False)  # both are renamed over, never written in place
    record_tmp: Path | None = None
    try:
        with os.fdopen(create_new(tmp), "wb") as fh:
            writer = HashingWriter(fh)
            torch.save(obj, writer)
            fh.flush()
            os.fsync(fh.fileno())
        position = obj.get("position") if isinstance(obj.get("position"), dict) else None
        record_tmp = stage_record(tmp, path, position, (writer.sha.hexdigest(), writer.size))
        os.replace(record_tmp, record_path(path))
        os.replace(tmp, path)
        remember_written(path, {"sha256": writer.sha.hexdigest(), "size": writer.size,
                                "epoch": (position or {}).get("epoch"), "step": (position or {}).get("global_step")})
    except UnsafePath:
        raise
    except (OSError, RuntimeError) as exc:  # torch wraps a full disk in RuntimeError
        tmp.unlink(missing_ok=True)
        if record_tmp is not None:
            record_tmp.unlink(missing_ok=True)
        raise CheckpointError(f"could not write checkpoint {path}: {write_failure(exc)}") from None
    try:  # make the renames durable
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError:
        pass


def write_failure(exc: BaseException) -> str:
    """The one-line reason of a failed write: the OS's words (``No space left on device``), also when
    torch wrapped the ``OSError`` in a ``RuntimeError``."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, OSError) and seen.strerror:
            return seen.strerror
        seen = seen.__cause__ or seen.__context__
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text[:200]


def load_checkpoint(path: str | Path, verify_checksum: bool = True, *, kind: str = FORMAT, version: int = VERSION,
                    required: tuple[str, ...] = ("model", "config")) -> dict[str, Any]:
    """Load safely (no pickled code) and check it is a maskkit checkpoint of a known version.

    A file with a checksum record is verified first: a truncated or altered file is refused by name.
    A run directory means its newest intact checkpoint (see :func:`resolve_checkpoint_path`).
    ``kind``/``version``/``required``: the format marker, version and keys expected (fine-tuning
    checkpoints are read through here too, with their own marker).
    """

    p = Path(path)
    if p.is_dir():
        p = resolve_checkpoint_path(p)
    if not p.is_file():
        raise CheckpointError(f"{p}: no such checkpoint")
    if verify_checksum:
        status = verify(p)
        if not status.usable:
            raise CheckpointError(f"{p}: checkpoint is damaged ({status.reason})")
    try:
        ckpt = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for corrupt/foreign files
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if "Unsupported global" in str(exc):  # torch.load(weights_only=True) met a pickled class
            raise CheckpointError(f"{p}: refused: it holds pickled Python objects beyond tensors, which could "
                                  f"run code when loaded; maskkit loads with weights_only=True and never "
                                  f"unpickles them (open it yourself only if you trust its source)") from None
        raise CheckpointError(f"{p}: not a loadable maskkit checkpoint ({first[:200]})") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != kind:
        what = "maskkit" if kind == FORMAT else f"{kind!r}"
        raise CheckpointError(f"{p}: not a {what} checkpoint (missing format marker)")
    found = ckpt.get("version")
    if found != version:
        raise CheckpointError(f"{p}: checkpoint version {found} is not supported (this maskkit reads {version})")
    for key in required:
        if key not in ckpt:
            raise CheckpointError(f"{p}: checkpoint is incomplete (no {key!r})")
    return ckpt


def resolve_checkpoint_path(path: str | Path, warn: Callable[[str], None] | None = None) -> Path:
    """A run directory means its newest intact checkpoint (``checkpoints/last.pt`` unless it is
    damaged: then the newest periodic one that verifies, with a warning naming the damaged file,
    printed to stderr unless ``warn`` is given); a file is used as is."""

    p = Path(path)
    if p.is_dir():
        if not (p / "checkpoints").is_dir():
            raise CheckpointError(f"{p}: run directory has no checkpoints/last.pt")
        return newest_intact(p, warn=warn or warn_user).path
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
        record_path(old).unlink(missing_ok=True)


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

    known = {f.name for f in fields(ModelConfig)}
    try:
        return asdict(ModelConfig(**{k: v for k, v in values.items() if k in known}))
    except (TypeError, ValueError):
        return dict(values)


def load_run_model(path: str | Path, device: str | torch.device = "cpu"):
    """(model, modality, TrainConfig, checkpoint) rebuilt from a run directory or checkpoint file."""

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
    return model, modality, TrainConfig.from_saved(saved), ckpt


def warn_user(message: str) -> None:
    """Library warning; the CLI prints it as one ``warning:`` line in its own words."""
    warnings.warn(message, UserWarning, stacklevel=3)


@dataclass
class IntactCheckpoint:
    """The newest checkpoint that passed, the damaged ones skipped on the way, and (if loaded) it."""

    path: Path
    damaged: list[CheckpointStatus] = field(default_factory=list)
    checkpoint: dict[str, Any] | None = None

    def warning(self) -> str | None:
        if not self.damaged:
            return None
        bad = "; ".join(f"{s.path} is damaged ({s.reason})" for s in self.damaged)
        return f"{bad}; using {self.path} instead"


def newest_intact(run_dir: str | Path, load: bool = False,
                  warn: Callable[[str], None] | None = warn_user) -> IntactCheckpoint:
    """The newest checkpoint of a run that verifies (and, with ``load``, that loads).

    Damaged files are skipped with one warning that names them; raises ``CheckpointError`` when no
    checkpoint is usable.
    """
    run = Path(run_dir)
    damaged: list[CheckpointStatus] = []
    for path in candidates_newest_first(run):
        status = verify(path)
        if not status.usable:
            damaged.append(status)
            continue
        ckpt = None
        if load:
            try:
                ckpt = load_checkpoint(path, verify_checksum=False)
            except CheckpointError as exc:
                damaged.append(CheckpointStatus(path, "damaged", str(exc).split(": ", 1)[-1], status.size))
                continue
        found = IntactCheckpoint(path, damaged, ckpt)
        message = found.warning()
        if message and warn is not None:
            warn(message)
        return found
    if damaged:
        names = "; ".join(f"{s.path.name}: {s.reason}" for s in damaged)
        raise CheckpointError(f"{run}: no intact checkpoint ({names})")
    raise CheckpointError(f"{run}: run directory has no checkpoints")
