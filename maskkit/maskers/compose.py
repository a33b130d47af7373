"""Composition: hint swaps, curricula (masker A, then masker B) and per-batch mixtures.

Sub-maskers are built by name through the registry and held as submodules, so their parameters
train and their state rides in the checkpoint with the composite.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import Tensor, nn

from maskkit.config_utils import ConfigError
from maskkit.maskers.base import MaskContext, Masker, MaskPlan, ModelShape, TrainingProgress
from maskkit.registry import build_masker
from maskkit.tokens import TokenLayout


# --------------------------------------------------------------------------- hints
def apply_hints(plan: MaskPlan | Tensor, hint_ratio: float, ctx: MaskContext,
                hint_scores: Tensor | None = None,
                compensate_from: Literal["pool", "visible_only"] = "pool") -> MaskPlan:
    """Reveal ``int(hint_ratio * n_mask)`` hidden tokens and hide as many elsewhere (exact count).

    ``plan`` is a MaskPlan or a (B, N) bool mask hiding ``ctx.n_mask`` tokens per sample. Hints
    are chosen at random, or, with ``hint_scores`` (B, N), as the hidden tokens with the highest
    score. The same number is re-hidden uniformly at random from the enlarged visible pool
    (visible + hints; ``"pool"``, so ``hint_ratio >= 1`` is exactly random masking) or from the
    originally visible tokens only (``"visible_only"``). Batched gathers, no loop over samples.
    """
    if isinstance(plan, Tensor):
        plan = MaskPlan.from_scores(plan.float(), ctx.n_mask)
    n_mask, n_keep = plan.n_mask, plan.n_keep
    n_hint = int(min(max(hint_ratio, 0.0), 1.0) * n_mask)
    if compensate_from == "visible_only":
        n_hint = min(n_hint, n_keep)
    if n_hint == 0:
        return plan
    batch = plan.ids_mask.shape[0]
    if hint_scores is None:
        order = ctx.uniform(batch, n_mask).argsort(dim=1)
    else:
        order = hint_scores.gather(1, plan.ids_mask).argsort(dim=1, descending=True, stable=True)
    hidden = plan.ids_mask.gather(1, order)
    hints, still_hidden = hidden[:, :n_hint], hidden[:, n_hint:]
    if compensate_from == "pool":
        pool = torch.cat([plan.ids_keep, hints], dim=1)
        pick = ctx.uniform(batch, pool.shape[1]).argsort(dim=1)
        pool = pool.gather(1, pick)
        rehidden, visible = pool[:, :n_hint], pool[:, n_hint:]
    else:
        pick = ctx.uniform(batch, n_keep).argsort(dim=1)
        pool = plan.ids_keep.gather(1, pick)
        rehidden = pool[:, :n_hint]
        visible = torch.cat([pool[:, n_hint:], hints], dim=1)
    out = MaskPlan.from_shuffle(torch.cat([visible, still_hidden, rehidden], dim=1), n_keep)
    out.logs.update(plan.logs)
    return out


# --------------------------------------------------------------------------- options
def parse_options(value: dict[str, Any] | str, option: str) -> dict[str, Any]:
    """Sub-masker options from a TOML table or a ``"k=v;k=v"`` string (``,`` stays inside values)."""
    if isinstance(value, dict):
        return dict(value)
    out: dict[str, Any] = {}
    for item in str(value).split(";"):
        item = item.strip()
        if not item:
            continue
        if "=" not in item:
            raise ConfigError(f"masker.{option} expects 'key=value;key=value', got {item!r}")
        key, val = item.split("=", 1)
        out[key.strip()] = val.strip()
    return out


def _build_child(name: str, options: dict[str, Any], option: str) -> Masker:
    try:
        return build_masker(name, options)
    except ConfigError as exc:
        raise ConfigError(f"masker.{option} ({name}): {exc}") from None
    except ValueError as exc:  # unknown masker name
        raise ConfigError(f"masker.{option}: {exc}") from None


def _keep_unused_in_graph(children: list[Masker], active: int) -> Tensor | None:
    """0 * sum of the idle children's trainable parameters, so DDP sees every parameter used."""
    terms = [p.sum() * 0.0 for i, child in enumerate(children) if i != active
             for p in child.parameters() if p.requires_grad
             and not isinstance(p, nn.parameter.UninitializedParameter)]
    return torch.stack(terms).sum() if terms else None


class CompositeMasker(Masker):
    """Shared plumbing: layout checks, hooks and auxiliary losses go to the children.

    ``needs_model`` is True: a child may read the model view (lazy, uncomputed unless asked)
    feature/attention callbacks a child may need.
    """

    needs_model = True

    def children_maskers(self) -> list[Masker]:
        raise NotImplementedError

    def check_layout(self, layout: TokenLayout) -> None:
        for child in self.children_maskers():
            child.check_layout(layout)

    def on_epoch_start(self, progress: TrainingProgress) -> None:
        for child in self.children_maskers():
            child.on_epoch_start(progress)

    _active: int = 0  # the child that made the latest plan (one plan per step)

    def bind_model(self, shape: ModelShape) -> None:
        for child in self.children_maskers():
            child.bind_model(shape)

    def all_parameters_used(self) -> bool:
        return all(child.all_parameters_used() for child in self.children_maskers())

    def active_index(self) -> int:
        """The child that made the latest plan."""
        return self._active

    def pop_events(self) -> list[dict[str, Any]]:
        return [event for child in self.children_maskers() for event in child.pop_events()]

    def forget_feature_state(self) -> None:
        for child in self.children_maskers():
            child.forget_feature_state()

    def auxiliary_loss(self, ctx: MaskContext, plan: MaskPlan, output: Any,
                       per_token_loss: Tensor) -> Tensor | None:
        children = self.children_maskers()
        active = self._active
        loss = children[active].auxiliary_loss(ctx, plan, output, per_token_loss)
        idle = _keep_unused_in_graph(children, active)
        if idle is None:
            return loss
        return idle if loss is None else loss + idle

    def run_child(self, index: int, ctx: MaskContext) -> MaskPlan:
        self._active = index
        return self.children_maskers()[index](ctx)


# --------------------------------------------------------------------------- curriculum
@dataclass(frozen=True)
class CurriculumConfig:
    """``first`` until ``switch_fraction`` of training (or ``switch_epoch`` when set), then ``second``.

    Options of each masker: a TOML table or ``"key=value;key=value"``.
    """

    first: str = "random"
    second: str = "noise-green"
    switch_fraction: float = 0.5
    switch_epoch: int | None = None
    first_options: dict[str, Any] | str = ""
    second_options: dict[str, Any] | str = ""

    def __post_init__(self) -> None:
        if not 0.0 <= self.switch_fraction <= 1.0:
            raise ConfigError(f"`masker.switch_fraction` must be in [0, 1], got {self.switch_fraction}")
        if self.switch_epoch is not None and self.switch_epoch < 0:
            raise ConfigError(f"`masker.switch_epoch` must be >= 0, got {self.switch_epoch}")


class CurriculumMasker(CompositeMasker):
    name = "curriculum"
    description = "Masker A until a training-progress fraction (or epoch), then masker B."
    reference = "maskkit composition (e.g. random -> informed, as in SG-MAE's start epoch)"
    Config = CurriculumConfig

    def __init__(self, config: CurriculumConfig | None = None) -> None:
        super().__init__(config)
        cfg = self.config
        self.first = _build_child(cfg.first, parse_options(cfg.first_options, "first-options"), "first")
        self.second = _build_child(cfg.second, parse_options(cfg.second_options, "second-options"), "second")

    def children_maskers(self) -> list[Masker]:
        return [self.first, self.second]

    def stage(self, progress: TrainingProgress) -> int:
        cfg = self.config
        if cfg.switch_epoch is not None:
            return int(progress.epoch >= cfg.switch_epoch)
        return int(progress.fraction >= cfg.switch_fraction)

    def plan(self, ctx: MaskContext) -> MaskPlan:
        stage = self.stage(ctx.progress)
        plan = self.run_child(stage, ctx)
        plan.logs["curriculum_stage"] = torch.full((), float(stage), device=ctx.device)
        return plan


# --------------------------------------------------------------------------- mixture
@dataclass(frozen=True)
class MixtureConfig:
    """One of ``maskers`` per batch, drawn with ``probabilities`` (empty: uniform).

    ``options``: a table ``{masker-name-or-index: {key: value}}`` or ``"name.key=v;0.key=v"``.
    """

    maskers: tuple[str, ...] = ("random", "noise-green")
    probabilities: tuple[float, ...] = ()
    options: dict[str, Any] | str = ""

    def __post_init__(self) -> None:
        if not self.maskers:
            raise ConfigError("`masker.maskers` must name at least one masker")
        if self.probabilities:
            if len(self.probabilities) != len(self.maskers):
                raise ConfigError(f"`masker.probabilities` has {len(self.probabilities)} values for "
                                  f"{len(self.maskers)} maskers")
            if any(p < 0 for p in self.probabilities) or sum(self.probabilities) <= 0:
                raise ConfigError(f"`masker.probabilities` must be >= 0 with a positive sum, "
                                  f"got {self.probabilities}")


def _mixture_child_options(maskers: tuple[str, ...], options: dict[str, Any] | str) -> list[dict[str, Any]]:
    per_child: list[dict[str, Any]] = [{} for _ in maskers]
    raw = parse_options(options, "options")

    def targets(key: str) -> list[int]:
        if key.isdigit() and int(key) < len(maskers):
            return [int(key)]
        hits = [i for i, name in enumerate(maskers) if name == key]
        if not hits:
            raise ConfigError(f"`masker.options` names {key!r}, which is neither a listed masker "
                              f"({', '.join(maskers)}) nor an index")
        return hits

    for key, value in raw.items():
        if isinstance(value, dict):
            for i in targets(key):
                per_child[i].update(value)
            continue
        if "." not in key:
            raise ConfigError(f"`masker.options` key {key!r} must look like 'masker-name.option'")
        who, opt = key.rsplit(".", 1)
        for i in targets(who):
            per_child[i][opt] = value
    return per_child


class MixtureMasker(CompositeMasker):
    name = "mixture"
    description = "Picks one of several maskers per batch with given probabilities (e.g. ColorMAE colours)."
    reference = "maskkit composition (ColorMAE mixes noise colours)"
    Config = MixtureConfig

    def __init__(self, config: MixtureConfig | None = None) -> None:
        super().__init__(config)
        cfg = self.config
        child_options = _mixture_child_options(cfg.maskers, cfg.options)
        self.maskers = nn.ModuleList(
            _build_child(name, opts, f"maskers[{i}]") for i, (name, opts) in enumerate(
                zip(cfg.maskers, child_options, strict=True)))
        probs = cfg.probabilities or (1.0,) * len(cfg.maskers)
        total = float(sum(probs))
        self.cumulative = [sum(probs[: i + 1]) / total for i in range(len(probs))]

    def children_maskers(self) -> list[Masker]:
        return list(self.maskers)

    def choose(self, ctx: MaskContext) -> int:
        """One uniform draw, the same on every rank. Choosing a code path needs a Python value: it
        comes from the context's CPU ``host_generator`` (no device sync) when the trainer gives one."""
        u = ctx.host_uniform()
        for i, edge in enumerate(self.cumulative):
            if u < edge:
                return i
        return len(self.cumulative) - 1

    def plan(self, ctx: MaskContext) -> MaskPlan:
        index = self.choose(ctx)
        plan = self.run_child(index, ctx)
        plan.logs["mixture_choice"] = torch.full((), float(index), device=ctx.device)
        return plan
