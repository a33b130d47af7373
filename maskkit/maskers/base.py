"""Masker contract: a masker reads a MaskContext and returns a MaskPlan with an exact count per sample."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol

import torch
from torch import Tensor, nn

from maskkit.errors import ConfigError
from maskkit.model.shape import ModelShape
from maskkit.plan import MaskPlan, num_visible
from maskkit.sync_guard import deliberate_sync
from maskkit.tokens import TokenBatch, TokenLayout


@dataclass(frozen=True)
class TrainingProgress:
    """Where training is, for maskers with schedules (start epoch, hint decay, curricula)."""

    epoch: int = 0
    step: int = 0  # global optimiser-independent step (one per batch)
    epochs: int = 1
    steps_per_epoch: int = 1

    @property
    def total_steps(self) -> int:
        return max(1, self.epochs * self.steps_per_epoch)

    @property
    def fraction(self) -> float:
        """Progress in [0, 1]."""
        return min(1.0, self.step / self.total_steps)


class ModelView(Protocol):
    """What a masker may read from the model being trained, for the current batch.

    Every call runs without gradients on the *full* (unmasked) input of this step. The trainer
    supplies one (``maskkit.model.view.TokenModelView``); a test or another framework can supply
    its own. A masker asks only for what it reads, so a masker that never calls these costs nothing.
    """

    @property
    def shape(self) -> ModelShape: ...

    def features(self, layer: int) -> Tensor:
        """(B, N, D) normed token features after encoder block ``layer`` (negative: from the end)."""
        ...

    def attention(self, layer: int) -> Tensor:
        """(B, H, N, N) head attention of encoder block ``layer`` among the patch tokens."""
        ...

    def decoder_features(self, layer: int) -> Tensor:
        """(B, N, D_dec) normed decoder states of the full input (nothing masked) after decoder block
        ``layer`` (negative: from the end), with no mask token: not the masked training pass the
        paper reads its decoder features from."""
        ...

    def decoder_attention(self, plan: MaskPlan, samples: int) -> list[Tensor]:
        """Per decoder block, (b, H, L, L) attention of the first ``samples`` samples under ``plan``
        (L includes prefix tokens)."""
        ...


@dataclass
class MaskContext:
    """Everything a masker may ask for. Maskers read only what they need.

    ``features(layer)`` / ``attention(layer)`` ask the :class:`ModelView` lazily and cache the answer
    for this step, so two readers of one layer cost one pass.
    """

    batch_size: int
    num_tokens: int
    mask_ratio: float
    layout: TokenLayout
    positions: Tensor
    generator: torch.Generator
    device: torch.device
    progress: TrainingProgress = field(default_factory=TrainingProgress)
    tokens: TokenBatch | None = None
    model: ModelView | None = None
    #: data-parallel position: ``uniform`` draws for the global batch and keeps this rank's rows,
    #: so N processes mask exactly as one process with the global batch would
    rank: int = 0
    world_size: int = 1
    #: optional CPU generator seeded like ``generator``: host-side choices without a device sync
    host_generator: torch.Generator | None = None
    _feature_cache: dict[int, Tensor] = field(default_factory=dict, repr=False)
    _attention_cache: dict[int, Tensor] = field(default_factory=dict, repr=False)

    def require_model(self, what: str) -> ModelView:
        if self.model is None:
            raise RuntimeError(f"{what} needs the model, but this mask context has none")
        return self.model

    def features(self, layer: int) -> Tensor:
        if layer not in self._feature_cache:
            self._feature_cache[layer] = self.require_model("reading token features").features(layer)
        return self._feature_cache[layer]

    def attention(self, layer: int) -> Tensor:
        if layer not in self._attention_cache:
            self._attention_cache[layer] = self.require_model("reading attention maps").attention(layer)
        return self._attention_cache[layer]

    @property
    def n_keep(self) -> int:
        return num_visible(self.num_tokens, self.mask_ratio)

    @property
    def n_mask(self) -> int:
        return self.num_tokens - self.n_keep

    def _draw(self, fn: Callable[..., Tensor], shape: tuple[int, ...]) -> Tensor:
        """Draw on the generator's device (so a CPU generator gives device-independent noise) and
        move to the context's device; a no-op move when they agree."""
        gen_device = self.generator.device
        out = fn(*shape, generator=self.generator, device=gen_device)
        return out if gen_device == self.device else out.to(self.device)

    def uniform(self, *shape: int) -> Tensor:
        """Uniform noise on the context's device from its generator.

        When the first dimension is the batch, under data parallelism the noise is drawn for the
        global batch (rank r holds global rows r, r + W, ...) and this rank's rows are returned.
        Every random draw of a masker goes through here (or :meth:`normal`), so N processes with
        B samples each mask exactly like one process with N * B samples.
        """
        if self.world_size > 1 and shape and shape[0] == self.batch_size:
            full = self._draw(torch.rand, (shape[0] * self.world_size, *shape[1:]))
            return full[self.rank::self.world_size]
        return self._draw(torch.rand, shape)

    def normal(self, *shape: int) -> Tensor:
        """Standard normal noise; same global-batch rule as :meth:`uniform`."""
        if self.world_size > 1 and shape and shape[0] == self.batch_size:
            full = self._draw(torch.randn, (shape[0] * self.world_size, *shape[1:]))
            return full[self.rank::self.world_size]
        return self._draw(torch.randn, shape)

    def shared_uniform(self, *shape: int) -> Tensor:
        """Uniform noise that is the same on every rank (never split by batch rows): per-batch
        choices such as which child of a mixture runs."""
        return self._draw(torch.rand, shape)

    def host_uniform(self) -> float:
        """One uniform float, the same on every rank, without a device sync when the context has
        a CPU ``host_generator`` (the trainer seeds one alongside the device generator)."""
        if self.host_generator is not None:
            with deliberate_sync("a CPU tensor: no device queue to wait for"):
                return float(torch.rand((), generator=self.host_generator, device="cpu"))
        return float(self.shared_uniform(1))  # one host sync on accelerators

    def global_sum(self, value: Tensor) -> Tensor:
        """Sum of ``value`` over the data-parallel ranks (a collective: every rank must call it at
        the same point); ``value`` itself in one process. Used for decisions that must agree on
        every rank, such as self-guided's exploitation start."""
        if self.world_size > 1:
            import torch.distributed as dist

            if dist.is_available() and dist.is_initialized():
                value = value.clone()
                dist.all_reduce(value)
        return value

    def batched_positions(self) -> Tensor:
        if self.positions.dim() == 2:
            return self.positions.unsqueeze(0).expand(self.batch_size, -1, -1)
        return self.positions


def uniform_from(source: MaskContext | torch.Generator, shape: tuple[int, ...], device: torch.device,
                 dtype: torch.dtype = torch.float32) -> Tensor:
    """Uniform noise of ``shape`` from a context (global-batch rule) or a generator."""
    if isinstance(source, MaskContext):
        out = source.uniform(*shape)
    else:
        out = torch.rand(shape, generator=source, device=source.device)
    return out.to(device=device, dtype=dtype)


def exact_topk_plan(scores: Tensor, n_mask: int, generator: MaskContext | torch.Generator | None = None,
                    jitter: float = 1e-6) -> MaskPlan:
    """Plan that hides the top-``n_mask`` scores, ties broken by tiny random jitter (not index order).

    Pass the mask context (not its generator) so the jitter is a global-batch draw."""
    if generator is not None and jitter > 0:
        noise = uniform_from(generator, tuple(scores.shape), scores.device, scores.dtype)
        scores = scores + jitter * noise
    return MaskPlan.from_scores(scores, n_mask)


def gumbel_scores(logits: Tensor, generator: MaskContext | torch.Generator) -> Tensor:
    """Gumbel-top-k: (B, N) logits -> scores whose top-n is a draw of n tokens without replacement
    with probabilities softmax(logits). Pass the mask context for global-batch draws."""
    u = uniform_from(generator, tuple(logits.shape), logits.device)
    gumbel = -torch.log((-torch.log(u.clamp_min(1e-20))).clamp_min(1e-20))
    return logits.float() + gumbel


class Masker(nn.Module):
    """Base class. Subclasses set ``name``, ``description``, ``reference`` and implement ``plan``.

    Maskers are ``nn.Module`` so learned maskers train with the model and every masker's state
    (schedule position, start flag) rides in the checkpoint through ``state_dict``.
    Python-level state goes through ``get_extra_state``/``set_extra_state``.
    """

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    reference: ClassVar[str] = ""
    needs_grid: ClassVar[bool] = False
    #: grid ranks this masker supports when it needs a grid (None: any)
    grid_ranks: ClassVar[tuple[int, ...] | None] = None
    #: True when the masker reads the model (``MaskContext.model``); shown by ``maskkit list``
    needs_model: ClassVar[bool] = False
    #: typed options (a dataclass); ``maskkit.config_utils.build_dataclass`` fills it from TOML/CLI strings
    Config: ClassVar[type | None] = None
    #: (epochs the method's published recipe trains for, where that number comes from); studies note
    #: when a run's budget is far below it
    design_budget: ClassVar[tuple[int, str] | None] = None

    def __init__(self, config: Any = None) -> None:
        super().__init__()
        if self.Config is not None:
            self.config = config if config is not None else self.Config()
        elif config not in (None, {}):
            raise ConfigError(f"masker {self.name!r} takes no options")

    def forward(self, ctx: MaskContext) -> MaskPlan:  # noqa: D401 - nn.Module entry point
        self.check_layout(ctx.layout)
        return self.plan(ctx)

    def plan(self, ctx: MaskContext) -> MaskPlan:
        raise NotImplementedError

    def check_layout(self, layout: TokenLayout) -> None:
        if self.needs_grid and not layout.has_grid:
            raise ConfigError(f"masker {self.name!r} needs a token grid, but these tokens have none")
        if self.needs_grid and self.grid_ranks is not None and len(layout.grid or ()) not in self.grid_ranks:
            raise ConfigError(
                f"masker {self.name!r} needs a grid of rank {self.grid_ranks}, got {layout.axes}"
            )

    @property
    def last_progress(self) -> TrainingProgress:
        """Where training stood at the masker's last training step, so pictures and probes drawn
        later mask as training did; maskers without schedules keep the default."""
        return TrainingProgress()

    def bind_model(self, shape: ModelShape) -> None:
        """Hook before the optimiser and DDP are built: shape the masker's own layers from the model's
        width (learned maskers). Default does nothing."""

    def all_parameters_used(self) -> bool:
        """True when every trainable parameter gets a gradient every step (DDP can then skip its
        unused-parameter search). Maskers whose loss can be switched off override this."""
        return True

    def forget_feature_state(self) -> None:
        """Drop what the masker has measured of the model's features (running means), keeping its
        schedule, so a copy can read another model (the untrained-model coverage baseline). Default
        does nothing."""

    def pop_events(self) -> list[dict[str, Any]]:
        """Events since the last call (e.g. ``{"event": "informed_start", "reason": ..., "step": N}``),
        which the trainer writes to ``metrics.jsonl`` after each step. Default: none."""
        return []

    def auxiliary_loss(self, ctx: MaskContext, plan: MaskPlan, output: Any,
                       per_token_loss: Tensor) -> Tensor | None:
        """Extra loss added to the step's loss (learned maskers: HPM's loss predictor, AdaMAE's
        REINFORCE term). ``output`` is the model's ``MAEOutput`` (with decoder hidden states)."""
        return None

    def explain(self, ctx: MaskContext) -> dict[str, Tensor]:
        """(B, N) maps that show why tokens were chosen (clusters, scores, hints), for pictures.
        Default: nothing to show."""
        return {}

    def describe_config(self) -> dict[str, Any]:
        cfg = getattr(self, "config", None)
        if cfg is None:
            return {}
        from dataclasses import asdict, is_dataclass

        return asdict(cfg) if is_dataclass(cfg) else dict(cfg)


def expected_random_iou(num_tokens: int, n_mask: int) -> float:
    """Expected IoU of two independent uniformly random masks with ``n_mask`` of ``num_tokens`` hidden.

    Intersection is hypergeometric with mean n_mask^2/N; union = 2 n_mask - intersection.
    Used as the reference for mask-collapse diagnostics.
    """
    if n_mask == 0:
        return 0.0
    inter = n_mask * n_mask / num_tokens
    return inter / (2 * n_mask - inter)


def grid_shape_of(layout: TokenLayout) -> tuple[int, ...]:
    if layout.grid is None:
        raise ValueError("layout has no grid")
    return layout.grid


def ceil_div(a: int, b: int) -> int:
    return -(-a // b)


__all__ = [
    "MaskContext",
    "MaskPlan",
    "Masker",
    "ModelShape",
    "ModelView",
    "TrainingProgress",
    "exact_topk_plan",
    "uniform_from",
    "expected_random_iou",
    "num_visible",
    "gumbel_scores",
]
