"""Write WebDataset tar shards from a folder: ``maskkit data shard PATH `out` DIR``.

Each file becomes one sample ``<key>.<ext>``; with class sub-folders (``root/CLASS/file``, the rule
every maskkit loader uses) it also gets ``<key>.cls`` (the class index in sorted order, as text) and
``<key>.json`` (``{"label", "class_name", "path"}``). Keys are the sample's running number, so
names with dots (which WebDataset would split) cannot break grouping. Headers carry fixed owner and
time, so the same folder always gives byte-identical shards.
"""

from __future__ import annotations

import io
import json
import os
import tarfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from maskkit.errors import ConfigError
from maskkit.safe_io import ensure_dir, replacing


@dataclass(frozen=True)
class ShardSample:
    path: Path
    rel: str
    label: int
    class_name: str | None


def folder_samples(root: Path, suffixes: Iterable[str]) -> list[ShardSample]:
    """Files under ``root`` with one of ``suffixes`` (hidden folders skipped), labelled by class folder."""
    wanted = {s.lower() for s in suffixes}
    files = sorted((p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in wanted
                    and not any(part.startswith(".") for part in p.relative_to(root).parts)),
                   key=lambda p: p.relative_to(root).as_posix())
    rel = [p.relative_to(root).parts for p in files]
    if files and all(len(parts) >= 2 for parts in rel):
        names = sorted({parts[0] for parts in rel})
        index = {n: i for i, n in enumerate(names)}
        return [ShardSample(p, "/".join(r), index[r[0]], r[0]) for p, r in zip(files, rel, strict=True)]
    return [ShardSample(p, "/".join(r), -1, None) for p, r in zip(files, rel, strict=True)]


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mtime = 0
    info.mode = 0o644
    info.uname = info.gname = ""
    tar.addfile(info, io.BytesIO(data))


def prepare_shard_folder(out: Path, overwrite: bool) -> list[Path]:
    """An empty (or new) folder for the shards. A folder that holds anything is refused unless
    ``overwrite``, which first removes the old shards (``*.tar``, and temp files left by a crash):
    new shards beside stale ones would read as one data set with clashing class indices."""
    if os.path.lexists(out) and not out.is_dir():
        raise ConfigError(f"`out` {out} exists and is not a folder")
    entries = sorted(out.iterdir()) if out.is_dir() else []
    if not entries:
        return []
    if not overwrite:
        count = f"{len(entries)} entr" + ("y" if len(entries) == 1 else "ies")
        raise ConfigError(f"`out` {out} is not empty ({count}, e.g. {entries[0].name}); "
                          f"use `overwrite` to replace its shards, or an empty folder")
    old = [p for p in entries if p.name.endswith((".tar", ".tmp")) and not p.is_dir()]
    for p in old:
        p.unlink()
    return old


def write_shards(samples: Sequence[ShardSample], out: Path, prefix: str = "shard",
                 max_count: int = 1000, overwrite: bool = False) -> list[Path]:
    """Write ``prefix-000000.tar``... with at most ``max_count`` samples each; returns their paths."""
    if max_count < 1:
        raise ConfigError(f"`max_count` must be >= 1, got {max_count}")
    prepare_shard_folder(out, overwrite)
    ensure_dir(out)
    written: list[Path] = []
    digits = max(6, len(str(len(samples))))
    for s, start in enumerate(range(0, len(samples), max_count)):
        path = out / f"{prefix}-{s:06d}.tar"
        with replacing(path) as fh, tarfile.open(fileobj=fh, mode="w", format=tarfile.USTAR_FORMAT) as tar:
            for i, sample in enumerate(samples[start:start + max_count], start=start):
                key = f"{i:0{digits}d}"
                _add(tar, f"{key}{sample.path.suffix.lower()}", sample.path.read_bytes())
                if sample.label >= 0:
                    _add(tar, f"{key}.cls", str(sample.label).encode())
                meta = {"label": sample.label, "class_name": sample.class_name, "path": sample.rel}
                _add(tar, f"{key}.json", json.dumps(meta).encode())
        written.append(path)
    return written


__all__ = ["ShardSample", "folder_samples", "prepare_shard_folder", "write_shards"]
