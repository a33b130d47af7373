"""Data order and augmentation are the same with worker processes as without."""

import torch

from maskkit.train.checkpoint import load_checkpoint
from maskkit.train.trainer import run_training


def test_workers_give_identical_training(toy_config, tmp_path):
    run_training(toy_config(epochs=2, out=str(tmp_path / "w0"), num_workers=0))
    run_training(toy_config(epochs=2, out=str(tmp_path / "w2"), num_workers=2))
    a = load_checkpoint(tmp_path / "w0/checkpoints/last.pt")["model"]
    b = load_checkpoint(tmp_path / "w2/checkpoints/last.pt")["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)
