"""Modality contract: everything modality-specific (data, tokenizer, loss, pictures) behind one class.

A third-party package adds a modality by subclassing ``Modality`` and exposing it under the
``maskkit.modalities`` entry-point group; nothing in maskkit changes.
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal, TypeVar

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from maskkit.config_utils import dataclass_to_dict
from maskkit.contract import accept_parameter, adopt_renamed, require_members, warn_renamed
from maskkit.errors import DataError
from maskkit.file_index import cached_check
from maskkit.losses import Loss, ReconstructionMSE
from maskkit.plan import MaskPlan
from maskkit.tokenizer import Tokenizer
from maskkit.tokens import TokenBatch

T = TypeVar("T")
R = TypeVar("R")


@dataclass(frozen=True)
class Latent:
    """A latent variable a dataset records for every sample, so probes can ask which ones an encoder recovers.

    ``level`` places it in the data's hierarchy: 1 is the most global (what the whole sample is),
    higher numbers are more local (parts, then texture and colour). ``kind`` picks the probe:
    classification accuracy for ``categorical`` (integer codes), R² for ``continuous`` (one value
    or a few columns per sample).
    """

    name: str
    kind: Literal["categorical", "continuous"]
    level: int
    description: str = ""

    def __post_init__(self) -> None:
        if self.kind not in ("categorical", "continuous"):
            raise ValueError(f"latent {self.name!r}: kind must be categorical or continuous, got {self.kind!r}")
        if int(self.level) < 1:
            raise ValueError(f"latent {self.name!r}: level must be >= 1, got {self.level}")


class MaskkitDataset(Dataset):
    """Base dataset: ``__getitem__`` returns ``(sample_tensor, label)`` with label -1 when unknown.

    Augmentation must draw from ``self.rng_for(index)`` so that the same seed and epoch give the same
    augmented sample, whatever worker loads it (studies compare maskers on identical inputs).
    """

    labels: np.ndarray | None = None
    class_names: list[str] | None = None
    augment: bool = False
    seed: int = 0
    epoch: int = 0
    source: str = ""

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def rng_for(self, index: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, self.epoch, index])

    @property
    def num_classes(self) -> int:
        if self.labels is None:
            return 0
        return int(len(np.unique(self.labels[self.labels >= 0])))

    def describe(self) -> str:
        return f"{len(self)} samples from {self.source}"  # type: ignore[arg-type]

    #: latent variables recorded for every sample (see :class:`Latent`); empty for data without them
    latents: tuple[Latent, ...] = ()

    def latent_values(self) -> dict[str, np.ndarray]:
        """{latent name: (n,) integer codes or (n,) / (n, k) floats} for every sample, in index order.

        Datasets that declare ``latents`` override this; the default (no latents) is empty.
        """
        return {}

    #: True when ``object_sample`` gives ground-truth object masks (the object-coverage diagnostic)
    has_object_masks: bool = False

    def object_sample(self, index: int) -> tuple[Tensor, Tensor]:
        """(un-augmented input as the model takes it, object mask over the input's elements in [0, 1]).

        Datasets with known objects override this (and set ``has_object_masks``); the modality's
        :meth:`Modality.object_token_fractions` turns the mask into per-token object fractions, so
        every masker's object coverage can be measured the same way on any modality.
        """
        raise NotImplementedError(f"{self.source or type(self).__name__} has no object masks")


@dataclass
class VisualBatch:
    """What a modality needs to draw original / masked / reconstruction for a few samples."""

    inputs: Tensor  # original samples as loaded
    tokens: TokenBatch
    plan: MaskPlan
    pred_targets: Tensor  # (B, N, P) predictions mapped back to raw target units
    masked_targets: Tensor  # (B, N, P) targets with hidden tokens replaced by a fill value
    pasted_targets: Tensor  # (B, N, P) targets where visible, predictions where hidden
    tokenizer: Tokenizer
    extra_rows: dict[str, Tensor] | None = None  # optional (B, N) per-token maps to draw (clusters...)
    object_fraction: Tensor | None = None  # optional (B, N) share of each token inside the object


class Modality:
    """Subclasses set the class attributes and implement the abstract methods."""

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    Config: ClassVar[type] = object  # dataclass of modality options (sizes, patch sizes, ...)
    default_mask_ratio: ClassVar[float] = 0.75
    default_data: ClassVar[str] = ""
    default_model: ClassVar[str] = "tiny"
    #: base lr (for the batch/256 rule) of runs that set none; None = the model preset's
    #: (``maskkit.train.schedule.PRESET_BASE_LR``, else MAE's 1.5e-4). Set it from a probe-gain sweep
    #: on the modality's data (``maskkit compare --sweep base_lr=...``), not from the training loss.
    default_base_lr: ClassVar[float | None] = None
    #: the embedded datasets ("builtin:NAME") with one-line descriptions
    builtin_datasets: ClassVar[dict[str, str]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """A plug-in is checked when its class is defined: renamed members are adopted with a warning, a
        named (registrable) modality without its data, tokenizer or options dataclass is refused."""
        super().__init_subclass__(**kwargs)
        adopt_renamed(cls, {"Options": "Config"})
        accept_parameter(cls, "build_dataset", "on_bad_file", "error")
        if cls.__dict__.get("name"):
            require_members(cls, Modality, {"Config": "Options", "build_dataset": None, "build_tokenizer": None},
                            fits={"Config": dataclasses.is_dataclass})

    def __init__(self, options: Any) -> None:
        self.config = options

    @classmethod
    def data_defaults(cls, data: str, given: Collection[str]) -> dict[str, Any]:
        """Option values that suit ``data`` (e.g. an embedded dataset's own resolution), used for options
        set neither in a config file nor on the command line (``given`` names those that are). Default:
        none, i.e. the ``Config`` dataclass's defaults for every data."""
        return {}

    @property
    def options(self) -> Any:
        """Deprecated name of ``config`` (renamed in 0.2.0)."""
        warn_renamed(type(self), "options", "config")
        return self.config

    @options.setter
    def options(self, value: Any) -> None:
        warn_renamed(type(self), "options", "config")
        self.config = value

    # --- data ---------------------------------------------------------------------------------
    def build_dataset(self, data: str | None, train: bool, seed: int = 0,
                      on_bad_file: str = "error") -> MaskkitDataset:
        """``data`` is a path or ``builtin:NAME`` (None: the default). ``train`` turns on augmentation.
        ``on_bad_file``: "error" stops on the first unreadable file (one line naming it), "skip" leaves
        bad files out with a warning (``report_bad`` says both)."""
        raise NotImplementedError

    def adapt_to_dataset(self, dataset: MaskkitDataset) -> None:
        """Fill options that only the data knows (e.g. channel count). Default: nothing."""

    # --- model pieces --------------------------------------------------------------------------
    def build_tokenizer(self, embed_dim: int) -> Tokenizer:
        raise NotImplementedError

    def build_loss(self) -> Loss:
        return ReconstructionMSE(norm_pix=bool(getattr(self.config, "norm_pix_loss", True)))

    # --- evaluation ----------------------------------------------------------------------------
    def raw_features(self, x: Tensor) -> Tensor:
        """(B, F) features of the raw input for the raw-input baseline; default: flatten."""
        return x.reshape(x.shape[0], -1).float()

    def object_token_fractions(self, masks: Tensor, tokenizer: Tokenizer) -> Tensor:
        """(B, ...) per-element object masks (as ``object_sample`` gives) -> (B, N) share of each token
        covered by the object, in the tokenizer's token order. Modalities with object data implement it."""
        raise NotImplementedError(f"modality {self.name!r} cannot map object masks to tokens")

    # --- pictures ------------------------------------------------------------------------------
    def render(self, batch: VisualBatch, path: Path, title: str | None = None) -> Path:
        """Write a PNG showing original, masked input and reconstruction per sample."""
        raise NotImplementedError

    # --- helpers --------------------------------------------------------------------------------
    def options_dict(self) -> dict[str, Any]:

        return dataclass_to_dict(self.config)


#: names under which a ``.npz`` file may hold its labels array, tried in this order
ARRAY_LABEL_KEYS = ("labels", "y", "Y", "label", "targets")


def folder_labels(paths: Sequence[Path], root: Path) -> tuple[np.ndarray, list[str] | None]:
    """ImageFolder rule, for every modality: when every item sits in a folder under ``root``, that first
    folder is its class (sorted names -> indices); otherwise every label is -1 and there are no names."""
    parts = [Path(p).relative_to(root).parts for p in paths]
    if not parts or any(len(p) < 2 for p in parts):
        return np.full(len(paths), -1, np.int64), None
    names = sorted({p[0] for p in parts})
    index = {n: i for i, n in enumerate(names)}
    return np.array([index[p[0]] for p in parts], dtype=np.int64), names


def scan_files(items: Sequence[T], check: Callable[[T], R], on_bad_file: str,
               label: str, noun: str = "files", *, index: tuple[Path, str] | None = None
               ) -> tuple[list[T], list[R], list[tuple[str, str]]]:
    """Check every item when a dataset opens; report all bad ones together.

    ``check(item)`` returns what the loader needs (a frame count, a colour mode...) or raises
    ``DataError``. With ``on_bad_file="error"`` any bad item stops the run before training with one
    line listing them (path: reason, the first five, then a count); with ``"skip"`` they are left out,
    returned as (path, reason) and summarised in a warning. Returns (good items, their check results,
    skipped).

    ``index=(root, kind)`` caches the verdicts (keyed by path, size and mtime) and checks the rest in
    a process pool (see :mod:`maskkit.file_index`); ``check`` must then be a module-level function
    returning JSON-serialisable results.
    """
    if on_bad_file not in ("error", "skip"):
        raise DataError(f"`on_bad_file` must be error or skip, got {on_bad_file!r}")
    if index is not None:
        outcomes, _ = cached_check(list(items), check, index[0], index[1])  # type: ignore[arg-type]
    else:
        outcomes = []
        for item in items:
            try:
                outcomes.append((True, check(item)))
            except DataError as exc:
                outcomes.append((False, str(exc).removeprefix(f"{item}: ")))
    good: list[T] = []
    results: list[R] = []
    skipped: list[tuple[str, str]] = []
    for item, (ok, value) in zip(items, outcomes, strict=True):
        if ok:
            good.append(item)
            results.append(value)
        else:
            skipped.append((str(item), str(value)))
    report_bad(len(items), len(good), skipped, on_bad_file, label, noun)
    return good, results, skipped


def report_bad(total: int, num_good: int, skipped: list[tuple[str, str]], on_bad_file: str, label: str,
               noun: str = "files") -> None:
    """The one way bad files or records are reported: all listed in one line (first five + a count);
    an error unless ``on_bad_file == "skip"``, then a warning."""
    listed = "; ".join(f"{p}: {r}" for p, r in skipped[:5])
    listed += f"; and {len(skipped) - 5} more" if len(skipped) > 5 else ""
    what = "file(s)" if noun == "files" else noun
    if not num_good:
        raise DataError(f"{label}: none of the {total} {noun} could be read: {listed}")
    if skipped and on_bad_file == "error":
        raise DataError(f"{label}: {len(skipped)} unreadable {what} (use `on_bad_file` skip to skip them): "
                        f"{listed}")
    if skipped:
        warnings.warn(f"{label}: skipped {len(skipped)} unreadable {what}: {listed}", stacklevel=3)


def collate_samples(batch: list[tuple[Tensor, int]]) -> tuple[Tensor, Tensor]:
    xs, ys = zip(*batch, strict=True)
    return torch.stack(list(xs)), torch.as_tensor(ys, dtype=torch.long)
