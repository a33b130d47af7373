"""Object coverage: which share of a sample's object tokens a masker hides, against random masking.

A dataset with known objects (``MaskkitDataset.has_object_masks``, e.g. ``builtin:objects``) gives
per-element object masks; the modality turns them into per-token object fractions f_i in [0, 1].
Coverage of a mask m (1 = hidden) is sum_i m_i f_i / sum_i f_i. Uniformly random masking that
hides n_mask of N tokens covers n_mask / N of any fixed set of tokens in expectation, so that is
the reference: a masker that "hides the main object" scores clearly above it.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from maskkit.maskers.base import MaskPlan, TrainingProgress, num_visible
from maskkit.modality import MaskkitDataset
from maskkit.train.step import build_context


def object_coverage(mask: Tensor, fractions: Tensor) -> Tensor:
    """(B,) share of each sample's object (weighted by per-token fractions) that ``mask`` hides;
    NaN for samples without any object token."""
    f = fractions.float()
    total = f.sum(1)
    hidden = (mask.float() * f).sum(1)
    return torch.where(total > 0, hidden / total.clamp_min(1e-12), torch.full_like(total, float("nan")))


def random_coverage(num_tokens: int, mask_ratio: float) -> float:
    """Expected coverage of uniformly random masking with MAE's count: n_mask / N."""
    return (num_tokens - num_visible(num_tokens, mask_ratio)) / num_tokens


@dataclass
class CoverageProbe:
    """A fixed set of un-augmented samples and their per-token object fractions."""

    inputs: Tensor  # (S, ...) model inputs
    fractions: Tensor  # (S, N)

    @property
    def object_share(self) -> float:
        """Mean share of the tokens' area that is object (how big the objects are)."""
        return float(self.fractions.float().mean())


def coverage_probe(dataset: Any, modality: Any, tokenizer: Any, num_samples: int = 64) -> CoverageProbe | None:
    """Evenly spaced samples of a dataset with object masks, or None when it has none."""
    if not (isinstance(dataset, MaskkitDataset) and dataset.has_object_masks):
        return None
    n = len(dataset)
    idx = torch.linspace(0, n - 1, min(num_samples, n)).round().long().tolist()
    pairs = [dataset.object_sample(i) for i in idx]
    inputs = torch.stack([p[0] for p in pairs])
    masks = torch.stack([p[1] for p in pairs])
    return CoverageProbe(inputs=inputs, fractions=modality.object_token_fractions(masks, tokenizer).cpu())


@torch.no_grad()
def masker_coverage(model: Any, masker: Any, probe: CoverageProbe, mask_ratio: float,
                    progress: TrainingProgress, *, seed: int = 0, device: torch.device | str = "cpu",
                    batch_size: int = 64, amp_dtype: torch.dtype | None = None) -> dict[str, float]:
    """Coverage of ``masker``'s masks on the probe at ``progress`` (model and masker in eval mode, so
    the masker's state does not move; their modes are put back).

    Keys: ``coverage`` (mean over samples), ``coverage_random`` (n_mask / N), ``coverage_sd``
    (sd over samples), ``object_share``.
    """
    dev = torch.device(device)
    model_mode, masker_mode = model.training, masker.training
    model.eval()
    masker.eval()
    generator = torch.Generator(device=dev).manual_seed(seed)
    values = []
    try:
        for start in range(0, probe.inputs.shape[0], batch_size):
            x = probe.inputs[start:start + batch_size].to(dev)
            with _autocast(dev, amp_dtype):
                tokens = model.tokenize(x)
                ctx = build_context(model, tokens, mask_ratio, generator, progress)
                plan: MaskPlan = masker(ctx)
            values.append(object_coverage(plan.mask, probe.fractions[start:start + batch_size].to(dev)).cpu())
    finally:
        model.train(model_mode)
        masker.train(masker_mode)
    cov = torch.cat(values)
    cov = cov[torch.isfinite(cov)]
    return {"coverage": float(cov.mean()) if cov.numel() else float("nan"),
            "coverage_random": random_coverage(probe.fractions.shape[1], mask_ratio),
            "coverage_sd": float(cov.std(unbiased=False)) if cov.numel() else float("nan"),
            "object_share": probe.object_share}


def untrained_baseline(masker: Any, modality: Any, model_config: Any, seed: int,
                       device: torch.device | str = "cpu") -> tuple[Any, Any] | None:
    """(the model of ``model_config`` as ``build_run`` initialises it for ``seed``, before any step;
    a copy of ``masker`` that has forgotten what it measured of the trained model's features), or
    None for maskers that do not read the model. The copy keeps the masker's schedule (start
    latch, hints), so the pair masks as the run's masker would if training had taught the model
    nothing: the baseline that tells a learned masking rule from one that low-level statistics or
    random features already explain."""
    if not masker.needs_model:
        return None
    from maskkit.train.build import build_model

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)  # build_run's seeding: the same initial weights as the run
        model = build_model(modality, model_config).to(device)
    copied = copy.deepcopy(masker)
    copied.forget_feature_state()
    return model, copied


def _autocast(device: torch.device, dtype: torch.dtype | None):
    import contextlib

    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


__all__ = ["CoverageProbe", "coverage_probe", "masker_coverage", "object_coverage", "random_coverage",
           "untrained_baseline"]
