"""Self-guided masking (SG-MAE, Shin et al., NeurIPS 2024): the model masks what it already groups.

Per step, once informed masking has started: no-grad token features of the full input from one
encoder layer -> cosine affinity graph per sample -> two-way normalized cut -> score every token by
similarity to the target cluster -> hide the top ``n_mask`` -> reveal a fraction of them as hints and
hide as many elsewhere, so every sample keeps exactly ``n_keep`` tokens. Random masking (MAE's,
draw for draw) before the start. See docs/self-guided.md for every option, what differs from
the paper, and the measurements behind the defaults (why features are centred and lose their
positional part, and why hints are few and truly revealed).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, fields
from typing import Any, Literal

import torch
from torch import Tensor

from maskkit.config_utils import ConfigError
from maskkit.maskers import graph
from maskkit.maskers.base import MaskContext, Masker, MaskPlan, TrainingProgress, exact_topk_plan
from maskkit.maskers.compose import apply_hints
from maskkit.maskers.random import random_plan
from maskkit.maskers.signals import exploitation_rates
from maskkit.maskers.stats import pairwise_iou
from maskkit.sync_guard import deliberate_sync

Preset = Literal["sgmae", "sgmae-v1", "sgmae-spec", "sgim", "custom"]

#: maskkit's reconstruction of SG-MAE: the small-scale fixes (centring, position removal, per-sample
#: graph threshold), a middle feature layer, and few hints that are really revealed (hidden tokens
#: swapped with visible ones), so once informed masking starts the masks are measurably informed.
_SGMAE: dict[str, Any] = dict(
    feature_layer="middle", feature_source="encoder", centre=True, remove_position=True,
    position_momentum=0.99, partition="auto", affinity="tokencut", tau=0.2, tau_quantile=0.6, knn=0,
    min_neighbours=3, eps=1e-5, split="mean", power_iters=4096, target="tokencut", scoring="similarity",
    hint_ratio=0.1, hint_min=0.05, hint_schedule="linear_decay", hint_select="random",
    compensate_from="visible_only", start="fraction", start_epoch=50, start_fraction=0.125,
    exploit_every=50, exploit_patience=3, exploit_lead=3, exploit_margin=0.1, exploit_min_fraction=0.05,
    exploit_samples=8, exploit_layers="mean", exploit_per_key=True, exploit_deadline=1.0,
    ready_every=10, ready_margin=0.1, ready_patience=3, ready_deadline=0.5,
)
PRESETS: dict[str, dict[str, Any]] = {
    "sgmae": _SGMAE,
    # hand-tuned configs start from the same values; the name only says nothing is a preset's
    "custom": _SGMAE,
    # the earlier default: hints decay linearly from 1.0 to 0.2 and are re-hidden from the whole
    # pool, so masks stay close to random for most of the informed phase (kept for reproduction)
    "sgmae-v1": {**_SGMAE, "hint_ratio": 1.0, "hint_min": 0.2, "compensate_from": "pool"},
    # the paper as first specified: last layer, raw features, fixed tau 0.2, start at epoch 50,
    # quadratic hints 1 -> 0 (kept to reproduce how it collapses at small scale)
    "sgmae-spec": {**_SGMAE, "feature_layer": "last", "centre": False, "remove_position": False,
                   "tau_quantile": 0.0, "min_neighbours": 0, "hint_ratio": 1.0, "hint_min": 0.0,
                   "hint_schedule": "quadratic_decay", "compensate_from": "pool", "start": "epoch"},
    # the public SGIM re-implementation (PCA split, ambiguity score)
    "sgim": {**_SGMAE, "feature_layer": "last", "centre": False, "remove_position": False,
             "partition": "pca", "scoring": "ambiguity", "hint_ratio": 1.0, "hint_min": 0.0,
             "hint_schedule": "quadratic_decay", "compensate_from": "pool", "start": "epoch"},
}


@dataclass
class SelfGuidedConfig:
    """Options; ``None`` means "the preset's value" (the resolved values are written back)."""

    preset: Preset = "sgmae"
    #: block index (0-based, negative from the end), "middle" (depth//2 - 1) or "last"; of the
    #: encoder, or of the decoder with feature_source=decoder
    feature_layer: int | Literal["middle", "last"] | None = None
    #: "encoder": the model's features at feature_layer; "decoder": decoder states of the full input
    #: (no mask tokens, unlike training) at decoder block feature_layer; "embeddings": patch embeddings
    feature_source: Literal["encoder", "decoder", "embeddings"] | None = None
    centre: bool | None = None  # subtract each sample's mean token before cosine
    remove_position: bool | None = None  # subtract a running per-position mean (grid layouts only)
    position_momentum: float | None = None  # EMA momentum of that per-position mean
    #: ncut: exact eigh; power: power iteration; auto: ncut, except power on CUDA above 32 tokens
    #: (CUDA's eigh loops one solver call per sample there); pca: first principal component
    partition: Literal["auto", "ncut", "power", "pca"] | None = None
    affinity: Literal["tokencut", "knn", "clamp", "shift"] | None = None
    tau: float | None = None  # tokencut threshold on cosine (when tau_quantile is 0)
    tau_quantile: float | None = None  # per-sample quantile of cosines as threshold; 0 = fixed tau
    knn: int | None = None  # neighbours of the knn graph; 0 = round(sqrt(N))
    min_neighbours: int | None = None  # tokencut: always link each token to its k most similar
    eps: float | None = None  # weight of non-edges (keeps the graph connected)
    split: Literal["zero", "mean", "median"] | None = None
    power_iters: int | None = None
    target: Literal["tokencut", "smaller", "less_similar_to_mean", "random"] | None = None
    #: mean_similarity: hide the tokens least similar to the sample's mean token (paper Fig. 2b)
    scoring: Literal["similarity", "membership", "ambiguity", "mean_similarity"] | None = None
    hint_ratio: float | None = None  # hint fraction at the start of informed masking (>= 1: random)
    hint_min: float | None = None  # value the decaying schedules end at
    hint_schedule: Literal["constant", "linear_decay", "quadratic_decay", "off"] | None = None  # off: no hints
    hint_select: Literal["random", "similarity", "similarity_low", "similarity_high"] | None = None
    compensate_from: Literal["pool", "visible_only"] | None = None
    start: Literal["epoch", "fraction", "exploitation", "clustering"] | None = None
    start_epoch: int | None = None
    start_fraction: float | None = None
    exploit_every: int | None = None  # steps between exploitation-rate checks
    exploit_patience: int | None = None  # consecutive checks with mask tokens leading needed to start
    exploit_lead: int | None = None  # consecutive checks with visible tokens leading needed first
    exploit_margin: float | None = None  # relative margin a lead needs (0.1: 10 % above the other rate)
    exploit_min_fraction: float | None = None  # never start before this fraction of training
    exploit_samples: int | None = None  # samples of the batch used for a check
    exploit_layers: Literal["mean", "last"] | None = None
    exploit_per_key: bool | None = None  # divide rates by the number of visible / mask keys
    #: start=exploitation: start anyway at this fraction of training (1 = only on the crossover)
    exploit_deadline: float | None = None
    ready_every: int | None = None  # start=clustering: steps between readiness checks
    #: start=clustering: relative gain over the step-0 clustering a check needs (0.1: 10 % better)
    ready_margin: float | None = None
    ready_patience: int | None = None  # consecutive checks above the margin needed to start
    ready_deadline: float | None = None  # start=clustering: start anyway at this fraction (1 = never)

    def __post_init__(self) -> None:
        if self.preset not in PRESETS:
            raise ConfigError(f"`masker.preset` must be one of {', '.join(PRESETS)}; "
                              f"got {self.preset!r}")
        for f in fields(self):
            if f.name != "preset" and getattr(self, f.name) is None:
                setattr(self, f.name, PRESETS[self.preset][f.name])
        self.validate()

    def validate(self) -> None:
        def bad(name: str, expected: str) -> ConfigError:
            return ConfigError(f"`masker.{name}` must be {expected}; "
                               f"got {getattr(self, name)!r}")

        for name in ("hint_ratio", "hint_min", "start_fraction", "exploit_deadline", "exploit_min_fraction",
                     "ready_deadline"):
            if not 0.0 <= float(getattr(self, name)) <= 1.0:
                raise bad(name, "in [0, 1]")
        if self.hint_schedule in ("linear_decay", "quadratic_decay") and self.hint_min > self.hint_ratio:
            raise bad("hint_min", f"<= hint-ratio ({self.hint_ratio}) for a decaying hint schedule")
        if not 0.0 <= self.tau_quantile < 1.0:
            raise bad("tau_quantile", "in [0, 1) (0 = use the fixed tau)")
        if not -1.0 <= self.tau <= 1.0:
            raise bad("tau", "a cosine in [-1, 1]")
        if not 0.0 <= self.position_momentum < 1.0:
            raise bad("position_momentum", "in [0, 1)")
        if not 0.0 < self.eps < 1.0:
            raise bad("eps", "in (0, 1)")
        for name in ("knn", "min_neighbours", "start_epoch"):
            if getattr(self, name) < 0:
                raise bad(name, ">= 0")
        for name in ("power_iters", "exploit_every", "exploit_patience", "exploit_lead", "exploit_samples",
                     "ready_every", "ready_patience"):
            if getattr(self, name) < 1:
                raise bad(name, ">= 1")
        for name in ("exploit_margin", "ready_margin"):
            if getattr(self, name) < 0:
                raise bad(name, ">= 0")

    def partition_settings(self) -> graph.PartitionSettings:
        """The graph and cut settings, as the analysis receives them too."""
        return graph.PartitionSettings(
            centre=bool(self.centre), remove_position=bool(self.remove_position), method=self.partition,
            affinity=self.affinity, tau=float(self.tau), tau_quantile=float(self.tau_quantile), knn=int(self.knn),
            min_neighbours=int(self.min_neighbours), eps=float(self.eps), split=self.split,
            power_iters=int(self.power_iters))


@dataclass
class Crossover:
    """The exploitation start rule: visible tokens must first lead (their per-key attention rate
    above the mask tokens' by ``margin``) for ``lead`` consecutive checks; informed masking then
    starts once mask tokens lead by the margin for ``patience`` consecutive checks, and not before
    ``min_fraction`` of training. Rates within the margin of each other reset both counts. An
    untrained model prefers one kind of key by a fixed, initialisation-dependent amount (up to about
    15 % either way), but never shows the visible-then-mask sequence, so it never starts."""

    lead_count: int = 0
    led: bool = False
    streak: int = 0

    def update(self, visible: float, mask: float, *, margin: float, lead: int, patience: int,
               fraction: float, min_fraction: float) -> bool:
        """Record one check; True when informed masking should start now."""
        if visible > mask * (1.0 + margin):
            self.lead_count += 1
            self.streak = 0
            self.led = self.led or self.lead_count >= lead
        elif mask > visible * (1.0 + margin):
            self.lead_count = 0
            self.streak = self.streak + 1 if self.led else 0
        else:
            self.lead_count = 0
            self.streak = 0
        return self.led and self.streak >= patience and fraction >= min_fraction


@dataclass
class Readiness:
    """The clustering start rule: the first check (step 0, an untrained model) sets the baseline
    clustering gap; informed masking starts once the gap exceeds it by the relative ``margin`` for
    ``patience`` consecutive checks. Training that does not move the features (an untrained model,
    a learning rate of 1e-12) keeps the gap at its baseline up to batch noise, so it never starts."""

    baseline: float | None = None
    streak: int = 0
    last: float | None = None  # the last readiness value (gap / baseline - 1)

    def update(self, gap: float, *, margin: float, patience: int) -> bool:
        """Record one check's clustering gap; True when informed masking should start now."""
        if self.baseline is None:
            self.baseline = gap
            self.last = 0.0
            return False
        self.last = gap / max(abs(self.baseline), 1e-12) - 1.0
        self.streak = self.streak + 1 if self.last > margin else 0
        return self.streak >= patience


@dataclass
class Informed:
    """Intermediate results of one informed pass (shared by ``plan`` and ``explain``)."""

    side: Tensor  # (B, N) bool: bipartition side (y above threshold)
    target: Tensor  # (B, N) bool: the cluster chosen to be masked first
    scores: Tensor  # (B, N) masking score (higher = hidden first)
    plan: MaskPlan  # informed plan before hints
    density: Tensor | None
    eigengap: Tensor | None
    lambda2: Tensor | None
    power_products: int | None = None  # products power iteration used (None: eigh or PCA)


def _no_autocast(device: torch.device) -> contextlib.AbstractContextManager:
    """Graph maths in fp32: bf16/fp16 cosines and ``eigh`` are not accurate enough (or not supported)."""
    if device.type in ("cuda", "cpu", "xpu", "mps"):
        return torch.autocast(device_type=device.type, enabled=False)
    return contextlib.nullcontext()


class SelfGuidedMasker(Masker):
    name = "self-guided"
    design_budget = (400, "self-guided MAE reports 400 pre-training epochs, with informed masking from about epoch 50")
    description = ("SG-MAE: mask the tokens of the cluster the model's own features form "
                   "(normalized cut on a cosine graph), with hints; random before the start.")
    reference = "Shin et al., Self-Guided Masked Autoencoder, NeurIPS 2024 (arXiv 2507.19773)"
    needs_model = True
    Config = SelfGuidedConfig

    def __init__(self, config: SelfGuidedConfig | None = None) -> None:
        super().__init__(config)
        self.config: SelfGuidedConfig
        self._started = False  # latched by the exploitation rule
        self._start_step: int | None = None
        self._crossover = Crossover()
        self._exploit: tuple[float, float] | None = None  # last measured (visible, mask) rates
        self._position_mean: Tensor | None = None  # (N, D) fp32
        self._position_count = 0
        self._last_progress = TrainingProgress()
        self._readiness = Readiness()
        self._start_reason: str | None = None  # why informed masking started (set by the rule that fired)
        self._announced = False  # the informed_start event was emitted
        self._events: list[dict[str, Any]] = []

    # ------------------------------------------------------------------ schedule
    @property
    def last_progress(self) -> TrainingProgress:
        """Progress seen at the last training step (probes and pictures reuse it)."""
        return self._last_progress

    def start_step(self, progress: TrainingProgress) -> int | None:
        """Global step at which informed masking starts (None: not yet known / not started)."""
        cfg = self.config
        if cfg.start == "epoch":
            return cfg.start_epoch * progress.steps_per_epoch
        if cfg.start == "fraction":
            return int(round(cfg.start_fraction * progress.total_steps))
        if self._started:
            return self._start_step
        return self._deadline_step(progress)

    def _deadline_step(self, progress: TrainingProgress) -> int | None:
        cfg = self.config
        deadline = cfg.ready_deadline if cfg.start == "clustering" else cfg.exploit_deadline
        if deadline >= 1.0:
            return None
        return int(round(deadline * progress.total_steps))

    def is_started(self, progress: TrainingProgress) -> bool:
        cfg = self.config
        if cfg.start == "epoch":
            return progress.epoch >= cfg.start_epoch
        if cfg.start == "fraction":
            return progress.step >= int(round(cfg.start_fraction * progress.total_steps))
        deadline = self._deadline_step(progress)
        return self._started or (deadline is not None and progress.step >= deadline)

    def hint_ratio_at(self, progress: TrainingProgress) -> float:
        """Hint ratio h(s), s = fraction of the informed phase done (0 at the start, 1 at the end)."""
        cfg = self.config
        if cfg.hint_schedule == "off":
            return 0.0
        if cfg.hint_schedule == "constant":
            return cfg.hint_ratio
        start = self.start_step(progress)
        start = progress.step if start is None else start
        span = max(1, progress.total_steps - start)
        s = min(1.0, max(0.0, (progress.step - start) / span))
        decay = 1.0 - s if cfg.hint_schedule == "linear_decay" else 1.0 - s * s
        return cfg.hint_min + (cfg.hint_ratio - cfg.hint_min) * decay

    # ------------------------------------------------------------------ features
    def feature_layer(self, ctx: MaskContext) -> int:
        """The block to read (of the encoder, or of the decoder with ``feature_source=decoder``);
        ``middle`` asks the model view for the depth."""
        layer = self.config.feature_layer
        if layer == "last":
            return -1
        if layer == "middle":
            shape = ctx.require_model("feature-layer=middle").shape
            return shape.decoder_middle_layer if self.config.feature_source == "decoder" else shape.middle_layer
        return int(layer)  # type: ignore[arg-type]

    def _features(self, ctx: MaskContext) -> Tensor:
        if self.config.feature_source == "embeddings":
            if ctx.tokens is None:
                raise RuntimeError("feature-source=embeddings needs the tokens in the mask context")
            return ctx.tokens.embeddings.detach().float()
        if self.config.feature_source == "decoder":
            model = ctx.require_model("feature-source=decoder")
            return model.decoder_features(self.feature_layer(ctx)).detach().float()
        return ctx.features(self.feature_layer(ctx)).detach().float()

    def _position_offset(self, ctx: MaskContext, feats: Tensor, update: bool) -> Tensor | None:
        """Running per-position mean of the features (what position alone explains), or None when the
        tokens have no fixed per-index position (unordered point groups)."""
        if not self.config.remove_position or not ctx.layout.has_grid or ctx.positions.dim() != 2:
            return None
        if update:  # the global batch's mean (a collective in training steps), so ranks stay equal
            batch_mean = ctx.global_sum(feats.sum(dim=0)) / (feats.shape[0] * ctx.world_size)
        else:
            batch_mean = feats.mean(dim=0)
        current = self._position_mean
        if current is not None and current.shape != batch_mean.shape:
            current, self._position_count = None, 0  # token count or width changed: start over
        if not update:
            if current is None:  # no running mean yet: this batch's, unless it is a single sample
                return batch_mean if feats.shape[0] > 1 else None
            return current.to(feats.device)
        count = self._position_count + 1
        momentum = min(self.config.position_momentum, 1.0 - 1.0 / count)  # bias-corrected warm-up
        new = batch_mean if current is None else \
            momentum * current.to(feats.device) + (1 - momentum) * batch_mean
        self._position_mean, self._position_count = new.detach(), count
        return new

    # ------------------------------------------------------------------ informed pass
    def _partition(self, ctx: MaskContext, update_state: bool) -> tuple[Tensor, Tensor | None, graph.Partition]:
        """(fp32 features, position offset, partition) of the features the masker reads."""
        with torch.no_grad():
            feats = self._features(ctx)  # the feature pass keeps the step's autocast (bf16 on GPU)
        with torch.no_grad(), _no_autocast(ctx.device):
            feats = feats.float()
            offset = self._position_offset(ctx, feats, update_state)
            settings = self.config.partition_settings().resolved(ctx.num_tokens, ctx.device)
            # power iteration's start block is a global-batch draw (N ranks == one process)
            start = ctx.normal(ctx.batch_size, ctx.num_tokens, 2) if settings.method == "power" else None
            return feats, offset, graph.partition(feats, settings, position_mean=offset, start=start)

    def clustering_gap(self, ctx: MaskContext) -> Tensor:
        """(B,) how well the masker's features cluster: mean cosine similarity of tokens on the same
        side of the cut minus that across it (prepared features, as the masker cuts them)."""
        _, _, part = self._partition(ctx, update_state=False)
        with torch.no_grad(), _no_autocast(ctx.device):
            return graph.intra_inter_gap(graph.cosine_similarity(part.x), part.bip.labels)

    def informed(self, ctx: MaskContext, update_state: bool = False) -> Informed:
        """Bipartition, target cluster, scores and the exact informed plan (before hints)."""
        feats, offset, part = self._partition(ctx, update_state)
        with torch.no_grad(), _no_autocast(ctx.device):
            x, bip = part.x, part.bip
            density, eigengap, lambda2 = part.density, bip.eigengap, bip.lambda2
            side = bip.labels
            target = self._target(ctx, side, bip.y, feats, offset, x)
            scores = self._scores(x, side, target, feats, offset)
            plan = exact_topk_plan(scores, ctx.n_mask, ctx)
        return Informed(side=side, target=target, scores=scores, plan=plan, density=density,
                        eigengap=eigengap, lambda2=lambda2, power_products=bip.iterations)

    def _target(self, ctx: MaskContext, side: Tensor, y: Tensor, feats: Tensor, offset: Tensor | None,
                x: Tensor) -> Tensor:
        rule = self.config.target
        if rule == "tokencut":  # the side holding the most extreme Fiedler entry (TokenCut's seed)
            first = torch.gather(side, 1, y.abs().argmax(dim=1, keepdim=True))
        elif rule == "smaller":
            first = (side.sum(1, keepdim=True) * 2 <= side.shape[1])
        elif rule == "less_similar_to_mean":
            raw = graph.prepare_features(feats, centre=False, position_mean=offset)
            mean = graph.l2_normalize(raw.mean(dim=1))
            ca, cb = _centroid(raw, side), _centroid(raw, ~side)
            first = ((ca * mean).sum(-1) <= (cb * mean).sum(-1)).unsqueeze(1)
        elif rule == "random":
            first = ctx.uniform(ctx.batch_size, 1) < 0.5
        else:
            raise ValueError(f"unknown target rule {rule!r}")
        return torch.where(first, side, ~side)

    def _scores(self, x: Tensor, side: Tensor, target: Tensor, feats: Tensor, offset: Tensor | None) -> Tensor:
        rule = self.config.scoring
        if rule == "mean_similarity":  # paper Fig. 2b: tokens least like the mean token go first
            raw = graph.prepare_features(feats, centre=False, position_mean=offset)
            mean = graph.l2_normalize(raw.mean(dim=1, keepdim=True))
            return -(raw * mean).sum(-1)
        if rule == "ambiguity":  # SGIM: hide the tokens that fit neither cluster
            sim_a = (x * _centroid(x, side).unsqueeze(1)).sum(-1)
            sim_b = (x * _centroid(x, ~side).unsqueeze(1)).sum(-1)
            return -torch.maximum(sim_a, sim_b)
        sim = (x * _centroid(x, target).unsqueeze(1)).sum(-1)
        if rule == "similarity":
            return sim
        if rule == "membership":  # the whole target cluster first, then its closest outsiders
            return sim + 4.0 * target.float()
        raise ValueError(f"unknown scoring rule {rule!r}")

    # ------------------------------------------------------------------ exploitation start rule
    def _check_exploitation(self, ctx: MaskContext, plan: MaskPlan) -> None:
        cfg = self.config
        model = ctx.require_model("masker.start=exploitation")
        # the first exploit_samples samples of the *global* batch: rank r holds global rows
        # r, r + W, ... (MaskContext.uniform), so it owns `mine` of them; every rank runs at least
        # one sample (the decoder pass is a collective under FSDP) and weights it by `mine`
        world, rank = ctx.world_size, ctx.rank
        wanted = min(cfg.exploit_samples, ctx.batch_size * world)
        mine = max(0, -(-(wanted - rank) // world))
        b = min(max(1, mine), ctx.batch_size)
        with torch.no_grad():
            attentions = model.decoder_attention(plan, b)
            visible, masked = exploitation_rates(attentions, plan.mask[:b], model.shape.num_prefix,
                                                 per_key_normalized=cfg.exploit_per_key)
        if cfg.exploit_layers == "last":
            v, m = visible[-1], masked[-1]
        else:
            v, m = visible.mean(), masked.mean()
        weighted = torch.stack([v.float() * mine, m.float() * mine,
                                torch.full((), float(mine), device=v.device)])
        total = ctx.global_sum(weighted)  # every rank takes the same decision from the same numbers
        with deliberate_sync("the start rule's one host sync, every exploit_every steps"):
            values = (total[:2] / total[2].clamp_min(1.0)).cpu().tolist()
        self._exploit = (values[0], values[1])
        if self._crossover.update(values[0], values[1], margin=cfg.exploit_margin, lead=cfg.exploit_lead,
                                  patience=cfg.exploit_patience, fraction=ctx.progress.fraction,
                                  min_fraction=cfg.exploit_min_fraction):
            self._started = True
            self._start_step = ctx.progress.step + 1
            self._start_reason = "exploitation"

    # ------------------------------------------------------------------ clustering start rule
    def _check_clustering(self, ctx: MaskContext) -> None:
        """One readiness check: the global batch's mean clustering gap against the step-0 one."""
        cfg = self.config
        gap = self.clustering_gap(ctx)
        total = ctx.global_sum(torch.stack([gap.float().sum(), torch.full((), float(gap.numel()), device=gap.device)]))
        with deliberate_sync("the clustering start rule's one host sync, every ready_every steps"):
            value = float((total[0] / total[1].clamp_min(1.0)).cpu())
        if self._readiness.update(value, margin=cfg.ready_margin, patience=cfg.ready_patience):
            self._started = True
            self._start_step = ctx.progress.step + 1
            self._start_reason = "clustering"

    def _announce(self, progress: TrainingProgress) -> None:
        """Queue the one ``informed_start`` event: why and at which step informed masking began."""
        if self._announced:
            return
        self._announced = True
        rule = self.config.start
        reason = self._start_reason if self._started and self._start_reason else \
            rule if rule in ("epoch", "fraction") else "deadline"
        step = self.start_step(progress)
        self._events.append({"event": "informed_start", "reason": reason,
                             "step": progress.step if step is None else step})

    def forget_feature_state(self) -> None:
        self._position_mean, self._position_count = None, 0

    def pop_events(self) -> list[dict[str, Any]]:
        events, self._events = self._events, []
        return events

    # ------------------------------------------------------------------ masker API
    def plan(self, ctx: MaskContext) -> MaskPlan:
        cfg = self.config
        progress = ctx.progress
        # state (position mean, start latch, last progress) moves only in a real training step:
        # pictures, probes and evaluation run in eval mode or under no_grad and leave it alone
        training = self.training and torch.is_grad_enabled()
        if training:
            self._last_progress = progress
        started = self.is_started(progress)
        hint = self.hint_ratio_at(progress) if started else 1.0
        dev = ctx.device
        logs: dict[str, Tensor | float] = {
            "sg/started": torch.full((), float(started), device=dev),
            "sg/hint_ratio": torch.full((), float(hint), device=dev),
        }
        if started and training:
            self._announce(progress)
        if not started or hint >= 1.0:
            plan = random_plan(ctx)
            if (not started and training and cfg.start == "exploitation"
                    and progress.step % cfg.exploit_every == 0):
                self._check_exploitation(ctx, plan)
            if not started and training and cfg.start == "clustering" and progress.step % cfg.ready_every == 0:
                self._check_clustering(ctx)
            if cfg.start == "clustering" and self._readiness.last is not None and not started:
                logs["sg/readiness"] = torch.full((), self._readiness.last, device=dev)
            if cfg.start == "exploitation" and self._exploit is not None and not started:
                logs["sg/exploit_visible"] = torch.full((), self._exploit[0], device=dev)
                logs["sg/exploit_mask"] = torch.full((), self._exploit[1], device=dev)
            plan.logs.update(logs)
            return plan
        inf = self.informed(ctx, update_state=training)
        plan = self._hints(ctx, inf, hint)
        logs["sg/target_fraction"] = inf.target.float().mean()
        kept = (inf.plan.mask & plan.mask).float().sum(1).mean() / max(ctx.n_mask, 1)
        logs["sg/informed_kept"] = kept
        logs["sg/hints_revealed"] = 1.0 - kept  # what the hints really reveal, beside sg/hint_ratio
        logs["sg/mask_iou"] = pairwise_iou(plan.mask)
        if inf.density is not None:
            logs["sg/density"] = inf.density.mean()
        if inf.eigengap is not None and inf.lambda2 is not None:
            logs["sg/eigengap"] = inf.eigengap.mean()
            logs["sg/lambda2"] = inf.lambda2.mean()
        if inf.power_products is not None:
            logs["sg/power_products"] = float(inf.power_products)
        plan.logs.update(logs)
        return plan

    def _hints(self, ctx: MaskContext, inf: Informed, hint_ratio: float) -> MaskPlan:
        """Reveal ``hint_ratio`` of the informed mask and hide as many elsewhere (exact count)."""
        select = self.config.hint_select
        scores = None if select == "random" else inf.scores if select == "similarity_high" else -inf.scores
        return apply_hints(inf.plan, hint_ratio, ctx, hint_scores=scores,
                           compensate_from=self.config.compensate_from)

    @torch.no_grad()
    def explain(self, ctx: MaskContext, hint_ratio: float | None = None) -> dict[str, Tensor]:
        """(B, N) maps for pictures, computed as if informed masking were on (state untouched):
        ``cluster`` (True = target cluster), ``side`` (True = the side above the cut's threshold),
        ``score``, ``informed`` (mask
        before hints), ``hints`` (revealed), ``remasked`` (hidden in exchange), ``mask`` (final),
        ``random`` (a random mask with the same count, for comparison)."""
        progress = ctx.progress
        if hint_ratio is None:
            hint_ratio = self.hint_ratio_at(progress) if self.is_started(progress) else self.config.hint_min
        inf = self.informed(ctx, update_state=False)
        plan = self._hints(ctx, inf, hint_ratio)
        return {
            "cluster": inf.target,
            "side": inf.side,
            "score": inf.scores,
            "informed": inf.plan.mask,
            "hints": inf.plan.mask & ~plan.mask,
            "remasked": plan.mask & ~inf.plan.mask,
            "mask": plan.mask,
            "random": random_plan(ctx).mask,
        }

    # ------------------------------------------------------------------ state
    def get_extra_state(self) -> dict[str, Any]:
        p = self._last_progress
        return {
            "started": self._started,
            "start_step": -1 if self._start_step is None else self._start_step,
            "streak": self._crossover.streak,
            "lead_count": self._crossover.lead_count,
            "led": self._crossover.led,
            "exploit": [] if self._exploit is None else list(self._exploit),
            "position_mean": None if self._position_mean is None else self._position_mean.detach().cpu(),
            "position_count": self._position_count,
            "progress": [p.epoch, p.step, p.epochs, p.steps_per_epoch],
            "ready_baseline": [] if self._readiness.baseline is None else [self._readiness.baseline],
            "ready_streak": self._readiness.streak,
            "start_reason": self._start_reason or "",
            "announced": self._announced,
        }

    def set_extra_state(self, state: dict[str, Any]) -> None:
        self._started = bool(state.get("started", False))
        start = int(state.get("start_step", -1))
        self._start_step = None if start < 0 else start
        self._crossover = Crossover(lead_count=int(state.get("lead_count", 0)), led=bool(state.get("led", False)),
                                    streak=int(state.get("streak", 0)))
        exploit = list(state.get("exploit", []))
        self._exploit = (float(exploit[0]), float(exploit[1])) if len(exploit) == 2 else None
        pm = state.get("position_mean")
        self._position_mean = pm.float() if isinstance(pm, Tensor) else None
        self._position_count = int(state.get("position_count", 0))
        baseline = list(state.get("ready_baseline", []))
        self._readiness = Readiness(baseline=float(baseline[0]) if baseline else None,
                                    streak=int(state.get("ready_streak", 0)))
        self._start_reason = str(state.get("start_reason", "")) or None
        self._announced = bool(state.get("announced", False))
        prog = state.get("progress")
        if prog:
            self._last_progress = TrainingProgress(*(int(v) for v in prog))


def _centroid(x: Tensor, members: Tensor) -> Tensor:
    """(B, D) unit-length mean of the rows of x where members is True (empty set: zero vector)."""
    w = members.to(x.dtype)
    total = torch.einsum("bn,bnd->bd", w, x)
    return graph.l2_normalize(total / w.sum(1, keepdim=True).clamp_min(1.0))


__all__ = ["PRESETS", "Crossover", "Readiness", "SelfGuidedConfig", "SelfGuidedMasker"]
