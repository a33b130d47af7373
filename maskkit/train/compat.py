"""What may change when a run is resumed, and the run's history of changes.

Three kinds of settings:

- *shape* settings (modality and its options, model, data, batch size, held-out split, masker):
  the checkpoint cannot continue under other values, so a resume that changes them is refused;
- *run-time* settings (device, logging, checkpoint cadence, workers, progress bar, ...): they do
  not change what is learned and may change freely;
- everything else (epochs, learning rates, schedule, mask ratio, masker options, seed, precision,
  ...): allowed only with ``allow_config_change``; each change is recorded in the run's history with
  the step it took effect.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from maskkit.config_utils import ConfigError
from maskkit.train.checkpoint import CheckpointError

SHAPE_KEYS = ("modality", "model", "data", "batch_size", "holdout_fraction", "masker")
#: option tables compared key by key (``resolved_model`` is the model after preset + overrides)
SHAPE_TABLES = ("modality_options", "resolved_model")
#: model fields that do not change the weights' shapes
FREE_MODEL_KEYS = frozenset({"grad_checkpoint"})
RUNTIME_KEYS = frozenset({
    "out", "resume", "overwrite", "allow_config_change", "device", "progress", "num_workers", "log_every",
    "save_every", "save_every_steps", "keep_checkpoints", "probe_every", "visualize_samples", "compile",
    "strategy", "on_bad_file", "on_nonfinite", "model_options", "history", "resolved_precision",
})
#: per-invocation switches, never saved as part of a run's settings
INVOCATION_KEYS = ("overwrite", "allow_config_change")


def _same(a: Any, b: Any) -> bool:
    return json.dumps(a, sort_keys=True, default=str) == json.dumps(b, sort_keys=True, default=str)


def _show(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)


def shape_differences(saved: dict[str, Any], wanted: dict[str, Any]) -> list[str]:
    """``name old -> new`` for every shape setting that differs."""
    out = []
    for key in SHAPE_KEYS:
        if key in saved and key in wanted and not _same(saved[key], wanted[key]):
            out.append(f"{key} {_show(saved[key])} -> {_show(wanted[key])}")
    for table in SHAPE_TABLES:
        old, new = saved.get(table) or {}, wanted.get(table) or {}
        if table not in saved or table not in wanted:
            continue
        for key in sorted(set(old) | set(new)):
            if table == "resolved_model" and key in FREE_MODEL_KEYS:
                continue
            if not _same(old.get(key), new.get(key)):
                out.append(f"{key} {_show(old.get(key))} -> {_show(new.get(key))}")
    return out


def setting_changes(saved: dict[str, Any], wanted: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """{name: {"from": old, "to": new}} for every other setting that differs."""
    skip = set(SHAPE_KEYS) | set(SHAPE_TABLES) | RUNTIME_KEYS
    return {key: {"from": saved[key], "to": wanted[key]} for key in sorted(wanted)
            if key not in skip and key in saved and not _same(saved[key], wanted[key])}


def check_resume(saved: dict[str, Any], wanted: dict[str, Any], allow_change: bool,
                 source: str = "`resume`") -> dict[str, dict[str, Any]]:
    """Refuse shape changes; refuse other changes unless ``allow_change``; return the changes."""
    shape = shape_differences(saved, wanted)
    if shape:
        raise CheckpointError(f"{source}: cannot change {', '.join(shape)}: the checkpoint's model, tokenizer "
                              f"or data shapes depend on it; start a new run with another `out`")
    changes = setting_changes(saved, wanted)
    if changes and not allow_change:
        listed = ", ".join(f"{k} {_show(v['from'])} -> {_show(v['to'])}" for k, v in changes.items())
        raise CheckpointError(f"{source}: the run was trained with other settings ({listed}); pass "
                              f"`allow_config_change` to continue with the new values (recorded in "
                              f"config.json's history) or use another `out`")
    return changes


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


def run_settings(resolved: dict[str, Any]) -> dict[str, Any]:
    """A run's settings as saved (without the per-invocation switches)."""
    return {k: v for k, v in resolved.items() if k not in INVOCATION_KEYS and k != "history"}


def start_history(resolved: dict[str, Any]) -> list[dict[str, Any]]:
    """History of a new run: its original settings at step 0."""
    return [{"event": "start", "epoch": 0, "step": 0, "time": _now(), "config": run_settings(resolved)}]


def resume_entry(epoch: int, step: int, checkpoint: str, damaged: list[str],
                 changes: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """One resume: where it continued from, the damaged files it skipped, the settings it changed."""
    entry: dict[str, Any] = {"event": "resume", "epoch": epoch, "step": step, "time": _now(),
                             "checkpoint": checkpoint}
    if damaged:
        entry["skipped_damaged"] = damaged
    if changes:
        entry["changes"] = changes
    return entry


__all__ = ["check_resume", "resume_entry", "run_settings", "setting_changes", "shape_differences",
           "start_history"]


def check_not_finished(position: dict[str, Any], epochs: int, out: Any) -> None:
    """``resume`` of a run that trained all its epochs and wrote its summary has nothing to do: refuse
    it rather than rewrite the summary from an empty loop. (A run killed between its last checkpoint
    and its summary is resumed: it only writes the summary.)"""
    done = int(position.get("epoch", 0))
    finished = done >= epochs and int(position.get("batch_in_epoch", 0)) == 0
    if finished and (Path(out) / "summary.json").exists():
        epochs_done = f"{done} epoch" + ("s" if done != 1 else "")
        raise ConfigError(f"`resume`: the run in {out} already finished its {epochs_done}; to train it "
                          f"longer, give a larger `epochs` with `allow_config_change`")
