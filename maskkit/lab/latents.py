"""Latent probes: which of the latent variables a dataset records can be read from frozen features?

A dataset may declare its latents (``MaskkitDataset.latents``: name, kind, level). Each one is
probed from the features of the full, unmasked input with 5-fold cross-validation and a fixed
seed: standardised logistic regression (accuracy) for a categorical latent, ridge regression with
its penalty picked by leave-one-out inside the training folds (R², averaged over a latent's
columns) for a continuous one. ``maskkit eval`` and ``maskkit compare`` both call
:func:`probe_latents`, with the pretrained encoder, the random-init encoder and the raw input on
the same samples and folds, so the three arms differ only in their features.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch

from maskkit.lab.evaluate import extract_features, raw_features
from maskkit.modality import Latent, MaskkitDataset, Modality
from maskkit.model.mae import MaskedAutoencoder

ARMS = ("pretrained", "random-init", "raw-input")
RIDGE_ALPHAS = tuple(float(a) for a in np.logspace(-2, 4, 13))


@dataclass
class LatentResult:
    """One latent's probe score per arm (NaN for an arm that was not probed)."""

    name: str
    kind: str
    level: int
    metric: str  # "accuracy" | "r2"
    pretrained: float
    random_init: float
    raw_input: float
    num_samples: int

    def to_dict(self) -> dict:
        out = asdict(self)
        out["random-init"] = out.pop("random_init")
        out["raw-input"] = out.pop("raw_input")
        return out

    def value(self, arm: str) -> float:
        return {"pretrained": self.pretrained, "random-init": self.random_init, "raw-input": self.raw_input}[arm]


def latent_indices(dataset: MaskkitDataset, max_samples: int | None, seed: int) -> np.ndarray:
    """The samples every arm is probed on: all, or a fixed random subset of ``max_samples``."""
    n = len(dataset)  # type: ignore[arg-type]
    if max_samples is None or n <= max_samples:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size=max_samples, replace=False))


def _folds(n: int, seed: int, labels: np.ndarray | None) -> list[tuple[np.ndarray, np.ndarray]]:
    from sklearn.model_selection import KFold, StratifiedKFold

    if labels is not None:
        smallest = int(np.bincount(labels)[np.bincount(labels) > 0].min())
        k = int(max(2, min(5, smallest)))
        return list(StratifiedKFold(n_splits=k, shuffle=True, random_state=seed).split(np.zeros(n), labels))
    return list(KFold(n_splits=5, shuffle=True, random_state=seed).split(np.zeros(n)))


def latent_score(features: np.ndarray, values: np.ndarray, latent: Latent, seed: int) -> float:
    """Cross-validated accuracy (categorical) or R² (continuous) of a linear probe of one latent."""
    from sklearn.linear_model import LogisticRegression, RidgeCV
    from sklearn.metrics import r2_score
    from sklearn.preprocessing import StandardScaler

    categorical = latent.kind == "categorical"
    y = np.asarray(values, dtype=np.int64 if categorical else np.float64)
    if categorical:
        _, y = np.unique(y, return_inverse=True)
        if y.max() < 1:
            return float("nan")  # one value only: nothing to probe
    scores = []
    for train, test in _folds(len(y), seed, y if categorical else None):
        scaler = StandardScaler().fit(features[train])
        x_train, x_test = scaler.transform(features[train]), scaler.transform(features[test])
        if categorical:
            clf = LogisticRegression(max_iter=300, tol=1e-3, C=1.0).fit(x_train, y[train])
            scores.append(float(clf.score(x_test, y[test])))
        else:
            reg = RidgeCV(alphas=RIDGE_ALPHAS).fit(x_train, y[train])
            scores.append(float(r2_score(y[test], reg.predict(x_test), multioutput="uniform_average")))
    return float(np.mean(scores))


def probe_latents(features: dict[str, np.ndarray], dataset: MaskkitDataset, indices: np.ndarray,
                  seed: int) -> list[LatentResult]:
    """Every declared latent, probed from each arm's features ({arm: (len(indices), F)}) on the same folds."""
    table = dataset.latent_values()
    out = []
    for latent in dataset.latents:
        values = np.asarray(table[latent.name])[indices]
        scores = {arm: latent_score(features[arm], values, latent, seed) if arm in features else float("nan")
                  for arm in ARMS}
        out.append(LatentResult(name=latent.name, kind=latent.kind, level=int(latent.level),
                                metric="accuracy" if latent.kind == "categorical" else "r2",
                                pretrained=scores["pretrained"], random_init=scores["random-init"],
                                raw_input=scores["raw-input"], num_samples=len(indices)))
    return out


def arm_features(models: dict[str, MaskedAutoencoder | None], modality: Modality | None, dataset: MaskkitDataset,
                 indices: np.ndarray, device: torch.device, feature: str = "mean",
                 amp_dtype: torch.dtype | None = None) -> dict[str, np.ndarray]:
    """{arm: features} of each given encoder (``feature``, the mean without a CLS token) and, with a
    modality, of the raw input (arm ``raw-input``)."""
    out = {}
    for arm, model in models.items():
        if model is not None:
            feats = extract_features(model, dataset, indices, device, amp_dtype=amp_dtype)
            out[arm] = feats.get(feature, feats["mean"])
    if modality is not None:
        out["raw-input"] = raw_features(modality, dataset, indices)
    return out


def evaluate_latents(models: dict[str, MaskedAutoencoder | None], modality: Modality | None,
                     dataset: MaskkitDataset, device: torch.device, seed: int = 0, max_samples: int | None = 2000,
                     feature: str = "mean", amp_dtype: torch.dtype | None = None) -> list[LatentResult]:
    """Probe every latent the dataset declares (empty list when it declares none)."""
    if not dataset.latents:
        return []
    idx = latent_indices(dataset, max_samples, seed)
    return probe_latents(arm_features(models, modality, dataset, idx, device, feature, amp_dtype), dataset, idx,
                         seed)


__all__ = ["ARMS", "LatentResult", "arm_features", "evaluate_latents", "latent_indices", "latent_score",
           "probe_latents"]
