"""The image modality: options, datasets, patch tokenizer and reconstruction pictures."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch.nn.functional as F
from torch import Tensor

from maskkit.config_utils import ConfigError
from maskkit.modality import DataError, MaskkitDataset, Modality, VisualBatch
from maskkit.records import is_record_spec
from maskkit.registry import register_modality
from maskkit.tokenizer import Tokenizer

from .data import BUILTIN, ImageDataset
from .draw import render_image_batch
from .records import record_images
from .sources import open_dataset
from .tokenizer import ImagePatchTokenizer


def parse_image_size(value: object) -> tuple[int, int]:
    """``32``, ``"32"``, ``"32x48"`` (height x width), ``"32,48"`` or ``(32, 48)`` -> (H, W)."""
    try:
        if isinstance(value, (tuple, list)) and len(value) == 2:
            h, w = int(value[0]), int(value[1])
        elif isinstance(value, int) and not isinstance(value, bool):
            h = w = value
        elif isinstance(value, str):
            parts = value.lower().replace(",", "x").replace("*", "x").split("x")
            if len(parts) == 1:
                h = w = int(parts[0])
            elif len(parts) == 2:
                h, w = int(parts[0]), int(parts[1])
            else:
                raise ValueError
        else:
            raise ValueError
    except (TypeError, ValueError):
        raise ConfigError(f"`image_size` expects N or HxW (e.g. 32 or 32x48), got {value!r}") from None
    if h < 1 or w < 1:
        raise ConfigError(f"`image_size` must be positive, got {value!r}")
    return h, w


#: most patches per image: attention is quadratic in them, and a typo (image_size = 1000000) would
#: otherwise allocate position tables and pictures until memory runs out
MAX_TOKENS = 1 << 16


@dataclass
class ImageConfig:
    """Image options (settings ``image_size`` etc.; TOML ``[modality_options]``)."""

    #: side in pixels, or "HxW" for non-square pictures
    image_size: int | str = 32
    patch_size: int = 4
    #: None: from the data (1 for greyscale, 3 for colour); set it to convert (grey <-> RGB, RGBA)
    channels: int | None = None
    #: normalise each target patch by its own mean/std (MAE's recommended target)
    norm_pix_loss: bool = True
    #: augment training samples (evaluation samples never are)
    augment: bool = True
    #: auto: small shifts for digits, random-resized crop + flip for everything else
    augment_policy: Literal["auto", "crop_flip", "shift", "none"] = "auto"
    #: standardise pixels per channel; statistics from the data unless pixel_mean/pixel_std are set
    normalize: bool = True
    pixel_mean: tuple[float, ...] | None = None
    pixel_std: tuple[float, ...] | None = None

    def __post_init__(self) -> None:
        h, w = parse_image_size(self.image_size)
        self.image_size = h if h == w else f"{h}x{w}"  # canonical, round-trips through TOML/JSON
        if isinstance(self.patch_size, bool) or not isinstance(self.patch_size, int) or self.patch_size < 1:
            raise ConfigError(f"`patch_size` must be a positive integer, got {self.patch_size!r}")
        if h % self.patch_size or w % self.patch_size:
            raise ConfigError(f"`image_size` {self.image_size} is not divisible by "
                              f"`patch_size` {self.patch_size}")
        tokens = (h // self.patch_size) * (w // self.patch_size)
        if tokens > MAX_TOKENS:
            raise ConfigError(f"`image_size` {self.image_size} with `patch_size` {self.patch_size} gives {tokens} "
                              f"tokens per image, more than the {MAX_TOKENS} a sequence may hold")
        if self.channels is not None and self.channels < 1:
            raise ConfigError(f"`channels` must be >= 1, got {self.channels}")
        for name in ("pixel_mean", "pixel_std"):
            values = getattr(self, name)
            if values is None:
                continue
            values = tuple(float(v) for v in values)
            setattr(self, name, values)
            if self.channels is not None and len(values) != self.channels:
                raise ConfigError(f"`{name}` has {len(values)} values but `channels` is "
                                  f"{self.channels}")
        if self.pixel_std is not None and any(s <= 0 for s in self.pixel_std):
            raise ConfigError(f"`pixel_std` values must be > 0, got {self.pixel_std}")
        if (self.pixel_mean is None) != (self.pixel_std is None):
            raise ConfigError("`pixel_mean` and `pixel_std` must be given together")

    @property
    def size(self) -> tuple[int, int]:
        """(height, width) in pixels."""
        return parse_image_size(self.image_size)

    @property
    def grid(self) -> tuple[int, int]:
        h, w = self.size
        return h // self.patch_size, w // self.patch_size


#: options that fix the token grid: a data default applies only when none of them is given
GEOMETRY = frozenset({"image_size", "patch_size"})
#: per embedded dataset, the options its first run uses (docs/recipe-study). The digits are 8x8
#: pictures: resized to 32 px with 4 px patches, each token was one interpolated source pixel, and
#: pretraining left the encoder at or below its untrained self on both probes. At their own 8 px with
#: 2x2-pixel patches each token holds 4 real pixels; the target is those pixels, not normalised per patch
#: (over 4 values that removes a token's brightness, most of what it holds: at 10 epochs the k-NN gain
#: was -0.009 with it and +0.024 without)
DATA_DEFAULTS: dict[str, dict[str, Any]] = {
    "builtin:digits": {"image_size": 8, "patch_size": 2, "norm_pix_loss": False},
}


@register_modality
class ImageModality(Modality):
    name = "image"
    description = "Pictures as a grid of p x p pixel patches (MAE); PNG/JPEG folders, .npy/.npz arrays."
    Config = ImageConfig
    default_mask_ratio = 0.75
    default_data = "builtin:digits"
    default_model = "micro"
    builtin_datasets = dict(BUILTIN)

    config: ImageConfig

    def __init__(self, options: ImageConfig | None = None) -> None:
        super().__init__(options if options is not None else ImageConfig())

    @classmethod
    def data_defaults(cls, data: str, given: Collection[str]) -> dict[str, Any]:
        """The embedded digits at their own 8x8 pixels, unless a size or patch is given (see
        ``DATA_DEFAULTS``); every other data gets ``ImageConfig``'s defaults."""
        suggested = DATA_DEFAULTS.get(data, {})
        if GEOMETRY & set(given):
            return {}
        return {key: value for key, value in suggested.items() if key not in given}

    # --- data -----------------------------------------------------------------------------------
    def build_dataset(self, data: str | None, train: bool, seed: int = 0,
                      on_bad_file: str = "error") -> ImageDataset:
        """``data``: ``builtin:digits`` / ``builtin:photos``, a folder of PNG/JPEG or a .npy/.npz
        file. ``on_bad_file="skip"`` skips unreadable files (kept in ``dataset.skipped``)."""
        opts = self.config
        source = str(data) if data else self.default_data
        policy = opts.augment_policy
        if policy == "auto":
            # shifts only where a crop or flip would change the label (digits; hierarchy's layouts)
            policy = "shift" if source in ("builtin:digits", "builtin:hierarchy") else "crop_flip"
        common = dict(size=opts.size, channels=opts.channels, augment=train and opts.augment, policy=policy,
                      seed=seed)
        if is_record_spec(source):  # tar shards or hf:PATH
            ds = record_images(source, on_bad_file, **common)  # type: ignore[arg-type]
        else:
            ds = open_dataset(source, on_bad_file=on_bad_file, **common)  # type: ignore[arg-type]
        if not opts.normalize:
            ds.set_normalisation([0.0] * ds.channels, [1.0] * ds.channels)
        elif opts.pixel_mean is not None and opts.pixel_std is not None:
            if len(opts.pixel_mean) != ds.channels:
                raise ConfigError(f"`pixel_mean` has {len(opts.pixel_mean)} values but {source} has "
                                  f"{ds.channels} channel(s)")
            ds.set_normalisation(opts.pixel_mean, opts.pixel_std)
        else:
            ds.set_normalisation(*ds.estimate_stats())
        return ds

    def adapt_to_dataset(self, dataset: MaskkitDataset) -> None:
        """Record the channel count and pixel statistics, so checkpoints and evaluation datasets
        built later use the same ones."""
        if not isinstance(dataset, ImageDataset):
            raise DataError(f"image modality cannot use dataset {type(dataset).__name__}")
        self.config.channels = dataset.channels
        self.config.pixel_mean = tuple(round(float(v), 6) for v in dataset.mean.flatten())
        self.config.pixel_std = tuple(round(float(v), 6) for v in dataset.std.flatten())

    # --- model pieces ---------------------------------------------------------------------------
    def build_tokenizer(self, embed_dim: int) -> Tokenizer:
        if self.config.channels is None:
            raise ConfigError("image channels are unknown: build the dataset and call adapt_to_dataset "
                              "first, or set `channels`")
        opts = self.config
        return ImagePatchTokenizer(opts.size, opts.patch_size, opts.channels, embed_dim)

    # --- evaluation -----------------------------------------------------------------------------
    def raw_features(self, x: Tensor) -> Tensor:
        """Flattened (standardised) pixels: the raw-input baseline for linear probes and k-NN."""
        return x.reshape(x.shape[0], -1).float()

    def object_token_fractions(self, masks: Tensor, tokenizer: Tokenizer) -> Tensor:
        """(B, H, W) pixel masks -> (B, h*w) mean of each p x p patch, in ``patchify``'s row-major order."""
        p = self.config.patch_size
        return F.avg_pool2d(masks.float().unsqueeze(1), p).flatten(1)

    # --- pictures -------------------------------------------------------------------------------
    def render(self, batch: VisualBatch, path: Path, title: str | None = None) -> Path:
        opts = self.config
        return render_image_batch(batch, path, title, mean=opts.pixel_mean, std=opts.pixel_std)


__all__ = ["ImageModality", "ImageConfig", "parse_image_size"]
