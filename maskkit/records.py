"""Record sources: WebDataset tar shards and Hugging Face ``datasets``, read as raw bytes per key.

A *record* is one sample's fields: ``{"png": b"...", "cls": b"3"}`` for a WebDataset sample
(``sample001.png`` + ``sample001.cls`` in a tar), or a ``datasets`` row whose image/audio columns are
handed over undecoded. The core knows nothing about pixels or waveforms: each modality says which
keys it reads and decodes them with its own decoders (``modalities/*/records.py``).

Why indexed random access rather than a sequential stream: a shard is scanned once (tar headers
give each member's byte offset and size; the scan also checks every record with the modality's
checker and reads its label) and the index is cached like the file index
(:mod:`maskkit.file_index`). After that a sample is one ``os.pread`` at a known offset, so tar
shards are a map-style dataset and keep *every* guarantee of the file loaders: the same permutation
per (seed, epoch), sharded by rank, split over DataLoader workers by batch, mid-epoch resume that
replays exactly the remaining samples, hold-out splits, and bad records listed before training
(``shard.tar:key: reason``). This is the design of WebDataset's own indexed reader (``wids``); the
stdlib ``tarfile`` gives the offsets directly, which is why the reader does not need ``webdataset``.
The price: shards must be plain, seekable ``.tar`` files on a local or network file system
(``.tar.gz`` and ``http://``/``pipe:`` URLs are refused with a message).

Hugging Face datasets saved with ``save_to_disk`` or stored as parquet are memory-mapped Arrow
tables, random access too; ``hf:PATH`` reads them through the ``datasets`` package (extra
``maskkit[shards]``).
"""

from __future__ import annotations

import io
import json
import os
import re
import stat
import tarfile
from collections import OrderedDict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from maskkit.file_index import POOL_MIN_ITEMS, _pool_context, cached_check
from maskkit.modality import DataError, report_bad
from maskkit.threads import configured_threads

LABEL_KEYS = ("cls", "label", "labels", "target")
JSON_LABEL_FIELDS = ("label", "cls", "class", "target")
MAX_OPEN_SHARDS = 64
#: most shards one ``{N..M}`` pattern may name (a typo like {0000000..2999999} would list millions)
MAX_SHARDS = 100_000
#: most bytes one record (a tar member, a file an ``hf:`` row names) may declare: anything larger is
#: refused before it is read, so a lying header or ``/dev/zero`` cannot exhaust memory
MAX_RECORD_BYTES = 1 << 30
_BRACE = re.compile(r"\{([^{}]*)\}")
_KEY = re.compile(r"^((?:.*/|)[^./]+)\.([^/]*)$")  # WebDataset: key = path up to the first dot of the name


def expand_braces(pattern: str) -> list[str]:
    """``train-{000..002}.tar`` -> three names; ``{a,b}`` lists; ranges keep their zero padding."""
    match = _BRACE.search(pattern)
    if match is None:
        return [pattern]
    head, body, tail = pattern[:match.start()], match.group(1), pattern[match.end():]
    if ".." in body:
        lo, hi = body.split("..", 1)
        if not (lo.isdigit() and hi.isdigit()):
            raise DataError(f"`data` {pattern}: a brace range must be {{N..M}} with digits, got {{{body}}}")
        width = len(lo) if lo.startswith("0") or len(lo) == len(hi) else 0
        if int(hi) - int(lo) + 1 > MAX_SHARDS:
            raise DataError(f"`data` {pattern}: the range {{{body}}} names {int(hi) - int(lo) + 1} shards, "
                            f"more than {MAX_SHARDS}; check the pattern")
        parts = [str(i).zfill(width) for i in range(int(lo), int(hi) + 1)]
    else:
        parts = body.split(",")
    return [name for part in parts for name in expand_braces(head + part + tail)]


def is_shard_spec(data: str) -> bool:
    """True for ``x.tar``, ``x-{000..009}.tar`` and a folder whose files are all ``.tar`` shards."""
    if data.startswith("hf:") or data.startswith("builtin:"):
        return False
    if "://" in data or data.startswith("pipe:"):
        return True  # refused with a message by TarShards
    if re.search(r"\.tar(\.gz|\.bz2|\.xz|\.zst)?$", data.replace("}", "")):
        return True
    path = Path(data).expanduser()
    if path.is_dir():
        files = [p for p in path.iterdir() if p.is_file() and not p.name.startswith(".")]
        return bool(files) and all(p.suffix == ".tar" for p in files)
    return False


def shard_paths(data: str) -> list[Path]:
    if "://" in data or data.startswith("pipe:"):
        raise DataError(f"`data` {data}: only local (or mounted) .tar shards are supported, not URLs or "
                        "pipes; copy or mount them first")
    if re.search(r"\.tar\.(gz|bz2|xz|zst)$", data.replace("}", "")):
        raise DataError(f"`data` {data}: compressed shards cannot be read by offset; use plain .tar "
                        "(maskkit data shard writes them)")
    path = Path(data).expanduser()
    if path.is_dir():
        paths = sorted(p for p in path.iterdir() if p.suffix == ".tar")
    else:
        paths = [Path(p).expanduser() for p in expand_braces(data)]
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        more = f" and {len(missing) - 3} more" if len(missing) > 3 else ""
        raise DataError(f"`data` {data}: {len(missing)} of {len(paths)} shard(s) missing: "
                        f"{', '.join(missing[:3])}{more}")
    if not paths:
        raise DataError(f"`data` {data}: no .tar shards found")
    return paths


def split_name(name: str) -> tuple[str, str] | None:
    """WebDataset's member-name rule: ``dir/s001.seg.png`` -> (``dir/s001``, ``seg.png``)."""
    match = _KEY.match(name)
    return (match.group(1), match.group(2).lower()) if match else None


def parse_label(fields: dict[str, bytes]) -> tuple[int, str | None]:
    """(label, class name) from a ``cls``/``label`` member (an integer as text) and/or a ``json`` member
    (``label``/``cls``/``class`` an integer or a class name, ``class_name`` a name); -1 when absent."""
    label, name = -1, None
    for key in LABEL_KEYS:
        if key in fields:
            text = fields[key].decode("utf-8", "replace").strip()
            try:
                label = int(text)
            except ValueError:
                raise DataError(f"{key} must be an integer label, found {text[:20]!r}") from None
            break
    if "json" in fields:
        try:
            meta = json.loads(fields["json"])
        except ValueError as exc:
            raise DataError(f"json member is not valid JSON ({exc})") from None
        if isinstance(meta, dict):
            if isinstance(meta.get("class_name"), str):
                name = meta["class_name"]
            for key in JSON_LABEL_FIELDS:
                value = meta.get(key)
                if isinstance(value, int) and not isinstance(value, bool) and label < 0:
                    label = value
                elif isinstance(value, str) and name is None:
                    name = value
    return label, name


class ShardChecker:
    """Picklable: index one shard for a modality (``wanted`` keys, ``check`` of a record's fields)."""

    def __init__(self, wanted: Sequence[str], check: Callable[[dict[str, bytes]], Any]) -> None:
        self.wanted = tuple(wanted)
        self.check = check

    def __call__(self, path: Path) -> list[list[Any]]:
        """One row per record: [key, {ext: [offset, size]}, label, class name, ok, result-or-reason]."""
        groups: OrderedDict[str, dict[str, tuple[int, int]]] = OrderedDict()
        try:
            on_disk = path.stat().st_size
            with tarfile.open(path, "r:") as tar:
                for member in tar:
                    check_member(path, member, on_disk)
                    if not member.isfile():
                        continue
                    parts = split_name(member.name)
                    if parts is None:
                        continue
                    groups.setdefault(parts[0], {})[parts[1]] = (member.offset_data, member.size)
        except (tarfile.TarError, OSError, EOFError) as exc:
            raise DataError(f"{path}: not a readable tar shard ({type(exc).__name__}: {exc})") from None
        if not groups:
            raise DataError(f"{path}: the shard holds no samples")
        rows: list[list[Any]] = []
        with open(path, "rb") as fh:
            def read(span: tuple[int, int]) -> bytes:
                fh.seek(span[0])
                return fh.read(span[1])

            for key, members in groups.items():
                spans = {ext: [int(o), int(s)] for ext, (o, s) in members.items()}
                try:
                    data_key = next((k for k in self.wanted if k in members), None)
                    if data_key is None:
                        raise DataError(f"no {'/'.join(self.wanted)} member (found: {', '.join(sorted(members))})")
                    small = {k: read(members[k]) for k in (*LABEL_KEYS, "json") if k in members}
                    label, name = parse_label(small)
                    result = self.check({data_key: read(members[data_key])})
                    rows.append([key, spans, label, name, True, result])
                except DataError as exc:
                    rows.append([key, spans, -1, None, False, str(exc)])
        return rows


def check_member(path: Path, member: tarfile.TarInfo, on_disk: int) -> None:
    """Trust a member's header only as far as the file goes: a truncated shard (whose last member
    ends past the end of the file) and sparse or oversized members are refused before any read."""
    if member.issparse():
        raise DataError(f"{path}: member {member.name} is a sparse file, not a WebDataset record")
    if not member.isfile():
        return
    if member.size > MAX_RECORD_BYTES:
        raise DataError(f"{path}: member {member.name} declares {member.size} bytes, more than the "
                        f"{MAX_RECORD_BYTES} a record may hold")
    if member.offset_data + member.size > on_disk:
        raise DataError(f"{path}: truncated: member {member.name} declares {member.size} bytes, which end "
                        f"past the end of the file ({on_disk} bytes)")


def index_shards(paths: list[Path], wanted: Sequence[str], check: Callable[[dict[str, bytes]], Any],
                 kind: str) -> list[tuple[Path, list[list[Any]]] | tuple[Path, str]]:
    """Each shard's records (cached by path, size and mtime; new shards indexed in a process pool)."""

    outcomes, _ = cached_check(paths, ShardChecker(wanted, check), paths[0].parent, kind)
    return [(p, value) for p, (ok, value) in zip(paths, outcomes, strict=True)]


class RecordSource:
    """Random access to records: ``read(i)`` gives the raw bytes per key, ``where(i)`` names it."""

    source: str = ""
    labels: np.ndarray
    class_names: list[str] | None = None
    results: list[Any]  # the modality checker's result per record (e.g. an image's colour mode)
    skipped: list[tuple[str, str]]

    def __len__(self) -> int:
        return len(self.labels)

    def read(self, index: int) -> dict[str, bytes]:
        raise NotImplementedError

    def where(self, index: int) -> str:
        raise NotImplementedError


def _class_names(labels: list[int], names: list[str | None]) -> tuple[np.ndarray, list[str] | None]:
    """Labels as given; names from json ``class`` strings when every record has one (sorted, like folders)."""
    if names and all(n is not None for n in names) and all(lab < 0 for lab in labels):
        ordered = sorted({str(n) for n in names})
        index = {n: i for i, n in enumerate(ordered)}
        return np.array([index[str(n)] for n in names], dtype=np.int64), ordered
    arr = np.asarray(labels, dtype=np.int64)
    known = arr[arr >= 0]
    if not len(known):
        return arr, None
    by_label = {lab: n for lab, n in zip(labels, names, strict=True) if lab >= 0 and n is not None}
    return arr, [str(by_label.get(i, i)) for i in range(int(known.max()) + 1)]


class TarShards(RecordSource):
    """WebDataset tar shards, indexed once (cached) and read by offset."""

    def __init__(self, data: str, wanted: Sequence[str], check: Callable[[dict[str, bytes]], Any],
                 on_bad_file: str, kind: str) -> None:
        self.source = data
        self.wanted = tuple(wanted)
        self.paths = shard_paths(data)
        shard_of, spans, labels, names, results = [], [], [], [], []
        self.keys: list[str] = []
        self.skipped = []
        total = 0
        for s, (path, rows) in enumerate(index_shards(self.paths, wanted, check, kind)):
            if isinstance(rows, str):  # the whole shard is unreadable
                self.skipped.append((str(path), rows))
                total += 1
                continue
            for key, members, label, name, ok, value in rows:
                total += 1
                if not ok:
                    self.skipped.append((f"{path}:{key}", value))
                    continue
                data_key = next(k for k in self.wanted if k in members)
                shard_of.append(s)
                spans.append((data_key, members[data_key]))
                labels.append(int(label))
                names.append(name)
                results.append(value)
                self.keys.append(key)
        report_bad(total, len(spans), self.skipped, on_bad_file, f"`data` {data}", noun="records")
        self.shard_of = np.asarray(shard_of, dtype=np.int32)
        self.spans = spans
        self.results = results
        self.labels, self.class_names = _class_names(labels, names)
        self._fds: OrderedDict[int, int] = OrderedDict()

    def _fd(self, shard: int) -> int:
        fd = self._fds.get(shard)
        if fd is None:
            if len(self._fds) >= MAX_OPEN_SHARDS:
                os.close(self._fds.popitem(last=False)[1])
            fd = os.open(self.paths[shard], os.O_RDONLY)
            self._fds[shard] = fd
        else:
            self._fds.move_to_end(shard)
        return fd

    def read(self, index: int) -> dict[str, bytes]:
        key, (offset, size) = self.spans[index]
        data = os.pread(self._fd(int(self.shard_of[index])), size, offset)
        if len(data) != size:
            raise DataError(f"{self.where(index)}: the shard changed or was truncated since it was indexed")
        return {key: data}

    def where(self, index: int) -> str:
        return f"{self.paths[int(self.shard_of[index])]}:{self.keys[index]}"

    def __getstate__(self) -> dict[str, Any]:  # file descriptors do not travel to spawned workers
        state = dict(self.__dict__)
        state["_fds"] = OrderedDict()
        return state

    def __del__(self) -> None:
        for fd in getattr(self, "_fds", {}).values():
            try:
                os.close(fd)
            except OSError:
                pass


def _datasets() -> Any:
    try:
        import datasets
    except ImportError:
        raise DataError("`data` hf:...: reading Hugging Face datasets needs the datasets package; "
                        "install it with: pip install 'maskkit[shards]'") from None
    return datasets


def open_hf(path: str) -> Any:
    """A ``datasets.Dataset`` from a ``save_to_disk`` folder (a DatasetDict: its ``train`` split or
    its only split) or from parquet files (a file or a folder of them)."""
    datasets = _datasets()
    root = Path(path).expanduser()
    if not root.exists():
        raise DataError(f"`data` hf:{path}: no such file or folder")
    parquet = [root] if root.suffix == ".parquet" else sorted(root.rglob("*.parquet")) if root.is_dir() else []
    try:
        if root.is_dir() and ((root / "dataset_dict.json").is_file() or (root / "state.json").is_file()):
            ds = datasets.load_from_disk(str(root))
        elif parquet:
            ds = datasets.Dataset.from_parquet([str(p) for p in parquet])
        else:
            raise DataError(f"`data` hf:{path}: expected a folder written by Dataset.save_to_disk or "
                            ".parquet files")
    except DataError:
        raise
    except Exception as exc:  # noqa: BLE001 - datasets/pyarrow raise many types
        raise DataError(f"`data` hf:{path}: cannot open ({type(exc).__name__}: {exc})") from None
    if isinstance(ds, datasets.DatasetDict):
        split = "train" if "train" in ds else next(iter(ds)) if len(ds) == 1 else None
        if split is None:
            raise DataError(f"`data` hf:{path}: several splits ({', '.join(ds)}) and none named train")
        ds = ds[split]
    return ds


def hf_root(path: str) -> Path:
    """The folder an ``hf:`` data set's row paths are relative to (the folder, or a parquet file's)."""
    root = Path(path).expanduser().resolve()
    return root if root.is_dir() else root.parent


def read_row_file(root: Path, name: str) -> bytes:
    """The file a row's ``path`` names, resolved inside the data set's folder, a regular file, and at
    most ``MAX_RECORD_BYTES`` (``/dev/zero``, a FIFO or ``../../secret`` are refused, not read)."""
    target = (root / Path(name).expanduser()).resolve()
    if target != root and root not in target.parents:
        raise DataError(f"path {name!r} is outside the data set's folder {root}")
    try:
        st = os.stat(target)  # before opening: opening a FIFO would wait for a writer
        if not stat.S_ISREG(st.st_mode):
            raise DataError(f"path {name!r} is not a regular file")
        if st.st_size > MAX_RECORD_BYTES:
            raise DataError(f"path {name!r} holds {st.st_size} bytes, more than the {MAX_RECORD_BYTES} "
                            f"a record may hold")
        with open(target, "rb") as fh:
            return fh.read(MAX_RECORD_BYTES)
    except OSError as exc:
        raise DataError(f"path {name!r}: cannot read ({exc.strerror or exc})") from None


def _as_bytes(value: Any, root: Path) -> bytes | None:
    if isinstance(value, (bytes, bytearray)):
        return bytes(value)
    if isinstance(value, dict):
        if value.get("bytes") is not None:
            return bytes(value["bytes"])
        if value.get("path"):
            return read_row_file(root, str(value["path"]))
    if isinstance(value, list):  # e.g. a point array stored as nested lists: an npy for the decoder
        buf = io.BytesIO()
        np.save(buf, np.asarray(value, dtype=np.float32), allow_pickle=False)
        return buf.getvalue()
    return None


def _hf_check_chunk(path: str, column: str, key: str, check: Callable[[dict[str, bytes]], Any],
                    start: int, stop: int) -> list[tuple[bool, Any]]:
    ds = HFRecords.columns_undecoded(open_hf(path))
    root = hf_root(path)
    out: list[tuple[bool, Any]] = []
    for value in ds[start:stop][column]:
        try:
            data = _as_bytes(value, root)
            if data is None:
                raise DataError(f"column {column!r} holds no bytes")
            out.append((True, check({key: data})))
        except DataError as exc:
            out.append((False, str(exc)))
    return out


def label_array(values: Sequence[Any]) -> np.ndarray:
    """Labels of a column; a missing one (None, as Arrow nulls read) is -1, like an unlabelled sample."""
    return np.asarray([-1 if v is None else v for v in values], dtype=np.int64)


class HFRecords(RecordSource):
    """Rows of a Hugging Face dataset; media columns are read undecoded and handed over as bytes.

    Columns: the first ``Image``/``Audio``/``Video`` feature (or a binary or list column whose name is a
    wanted key) is the data; a ``ClassLabel`` column (or an integer ``label``/``labels`` column) the label.
    """

    FEATURE_KEYS = {"Image": "image", "Audio": "audio", "Video": "video"}

    def __init__(self, path: str, wanted: Sequence[str], check: Callable[[dict[str, bytes]], Any],
                 on_bad_file: str) -> None:
        self.path = path
        self.source = f"hf:{path}"
        self.ds = self.columns_undecoded(open_hf(path))
        features = self.ds.features
        self.column, self.key = self._data_column(features, wanted)
        self.labels, self.class_names = self._labels(features)
        outcomes = self._check_all(check)
        keep = [i for i, (ok, _) in enumerate(outcomes) if ok]
        self.skipped = [(self.where(i), str(v)) for i, (ok, v) in enumerate(outcomes) if not ok]
        report_bad(len(outcomes), len(keep), self.skipped, on_bad_file, f"`data` {self.source}", noun="records")
        self.rows = np.asarray(keep, dtype=np.int64)
        self.results = [outcomes[i][1] for i in keep]
        self.labels = self.labels[self.rows]

    @classmethod
    def columns_undecoded(cls, ds: Any) -> Any:
        datasets = _datasets()
        for name, feature in ds.features.items():
            kind = type(feature).__name__
            if kind in cls.FEATURE_KEYS and getattr(feature, "decode", False):
                ds = ds.cast_column(name, getattr(datasets, kind)(decode=False))
        return ds

    def _data_column(self, features: Any, wanted: Sequence[str]) -> tuple[str, str]:
        for name, feature in features.items():
            key = self.FEATURE_KEYS.get(type(feature).__name__)
            if key is not None and key in wanted:
                return name, key
        for name in features:
            if name.lower() in wanted:
                return name, name.lower()
        raise DataError(f"`data` {self.source}: no column this modality reads (wanted a "
                        f"{'/'.join(wanted)} column or feature; found {', '.join(features)})")

    def _labels(self, features: Any) -> tuple[np.ndarray, list[str] | None]:
        n = len(self.ds)
        for name, feature in features.items():
            if type(feature).__name__ == "ClassLabel":
                return label_array(self.ds[name]), list(feature.names)
        for name in ("label", "labels"):
            if name in features and getattr(features[name], "dtype", "").startswith("int"):
                return label_array(self.ds[name]), None
        return np.full(n, -1, dtype=np.int64), None

    def _check_all(self, check: Callable[[dict[str, bytes]], Any]) -> list[tuple[bool, Any]]:

        n = len(self.ds)
        workers = configured_threads()
        if n < POOL_MIN_ITEMS or workers <= 1:
            return _hf_check_chunk(self.path, self.column, self.key, check, 0, n)
        import concurrent.futures as cf


        step = -(-n // (workers * 4))
        with cf.ProcessPoolExecutor(workers, mp_context=_pool_context()) as pool:
            futures = [pool.submit(_hf_check_chunk, self.path, self.column, self.key, check, a, min(n, a + step))
                       for a in range(0, n, step)]
            return [o for f in futures for o in f.result()]

    def read(self, index: int) -> dict[str, bytes]:
        data = _as_bytes(self.ds[int(self.rows[index])][self.column], hf_root(self.path))
        if data is None:
            raise DataError(f"{self.where(index)}: column {self.column!r} holds no bytes")
        return {self.key: data}

    def where(self, index: int) -> str:
        row = int(self.rows[index]) if hasattr(self, "rows") else index
        return f"{self.source}[row {row}]"


def open_records(data: str, wanted: Sequence[str], check: Callable[[dict[str, bytes]], Any],
                 on_bad_file: str, kind: str) -> RecordSource:
    """``hf:PATH`` or tar shards -> a record source (the caller checks ``is_record_spec`` first)."""
    if on_bad_file not in ("error", "skip"):
        raise DataError(f"`on_bad_file` must be error or skip, got {on_bad_file!r}")
    if data.startswith("hf:"):
        return HFRecords(data[3:], wanted, check, on_bad_file)
    return TarShards(data, wanted, check, on_bad_file, kind)


def is_record_spec(data: str | None) -> bool:
    return bool(data) and (str(data).startswith("hf:") or is_shard_spec(str(data)))


__all__ = ["HFRecords", "RecordSource", "ShardChecker", "TarShards", "expand_braces", "is_record_spec",
           "is_shard_spec", "open_hf", "open_records", "parse_label", "shard_paths", "split_name"]
