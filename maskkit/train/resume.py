"""A trainer's state in a checkpoint: what ``capture`` holds, ``write_checkpoint`` saves, and ``resume``,
which continues a run from its newest intact checkpoint exactly where it stopped. Each takes the ``Trainer``
(typed ``Any``: importing it here would close an import cycle)."""

from __future__ import annotations

from typing import Any

import torch

from maskkit.train import distributed as dist_utils
from maskkit.train.checkpoint import (
    FORMAT,
    VERSION,
    CheckpointError,
    atomic_save,
    candidates_newest_first,
    newest_intact,
    prune_checkpoints,
    rng_state,
    set_rng_state,
)
from maskkit.train.compat import check_not_finished, check_resume, resume_entry, run_settings, start_history
from maskkit.train.optim import TrainingStopped


def capture(t: Any, wall: float) -> dict[str, Any]:
    """Everything needed to continue bit-for-bit: weights, masker, optimiser, scaler, position, RNG, history
    (a collective under FSDP: every rank calls it; only the main rank's dict is complete)."""
    main = t.dist.is_main
    return {
        "format": FORMAT, "version": VERSION,
        **dist_utils.full_state_dicts(t.wrapped, {"model": t.parts.model, "masker": t.parts.masker}, main),
        "optimizer": dist_utils.optimizer_state(t.wrapped, t.optimizer, main),
        "scaler": t.scaler.state_dict() if t.scaler is not None else {},
        "config": t.resolved,
        "position": {"epoch": t.epoch, "batch_in_epoch": t.batch_in_epoch, "global_step": t.global_step,
                     "opt_step": t.opt_step, "samples_seen": t.samples_seen, "wall_time": wall,
                     "world_size": t.dist.world_size},
        "rng": rng_state(),
        "history": t.history,
    }


def write_checkpoint(t: Any, wall: float, periodic: bool = False) -> None:
    """``last.pt`` (and ``epoch_NNNN.pt`` when ``periodic``, pruned to ``keep_checkpoints``); never with
    non-finite weights. Every rank calls it (a collective under FSDP); the main rank writes."""
    state = capture(t, wall)
    if not t.dist.is_main:
        return
    bad = [k for k, v in state["model"].items() if v.is_floating_point() and not torch.isfinite(v).all()]
    if bad:
        raise TrainingStopped(f"refusing to save non-finite weights ({bad[0]}); last good checkpoint kept")
    ckdir = t.out / "checkpoints"
    atomic_save(state, ckdir / "last.pt")
    if periodic:
        atomic_save(state, ckdir / f"epoch_{t.epoch:04d}.pt")
        prune_checkpoints(t.out, t.config.keep_checkpoints)


def resume(t: Any) -> None:
    """Load model, masker, optimiser, scaler, position and RNG into the set-up trainer ``t``; record the
    resume (and any allowed setting change) in metrics.jsonl and the run's history."""
    if not candidates_newest_first(t.out):
        path = t.out / "checkpoints" / "last.pt"
        raise CheckpointError(f"`resume`: {path} does not exist (nothing to resume in {t.out})")
    found = newest_intact(t.out, load=True, warn=None)  # every rank picks the same file
    ckpt = found.checkpoint
    assert ckpt is not None
    changes = check_resume(ckpt["config"], t.resolved, t.config.allow_config_change)
    if found.damaged:
        message = found.warning()
        t._say(f"`resume`: {message}")
        t.metrics.write({"type": "warning", "message": message})
    check_not_finished(ckpt.get("position") or {}, t.config.epochs, t.out)
    try:  # shapes were checked above; what can still differ is the masker's state under new options
        dist_utils.load_full_state(t.wrapped, t.module, t.optimizer, ckpt["model"], ckpt["masker"], ckpt["optimizer"])
    except (RuntimeError, KeyError, ValueError) as exc:
        raise CheckpointError(f"`resume`: the saved state does not fit the new settings "
                              f"({str(exc).splitlines()[0][:200]})") from None
    if t.scaler is not None and ckpt.get("scaler"):
        t.scaler.load_state_dict(ckpt["scaler"])
    pos = ckpt["position"]
    t.epoch, t.batch_in_epoch = int(pos["epoch"]), int(pos["batch_in_epoch"])
    t.global_step, t.opt_step = int(pos["global_step"]), int(pos["opt_step"])
    t.samples_seen = int(pos.get("samples_seen", 0))
    t.wall_time_before = float(pos.get("wall_time", 0.0))
    if t.dist.world_size == int(pos.get("world_size", 1)):
        set_rng_state(ckpt["rng"])
    t.metrics.write({"type": "resume", "epoch": t.epoch, "step": t.global_step, "checkpoint": found.path.name})
    if changes:
        listed = ", ".join(f"{k} {v['from']!r} -> {v['to']!r}" for k, v in changes.items())
        t._say(f"`allow_config_change`: from step {t.global_step} on, {listed}")
        t.metrics.write({"type": "config_change", "epoch": t.epoch, "step": t.global_step, "changes": changes})
    t.history = list(ckpt.get("history") or start_history(run_settings(ckpt["config"])))
    t.history.append(resume_entry(t.epoch, t.global_step, found.path.name,
                                  [f"{s.path.name}: {s.reason}" for s in found.damaged], changes))
