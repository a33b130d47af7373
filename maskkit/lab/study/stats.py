"""Seed spread and paired comparisons: is a masker better than the reference, seed for seed?

Runs with the same seed share initial weights, data order and augmentation, so the per-seed
difference ``masker - reference`` removes most seed-to-seed noise. Its mean gets a confidence
interval (Student t by default, percentile bootstrap on request) and a plain verdict: "better",
"worse" or "no difference detectable with N seeds" (the interval contains 0, or N < 2).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np


@dataclass(frozen=True)
class Spread:
    mean: float
    sd: float  # sample sd (ddof=1); NaN for one value
    n: int


def mean_sd(values: Sequence[float]) -> Spread:
    """Mean and sample standard deviation of the finite values (NaNs are left out)."""
    arr = np.asarray([v for v in values if v is not None and math.isfinite(v)], dtype=np.float64)
    if arr.size == 0:
        return Spread(float("nan"), float("nan"), 0)
    sd = float(arr.std(ddof=1)) if arr.size > 1 else float("nan")
    return Spread(float(arr.mean()), sd, int(arr.size))


def t_interval(values: Sequence[float], confidence: float = 0.95) -> tuple[float, float]:
    """Student-t interval for the mean: mean +- t_{(1+c)/2, n-1} * sd / sqrt(n). NaNs when n < 2."""
    from scipy import stats

    arr = np.asarray(values, dtype=np.float64)
    n = arr.size
    if n < 2:
        return float("nan"), float("nan")
    mean = float(arr.mean())
    half = float(stats.t.ppf((1 + confidence) / 2, n - 1)) * float(arr.std(ddof=1)) / math.sqrt(n)
    return mean - half, mean + half


def bootstrap_interval(values: Sequence[float], confidence: float = 0.95, samples: int = 10000,
                       seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap of the mean (fixed seed, so reports are reproducible). NaNs when n < 2."""
    arr = np.asarray(values, dtype=np.float64)
    n = arr.size
    if n < 2:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    means = arr[rng.integers(0, n, size=(samples, n))].mean(axis=1)
    alpha = (1 - confidence) / 2
    low, high = np.quantile(means, [alpha, 1 - alpha])
    return float(low), float(high)


@dataclass(frozen=True)
class PairedComparison:
    masker: str
    reference: str
    metric: str
    seeds: list[int]
    differences: list[float]  # masker - reference, per seed
    mean: float
    sd: float
    low: float
    high: float
    confidence: float
    method: str  # "t" | "bootstrap"
    higher_is_better: bool
    setting: str = ""  # which study cell (mask ratio, patch size) the comparison belongs to

    @property
    def n(self) -> int:
        return len(self.differences)

    @property
    def verdict(self) -> str:
        """"better", "worse" or "no difference detectable with N seeds"."""
        if self.n >= 2 and math.isfinite(self.low) and math.isfinite(self.high):
            if self.low > 0:
                return "better" if self.higher_is_better else "worse"
            if self.high < 0:
                return "worse" if self.higher_is_better else "better"
        return f"no difference detectable with {self.n} seed{'s' if self.n != 1 else ''}"

    def to_dict(self) -> dict:
        out = asdict(self)
        out.update(n=self.n, verdict=self.verdict)
        return out


def paired_comparison(masker_values: dict[int, float], reference_values: dict[int, float], *,
                      masker: str, reference: str, metric: str, higher_is_better: bool = True,
                      confidence: float = 0.95, method: str = "t", bootstrap_samples: int = 10000,
                      setting: str = "") -> PairedComparison:
    """Pair by seed (only seeds present and finite on both sides), then interval and verdict."""
    seeds = sorted(s for s in masker_values if s in reference_values
                   and _finite(masker_values[s]) and _finite(reference_values[s]))
    diffs = [float(masker_values[s]) - float(reference_values[s]) for s in seeds]
    spread = mean_sd(diffs)
    if method == "t":
        low, high = t_interval(diffs, confidence)
    elif method == "bootstrap":
        low, high = bootstrap_interval(diffs, confidence, bootstrap_samples)
    else:
        raise ValueError(f"interval method must be 't' or 'bootstrap', got {method!r}")
    return PairedComparison(masker=masker, reference=reference, metric=metric, seeds=seeds, differences=diffs,
                            mean=spread.mean, sd=spread.sd, low=low, high=high, confidence=confidence,
                            method=method, higher_is_better=higher_is_better, setting=setting)


def _finite(value: float | None) -> bool:
    return value is not None and math.isfinite(float(value))


__all__ = ["PairedComparison", "Spread", "bootstrap_interval", "mean_sd", "paired_comparison", "t_interval"]
