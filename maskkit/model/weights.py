"""``init_from``: read a timm / Hugging Face ViT or ViT-MAE checkpoint, or a maskkit run, from disk
and load what fits into a maskkit model, reporting loaded, missing and unexpected keys.

Files: ``.safetensors`` (needs the ``safetensors`` package), torch files (``.pt``/``.pth``/``.bin``,
read with ``weights_only=True``; a ``model``/``state_dict`` entry is unwrapped), a Hugging Face
directory (``config.json`` + ``model.safetensors`` or ``pytorch_model.bin``), a directory written by
``maskkit export``, or a maskkit run directory / checkpoint. Nothing is ever downloaded.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from maskkit.errors import CheckpointError
from maskkit.model import keys as K


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


WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin", "model.pt", "model.pth")


@dataclass
class ExternalWeights:
    """Weights in maskkit's key names, what format they came from and what was left over."""

    path: str
    kind: str  # "timm" | "hf" | "maskkit"
    state: dict[str, Tensor]
    unused: list[str] = field(default_factory=list)
    config: dict[str, Any] | None = None  # config.json next to the weights, when there is one

    @property
    def has_position_table(self) -> bool:
        return "encoder_pos.table" in self.state

    def model_hints(self) -> dict[str, Any]:
        """Model options the weights fix (width, depth, MLP ratio); heads come from config.json when present."""
        hints: dict[str, Any] = {}
        proj = self.state.get("tokenizer.proj.weight")
        if proj is not None:
            hints["embed_dim"] = int(proj.shape[0])
        depth = {int(k.split(".")[1]) for k in self.state if k.startswith("blocks.")}
        if depth:
            hints["depth"] = max(depth) + 1
        fc1 = self.state.get("blocks.0.mlp.fc1.weight")
        if fc1 is not None and proj is not None:
            hints["mlp_ratio"] = fc1.shape[0] / proj.shape[0]
        return hints


@dataclass
class InitReport:
    path: str
    kind: str
    loaded: list[str]
    missing: list[str]
    unexpected: list[str]
    notes: list[str] = field(default_factory=list)

    def summary(self) -> str:
        def short(names: list[str]) -> str:
            groups = sorted({n.split(".")[0] for n in names})
            if not names:
                return "0"
            return f"{len(names)} ({', '.join(groups[:6])}{', ...' if len(groups) > 6 else ''})"
        text = (f"weights from {self.path} ({self.kind}): loaded {len(self.loaded)} tensors, missing "
                f"{short(self.missing)}, unexpected {short(self.unexpected)}")
        return text + "".join(f"; {n}" for n in self.notes)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _read_file(path: Path) -> dict[str, Any]:
    if path.suffix == ".safetensors":
        try:
            from safetensors.torch import load_file
        except ImportError:
            raise CheckpointError(f"`init_from` {path}: reading .safetensors needs the safetensors package "
                                  f"(pip install 'maskkit[interop]')") from None
        try:
            return dict(load_file(str(path)))
        except Exception as exc:
            raise CheckpointError(f"`init_from` {path}: not a readable safetensors file ({exc})") from None
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise CheckpointError(f"`init_from` {path}: not a loadable torch file ({first[:200]})") from None
    if not isinstance(obj, dict):
        raise CheckpointError(f"`init_from` {path}: expected a state dict, got {type(obj).__name__}")
    return obj


def _unwrap(obj: dict[str, Any]) -> tuple[dict[str, Tensor], bool]:
    """(state dict, is a maskkit checkpoint)."""
    if obj.get("format") == "maskkit-checkpoint":
        return obj["model"], True
    for key in ("model", "state_dict", "model_state", "module"):
        if isinstance(obj.get(key), dict):
            return _unwrap(obj[key])[0], False
    return {k: v for k, v in obj.items() if isinstance(v, Tensor)}, False


def read_weights(path: str | Path) -> ExternalWeights:
    """Find, read and convert the weights at ``path`` to maskkit key names."""
    p = Path(path).expanduser()
    if not p.exists():
        raise CheckpointError(f"`init_from` {p}: no such file or directory")
    config = None
    if p.is_dir():
        if (p / "checkpoints" / "last.pt").is_file():
            p = p / "checkpoints" / "last.pt"
        else:
            if (p / "config.json").is_file():
                try:
                    config = json.loads((p / "config.json").read_text())
                except json.JSONDecodeError as exc:
                    raise CheckpointError(f"`init_from` {p}/config.json: not valid JSON ({exc})") from None
            found = [p / f for f in WEIGHT_FILES if (p / f).is_file()]
            if not found:
                raise CheckpointError(f"`init_from` {p}: no weights there (looked for {', '.join(WEIGHT_FILES)} "
                                      f"or checkpoints/last.pt)")
            p = found[0]
    elif (p.parent / "config.json").is_file():
        try:
            config = json.loads((p.parent / "config.json").read_text())
        except json.JSONDecodeError:
            config = None
    state, is_maskkit = _unwrap(_read_file(p))
    if not state:
        raise CheckpointError(f"`init_from` {p}: the file holds no tensors")
    if is_maskkit or "tokenizer.proj.weight" in state or any(k.startswith("tokenizer.") for k in state):
        return ExternalWeights(str(p), "maskkit", dict(state), [], config)
    if "patch_embed.proj.weight" in state:
        converted, unused = K.from_timm(state)
        return ExternalWeights(str(p), "timm", converted, unused, config)
    if any(k.split(".", 1)[-1].startswith("embeddings.patch_embeddings") or k.startswith("embeddings.")
           for k in state):
        converted, unused = K.from_hf(state)
        return ExternalWeights(str(p), "hf", converted, unused, config)
    sample = ", ".join(list(state)[:4])
    raise CheckpointError(f"`init_from` {p}: not a timm, Hugging Face or maskkit ViT state dict "
                          f"(first keys: {sample})")


def load_into(model: torch.nn.Module, weights: ExternalWeights) -> InitReport:
    """Copy every tensor whose name and shape fit; position tables over another grid are resized.

    A shape that cannot fit (another width, patch size or channel count) is a one-line error naming
    the tensor and both shapes.
    """
    target = model.state_dict()
    report = InitReport(weights.path, weights.kind, [], [], list(weights.unused))
    grid = model.tokenizer.layout.grid
    incoming = dict(weights.state)
    for name in ("encoder_pos.table", "decoder_pos.table"):
        table = incoming.pop(name, None)
        if table is None:
            continue
        module = model.encoder_pos if name.startswith("encoder") else model.decoder_pos
        current = module.table.detach()
        if table.shape[-1] != current.shape[-1]:
            raise CheckpointError(f"`init_from` {weights.path}: {name} has shape {tuple(table.shape)} in the "
                                  f"checkpoint but {tuple(current.shape)} in the model; choose a model that matches "
                                  f"({describe_hints(weights)})")
        if table.shape[1] != current.shape[1]:
            before = table.shape[1]
            table = resize_table(table, None, grid, weights.path)
            report.notes.append(f"{name} resized from {before} to {current.shape[1]} positions")
        if name in target:
            incoming[name] = table
        elif torch.allclose(table.float(), current.float(), atol=1e-5):
            report.loaded.append(name)  # equal to the sin-cos table the model computes
        else:
            raise CheckpointError(f"`init_from` {weights.path}: the checkpoint's position table is not maskkit's "
                                  f"sin-cos; build the model with `model_options` pos_embed=learned")
    for key, value in incoming.items():
        if key not in target:
            report.unexpected.append(key)
            continue
        if tuple(target[key].shape) != tuple(value.shape):
            raise CheckpointError(f"`init_from` {weights.path}: {key} has shape {tuple(value.shape)} in the "
                                  f"checkpoint but {tuple(target[key].shape)} in the model; choose a model that "
                                  f"matches ({describe_hints(weights)})")
        target[key] = value.to(target[key].dtype)
        report.loaded.append(key)
    report.missing = sorted(set(model.state_dict()) - set(report.loaded))
    if not any(k.startswith("blocks.") for k in report.loaded):
        raise CheckpointError(f"`init_from` {weights.path}: no encoder block fits this model "
                              f"({describe_hints(weights)})")
    model.load_state_dict(target)
    return report


def describe_hints(weights: ExternalWeights) -> str:
    hints = weights.model_hints()
    return ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in hints.items())


def init_model_options(weights: ExternalWeights, model_options: dict[str, Any]) -> dict[str, Any]:
    """Model options a run started from ``weights`` needs: a learned position table when the weights
    carry one (timm / Hugging Face), unless the options say otherwise."""
    options = dict(model_options)
    if weights.kind != "maskkit" and weights.has_position_table:
        options.setdefault("pos_embed", "learned")
    elif weights.kind == "maskkit" and "encoder_pos.table" in weights.state:
        options.setdefault("pos_embed", "learned")
    return options
