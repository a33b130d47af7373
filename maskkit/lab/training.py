"""Training as ``maskkit train`` runs it: the trainer plus the lab's standard callbacks.

``maskkit.train`` stays free of evaluation and picture code; this module plugs the clustering probe
(``probe_every``) and the end-of-run reconstruction picture into it.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from maskkit.lab.analysis import probe_metrics
from maskkit.lab.coverage import coverage_probe, masker_coverage, untrained_baseline
from maskkit.lab.visualize import render_reconstructions
from maskkit.registry import build_masker
from maskkit.train.callbacks import Callback, TrainState
from maskkit.train.checkpoint import load_checkpoint, load_run_model
from maskkit.train.config import TrainConfig
from maskkit.train.trainer import RunResult, run_training


class ClusteringProbe(Callback):
    """The token-clustering metrics every ``every`` epochs, as ``probe/<metric>`` scalars."""

    def __init__(self, every: int) -> None:
        self.every = every

    def epoch_metrics(self, state: TrainState) -> dict[str, float]:
        if self.every <= 0 or state.epoch % self.every:
            return {}
        parts = state.parts
        metrics = probe_metrics(parts.model, parts.dataset, parts.masker, parts.mask_ratio, device=state.device,
                                seed=state.config.seed, amp_dtype=state.amp_dtype)
        return {f"probe/{k}": v for k, v in metrics.items()}


class ReconstructionPicture(Callback):
    """``reconstruction.png`` of the final model on a few training samples, and with ``every`` > 0
    ``pictures/epoch_NNNN.png`` every ``every`` epochs; each is sent to the run's trackers."""

    def __init__(self, num_samples: int, every: int = 0) -> None:
        self.num_samples = num_samples
        self.every = every

    def on_epoch_end(self, state: TrainState) -> None:
        if not self.every or state.epoch % self.every or state.epoch >= state.config.epochs:
            return  # the last epoch gets the end-of-run picture
        if state.distributed:  # wrapped modules need every rank: the end-of-run picture only
            return
        path = state.out / "pictures" / f"epoch_{state.epoch:04d}.png"
        render_reconstructions(state.parts, path, state.device, num_samples=self.num_samples,
                               seed=state.config.seed)
        state.metrics.image("reconstruction", path, state.step)

    def on_train_end(self, state: TrainState) -> None:
        parts = state.parts
        if state.distributed:  # wrapped (sharded/replicated) modules need every rank: read the checkpoint
            model = load_run_model(state.last_checkpoint, state.device)[0]
            masker = build_masker(state.config.masker, state.config.masker_options).to(state.device)
            masker.load_state_dict(load_checkpoint(state.last_checkpoint)["masker"])
            parts = replace(parts, model=model, masker=masker)
        path = render_reconstructions(parts, state.out / "reconstruction.png", state.device,
                                      num_samples=self.num_samples, seed=state.config.seed)
        state.metrics.image("reconstruction", path, state.step)


class ObjectCoverage(Callback):
    """Share of object tokens the masker hides at each epoch's end on fixed samples, beside random
    masking's expectation and, for maskers that read the model, the same masker reading the
    untrained model of the run's seed (``objects/...`` scalars); only for datasets with object masks."""

    def __init__(self) -> None:
        self.probe: Any = None
        self.checked = False
        self.untrained: Any = None  # (model, masker) as initialised; () when the masker reads no model

    def epoch_metrics(self, state: TrainState) -> dict[str, float]:
        if state.distributed and state.config.strategy == "fsdp":  # maskers read the unsharded model
            return {}
        parts = state.parts
        if not self.checked:
            self.checked = True
            if parts.dataset is not None and parts.dataset.has_object_masks:
                self.probe = coverage_probe(parts.dataset, parts.modality, parts.model.tokenizer)
        if self.probe is None:
            return {}
        values = masker_coverage(parts.model, parts.masker, self.probe, parts.mask_ratio, state.progress,
                                 seed=state.config.seed, device=state.device, amp_dtype=state.amp_dtype)
        values.update(self._untrained(state))
        return {f"objects/{k}": v for k, v in values.items()}

    def _untrained(self, state: TrainState) -> dict[str, float]:
        """``coverage_untrained``: the same masker, at the same point of its schedule, reading the
        run's model as initialised (maskers that read the model only)."""
        if self.untrained is None:
            parts = state.parts
            self.untrained = untrained_baseline(parts.masker, parts.modality, parts.model_config,
                                                state.config.seed, state.device) or ()
        if not self.untrained:
            return {}
        model, masker = self.untrained
        masker.load_state_dict(state.parts.masker.state_dict(), strict=False)  # today's schedule
        masker.forget_feature_state()
        values = masker_coverage(model, masker, self.probe, state.parts.mask_ratio, state.progress,
                                 seed=state.config.seed, device=state.device, amp_dtype=state.amp_dtype)
        return {"coverage_untrained": values["coverage"]}


def standard_callbacks(config: TrainConfig) -> list[Callback]:
    """What ``maskkit train`` and ``maskkit compare`` attach to every run."""
    return [ClusteringProbe(config.probe_every), ObjectCoverage(),
            ReconstructionPicture(config.visualize_samples, every=config.picture_every)]


def train(config: TrainConfig, console: Any = None, callbacks: list[Callback] | None = None) -> RunResult:
    """Train with the standard callbacks (plus ``callbacks``)."""
    return run_training(config, console=console, callbacks=standard_callbacks(config) + list(callbacks or []))
