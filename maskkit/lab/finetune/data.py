"""Labelled train / test split for fine-tuning, fixed across arms so pretrained and random-init
(and every run of a study) are tested on exactly the same samples."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from maskkit.lab.evaluate import EvaluationError
from maskkit.modality import MaskkitDataset
from maskkit.train.data import holdout_split


def split_indices(dataset: MaskkitDataset, run_dir: Path | None, test_fraction: float,
                  same_data: bool, max_test: int | None = None) -> tuple[np.ndarray, np.ndarray, str]:
    """(train indices, test indices, where the test samples come from); labelled samples only.

    When fine-tuning on the run's own data and the run held samples out of pretraining
    (``holdout.json``), those are the test set: never seen by the encoder nor the head. Otherwise a
    fixed split (independent of every seed) of ``test_fraction``.
    """
    if dataset.labels is None or not (np.asarray(dataset.labels) >= 0).any():
        raise EvaluationError(f"{dataset.source or 'the dataset'} has no labels: fine-tuning needs labelled data "
                              f"(class sub-folders or a labels array)")
    labels = np.asarray(dataset.labels)
    labelled = labels >= 0
    held = None
    where = f"a fixed {test_fraction:.0%} split of the labelled samples"
    info_path = run_dir / "holdout.json" if run_dir is not None else None
    if same_data and info_path is not None and info_path.is_file():
        info = json.loads(info_path.read_text())
        if int(info.get("num_samples", -1)) == len(dataset):
            held = np.asarray(info["indices"], dtype=np.int64)
            where = "the samples the run held out of pretraining"
    if held is None:
        _, held = holdout_split(len(dataset), test_fraction)
    test = held[labelled[held]]
    train = np.setdiff1d(np.flatnonzero(labelled), held)
    if max_test is not None and len(test) > max_test:
        test = np.sort(np.random.default_rng(0).choice(test, size=max_test, replace=False))
    if len(train) < 2 or len(test) < 1:
        raise EvaluationError(f"{dataset.source}: too few labelled samples to fine-tune ({len(train)} train, "
                              f"{len(test)} test)")
    if len(np.unique(labels[train])) < 2:
        raise EvaluationError(f"{dataset.source}: fine-tuning needs at least two classes in the training split")
    return train, test, where
