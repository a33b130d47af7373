"""Seed spread and paired comparisons: is a masker better than the reference, seed for seed?

Runs with the same seed share initial weights, data order and augmentation, so the per-seed
difference ``masker - reference`` removes most seed-to-seed noise. Its mean gets a confidence
interval (Student t by default, percentile bootstrap on request, which needs
``BOOTSTRAP_MIN_SEEDS``) and an exact sign-flip p-value: under "no difference" each seed's
difference is as likely to have either sign, so the p-value is the share of the 2^n sign
patterns whose mean is at least as far from 0 as the observed one. A study makes many
comparisons at once, so :func:`holm` adjusts the p-values across all of them, and the adjusted p
decides the verdict: "better" or "worse" when it is below 1 - confidence, else "no difference
detectable with N seeds". With n seeds the smallest sign-flip p is 2 / 2^n (0.25 at 3 seeds).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace

import numpy as np

#: below this many seeds the percentile bootstrap is refused: its interval is far too narrow
BOOTSTRAP_MIN_SEEDS = 10
#: up to this many differences every sign pattern is enumerated; above, a fixed-seed sample of them
EXACT_SIGN_FLIP_MAX = 20
SIGN_FLIP_SAMPLES = 100_000


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


def sign_flip_p(differences: Sequence[float]) -> float:
    """Two-sided sign-flip (paired permutation) p-value of the mean difference; NaN without data.

    Exact (all 2^n sign patterns) up to ``EXACT_SIGN_FLIP_MAX`` values; above that a fixed-seed sample of
    ``SIGN_FLIP_SAMPLES`` patterns, counted with the observed one, so p is never 0.
    """
    d = np.asarray(differences, dtype=np.float64)
    n = d.size
    if n == 0:
        return float("nan")
    observed = abs(float(d.mean()))
    tolerance = 1e-12 * max(1.0, float(np.abs(d).max()))
    if n <= EXACT_SIGN_FLIP_MAX:
        signs = np.asarray(list(itertools.product((1.0, -1.0), repeat=n)))
        means = np.abs(signs @ d) / n
        return float(np.mean(means >= observed - tolerance))
    rng = np.random.default_rng(0)
    signs = rng.choice((1.0, -1.0), size=(SIGN_FLIP_SAMPLES, n))
    extreme = int(np.sum(np.abs(signs @ d) / n >= observed - tolerance))
    return (extreme + 1) / (SIGN_FLIP_SAMPLES + 1)


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm's step-down adjustment: the i-th smallest of m p-values times (m - i + 1), made monotone and
    capped at 1. NaNs stay NaN and do not count towards m."""
    p = np.asarray(p_values, dtype=np.float64)
    finite = np.flatnonzero(np.isfinite(p))
    out = np.full(p.shape, np.nan)
    m = finite.size
    running = 0.0
    for rank, i in enumerate(finite[np.argsort(p[finite], kind="stable")]):
        running = max(running, min(1.0, (m - rank) * float(p[i])))
        out[i] = running
    return out.tolist()


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
    p_value: float = float("nan")  # exact sign-flip p of the mean difference
    #: Holm-adjusted p across every comparison of the study (see :func:`adjust_comparisons`); until
    #: then, the comparison's own p
    p_holm: float = float("nan")

    @property
    def n(self) -> int:
        return len(self.differences)

    @property
    def decisive_p(self) -> float:
        """The p-value the verdict uses: Holm-adjusted when known, else the comparison's own."""
        return self.p_holm if math.isfinite(self.p_holm) else self.p_value

    @property
    def verdict(self) -> str:
        """"better" or "worse" when the (adjusted) p is below 1 - confidence, else "no difference
        detectable with N seeds"."""
        p = self.decisive_p
        if self.n >= 2 and math.isfinite(p) and p < 1 - self.confidence and self.mean != 0:
            if self.mean > 0:
                return "better" if self.higher_is_better else "worse"
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
                            method=method, higher_is_better=higher_is_better, setting=setting,
                            p_value=sign_flip_p(diffs))


def adjust_comparisons(comparisons: Sequence[PairedComparison]) -> list[PairedComparison]:
    """The same comparisons with ``p_holm`` set by a Holm correction across all of them (one study)."""
    adjusted = holm([c.p_value for c in comparisons])
    return [replace(c, p_holm=p) for c, p in zip(comparisons, adjusted, strict=True)]


def _finite(value: float | None) -> bool:
    return value is not None and math.isfinite(float(value))


__all__ = ["BOOTSTRAP_MIN_SEEDS", "PairedComparison", "Spread", "adjust_comparisons", "bootstrap_interval", "holm",
           "mean_sd", "paired_comparison", "sign_flip_p", "t_interval"]
