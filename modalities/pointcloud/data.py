"""Point-cloud datasets: a folder of files (class sub-folders = labels) or the embedded shapes.

Every file is read and validated once when the dataset opens (the verdicts are cached, see
maskkit.file_index); clouds from files are then read again per sample (``LazyClouds``), so a
large folder costs memory only for the clouds in the current batch. ``__getitem__`` normalises to
the unit sphere, draws a fixed-size subset and the augmentation from ``rng_for(index)``, so the
same seed and epoch give the same sample in any worker.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from maskkit.modality import DataError, MaskkitDataset, scan_files

from .io import POINT_SUFFIXES, load_points
from .shapes import generate_shapes

UP_AXES = {"x": 0, "y": 1, "z": 2}


@dataclass(frozen=True)
class Augmentation:
    """Point-MAE's pre-training augmentation: anisotropic scale, translation, rotation about up."""

    scale: tuple[float, float] = (2 / 3, 3 / 2)
    translate: float = 0.2
    rotate: bool = True
    up_axis: str = "y"

    def apply(self, pts: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        pts = pts * rng.uniform(self.scale[0], self.scale[1], size=(1, 3))
        if self.rotate:
            a = rng.uniform(0, 2 * np.pi)
            c, s = np.cos(a), np.sin(a)
            i, j = [k for k in range(3) if k != UP_AXES[self.up_axis]]
            rot = np.eye(3)
            rot[i, i], rot[i, j], rot[j, i], rot[j, j] = c, -s, s, c
            pts = pts @ rot.T
        return pts + rng.uniform(-self.translate, self.translate, size=(1, 3))


def normalise_unit_sphere(pts: np.ndarray) -> np.ndarray:
    """Centre on the mean and scale so the farthest point lies on the unit sphere."""
    pts = pts - pts.mean(axis=0, keepdims=True)
    radius = float(np.linalg.norm(pts, axis=1).max()) if len(pts) else 0.0
    return pts / radius if radius > 0 else pts


def resample(pts: np.ndarray, num_points: int, rng: np.random.Generator) -> np.ndarray:
    """Exactly ``num_points``: a random subset, or every point plus random repeats, shuffled."""
    m = len(pts)
    if m >= num_points:
        idx = rng.permutation(m)[:num_points]
    else:
        idx = rng.permutation(np.concatenate([np.arange(m), rng.integers(0, m, num_points - m)]))
    return pts[idx]


def normalised(cloud: np.ndarray) -> np.ndarray:
    return normalise_unit_sphere(np.asarray(cloud, dtype=np.float64)).astype(np.float32)


def count_points(path: Path, cap: int) -> int:
    """Module-level (picklable) check for the cached, parallel scan: reads and validates the file."""
    return int(len(load_points(path, cap)))


class LazyClouds(Sequence):
    """Clouds read from their files on access (per sample), normalised; nothing held in memory."""

    def __init__(self, files: list[Path], cap: int) -> None:
        self.files = files
        self.cap = cap

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index):  # type: ignore[override]
        return normalised(load_points(self.files[index], self.cap))


class PointCloudDataset(MaskkitDataset):
    """Clouds in memory (embedded shapes) or read per sample (``LazyClouds``, ``RecordClouds``);
    items are ``((num_points, 3) float32, label)``."""

    def __init__(self, clouds: Sequence[np.ndarray], labels: np.ndarray, class_names: list[str] | None,
                 num_points: int, augment: bool, seed: int = 0, source: str = "",
                 augmentation: Augmentation | None = None,
                 skipped: list[tuple[str, str]] | None = None) -> None:
        self.clouds = clouds if not isinstance(clouds, list) else [normalised(c) for c in clouds]
        self.labels = np.asarray(labels, dtype=np.int64)
        self.class_names = class_names
        self.num_points = num_points
        self.augment = augment
        self.seed = seed
        self.source = source
        self.augmentation = augmentation or Augmentation()
        self.skipped = list(skipped or [])

    def __len__(self) -> int:
        return len(self.clouds)

    def __getitem__(self, index: int) -> tuple[Tensor, int]:
        # without augmentation the subset must not change between epochs (evaluation features)
        rng = self.rng_for(index) if self.augment else np.random.default_rng([self.seed, index])
        pts = resample(self.clouds[index], self.num_points, rng)
        if self.augment:
            pts = self.augmentation.apply(pts.astype(np.float64), rng)
        return torch.from_numpy(np.ascontiguousarray(pts, dtype=np.float32)), int(self.labels[index])

    def describe(self) -> str:
        text = f"{len(self)} point clouds from {self.source}"
        if self.class_names:
            text += f", {len(self.class_names)} classes"
        if self.skipped:
            text += f" ({len(self.skipped)} bad files skipped)"
        return text


# --------------------------------------------------------------------------- folders of files
def _pick_split(root: Path, train: bool) -> Path:
    """``root/train`` + ``root/test`` (or ``val``) folders select a split; otherwise the whole tree."""
    names = {p.name.lower(): p for p in root.iterdir() if p.is_dir()}
    if "train" in names and ("test" in names or "val" in names):
        return names["train"] if train else names.get("test", names.get("val"))  # type: ignore[return-value]
    return root


def _in_split(rel: Path, train: bool) -> bool:
    """ModelNet layout (``class/train/*.off``, ``class/test/*.off``): is the file in the wanted split?"""
    return ("train" if train else "test") in {p.lower() for p in rel.parts[1:-1]}


def _split_list(root: Path, train: bool) -> set[str] | None:
    """ModelNet's resampled release lists sample names in ``*_train.txt`` / ``*_test.txt`` at the top."""
    want = sorted(root.glob("*_train.txt" if train else "*_test.txt"))
    other = sorted(root.glob("*_test.txt" if train else "*_train.txt"))
    if not want or not other:
        return None
    return {ln.strip() for f in want for ln in f.read_text(errors="replace").splitlines() if ln.strip()}


def list_files(root: Path, train: bool) -> tuple[list[Path], list[int], list[str]]:
    """Files under ``root`` with labels from the first folder level.

    With class folders, loose files at the top (file lists, READMEs) are ignored; without any, the
    top-level files are the unlabelled data (label -1).
    """
    base = _pick_split(root, train)
    files = sorted(p for p in base.rglob("*") if p.is_file() and p.suffix.lower() in POINT_SUFFIXES
                   and not p.name.startswith("."))
    rels = [p.relative_to(base) for p in files]
    if any(len(r.parts) > 1 for r in rels):
        files = [f for f, r in zip(files, rels, strict=True) if len(r.parts) > 1]
        rels = [r for r in rels if len(r.parts) > 1]
    class_split = any({"train", "test"} <= {q.lower() for q in _subdirs(base / r.parts[0])}
                      for r in rels if len(r.parts) > 2)
    names = None if class_split else _split_list(base, train)
    keep = [(f, r) for f, r in zip(files, rels, strict=True)
            if (not class_split or _in_split(r, train)) and (names is None or f.stem in names)]
    class_names = sorted({r.parts[0] for _, r in keep if len(r.parts) > 1})
    index = {c: i for i, c in enumerate(class_names)}
    labels = [index[r.parts[0]] if len(r.parts) > 1 else -1 for _, r in keep]
    return [f for f, _ in keep], labels, class_names


def _subdirs(path: Path) -> list[str]:
    return [p.name for p in path.iterdir() if p.is_dir()] if path.is_dir() else []


def load_folder(path: str | Path, train: bool, num_points: int, on_bad_file: str = "error",
                seed: int = 0, augment: bool = False,
                augmentation: Augmentation | None = None) -> PointCloudDataset:
    """Scan and load a file or a folder; bad files raise ``DataError`` or, with ``on_bad_file='skip'``,
    are listed in ``dataset.skipped`` as (path, reason)."""
    root = Path(path).expanduser()
    if not root.exists():
        raise DataError(f"{root}: no such file or folder")
    if root.is_file():
        files, labels, class_names = [root], [-1], []
    else:
        files, labels, class_names = list_files(root, train)
    if not files:
        raise DataError(f"{root}: no point-cloud files found ({', '.join(POINT_SUFFIXES)})")
    cap = max(2 * num_points, 2048)
    label_of = dict(zip(files, labels, strict=True))
    good, _, skipped = scan_files(files, functools.partial(count_points, cap=cap), on_bad_file, str(root),
                                  index=(root if root.is_dir() else root.parent, f"pointcloud-files-{cap}"))
    kept = [label_of[f] for f in good]
    return PointCloudDataset(LazyClouds(good, cap), np.asarray(kept), class_names or None, num_points, augment, seed,
                             source=str(root), augmentation=augmentation, skipped=skipped)


# --------------------------------------------------------------------------- embedded shapes
BUILTIN_SHAPES_PER_CLASS = {True: 80, False: 20}


def load_builtin_shapes(train: bool, num_points: int, seed: int = 0, augment: bool = False,
                        augmentation: Augmentation | None = None,
                        per_class: int | None = None) -> PointCloudDataset:
    """Train (80 per class) and test (20 per class) sets from different generator seeds; the data do
    not depend on the run seed, so runs with different seeds see the same shapes."""
    n = per_class if per_class is not None else BUILTIN_SHAPES_PER_CLASS[train]
    clouds, labels, names = generate_shapes(n, max(1024, num_points), seed=0 if train else 1)
    return PointCloudDataset(list(clouds), labels, names, num_points, augment, seed,
                             source="builtin:shapes" + ("" if train else " (test split)"),
                             augmentation=augmentation)


__all__ = ["Augmentation", "PointCloudDataset", "load_builtin_shapes", "load_folder",
           "normalise_unit_sphere", "resample"]
