"""A tiny synthetic modality used by core tests, so they do not depend on any real modality."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from maskkit.modalities.image.tokenizer import ImagePatchTokenizer
from maskkit.modality import MaskkitDataset, Modality, VisualBatch
from maskkit.registry import register_modality


class BlobDataset(MaskkitDataset):
    """Two classes of 8x8 images: a bright blob on the left or on the right, plus noise."""

    def __init__(self, n: int = 96, seed: int = 0, augment: bool = False) -> None:
        rng = np.random.default_rng(seed)
        self.labels = (np.arange(n) % 2).astype(np.int64)
        yy, xx = np.mgrid[0:8, 0:8]
        base = []
        for label in self.labels:
            cx = 2 if label == 0 else 5
            cy = rng.uniform(2, 5)
            blob = np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / 3.0)
            base.append(blob + 0.1 * rng.standard_normal((8, 8)))
        self.images = torch.tensor(np.stack(base), dtype=torch.float32).unsqueeze(1)
        self.augment = augment
        self.seed = seed
        self.source = "toy blobs"

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int):
        x = self.images[index]
        if self.augment:
            rng = self.rng_for(index)
            x = x + 0.05 * torch.from_numpy(rng.standard_normal(x.shape).astype(np.float32))
        return x, int(self.labels[index])


@dataclass
class ToyConfig:
    image_size: int = 8
    patch_size: int = 2
    channels: int = 1
    norm_pix_loss: bool = True


@register_modality
class ToyModality(Modality):
    name = "toy"
    description = "8x8 synthetic blobs (tests only)"
    Config = ToyConfig
    default_mask_ratio = 0.75
    default_data = "builtin:blobs"
    default_model = "nano"
    builtin_datasets = {"blobs": "two classes of blobs"}

    def build_dataset(self, data, train, seed=0, on_bad_file="error"):
        return BlobDataset(seed=seed, augment=train)

    def build_tokenizer(self, embed_dim):
        o = self.config
        return ImagePatchTokenizer((o.image_size, o.image_size), o.patch_size, o.channels, embed_dim)

    def render(self, batch: VisualBatch, path: Path, title=None) -> Path:
        from PIL import Image

        img = batch.tokenizer.untokenize(batch.pasted_targets.float(), batch.tokens)[:, 0]
        arr = (img - img.min()) / (img.max() - img.min() + 1e-6)
        Image.fromarray((torch.cat(list(arr), dim=1).numpy() * 255).astype(np.uint8)).save(path)
        return path
