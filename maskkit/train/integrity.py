"""Checkpoint checksums: detect a truncated or altered file before trusting it, and find an intact one.

Beside every checkpoint ``NAME.pt`` the writer puts ``NAME.pt.sha256``, a small JSON record with the
SHA-256 and byte size of the file as written, and its epoch and step. The record is renamed into
place just *before* the checkpoint, and it also keeps the digest of the file on disk at that moment
(``previous``, taken from the old record's entry that this file matches, never from the old record
blindly), so a process killed between the two renames — once or at every save — leaves a pair that
still verifies. A checkpoint without a record (written by an older maskkit, or copied alone) is
"unverified": it is still loaded, with ``torch.load``'s own checks only. A record that is present
but malformed counts as damage: a file's check cannot be skipped by spoiling its record.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from maskkit.safe_io import create_new

SUFFIX = ".sha256"
RECORD_FORMAT = "maskkit-checksum"
CHUNK = 1 << 22


def record_path(checkpoint: Path) -> Path:
    return checkpoint.with_name(checkpoint.name + SUFFIX)


def file_digest(path: Path) -> tuple[str, int]:
    """(sha256 hex, size in bytes), read in 4 MiB chunks."""
    h = hashlib.sha256()
    size = 0
    with open(path, "rb") as fh:
        while chunk := fh.read(CHUNK):
            h.update(chunk)
            size += len(chunk)
    return h.hexdigest(), size


def _entry_ok(entry: Any) -> bool:
    """A well-formed digest entry: a 64-hex SHA-256 and a non-negative integer size."""
    return (isinstance(entry, dict) and isinstance(entry.get("sha256"), str)
            and re.fullmatch(r"[0-9a-f]{64}", entry["sha256"]) is not None
            and isinstance(entry.get("size"), int) and not isinstance(entry["size"], bool) and entry["size"] >= 0)


def read_record(checkpoint: Path) -> dict[str, Any] | None:
    """The checksum record of ``checkpoint``; None when absent; ``{}`` when unreadable or malformed."""
    path = record_path(checkpoint)
    if not os.path.lexists(path):
        return None
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    ok = isinstance(record, dict) and record.get("format") == RECORD_FORMAT and _entry_ok(record)
    if ok and record.get("previous") is not None and not _entry_ok(record["previous"]):
        ok = False
    return record if ok else {}


#: what this process last renamed into place, per path: (inode, size, mtime_ns) -> its entry, so a save
#: that follows one of this process's own need not read the previous file again to know its digest
_WRITTEN: dict[str, tuple[tuple[int, int, int], dict[str, Any]]] = {}


def _identity(path: Path) -> tuple[int, int, int]:
    st = path.stat()
    return st.st_ino, st.st_size, st.st_mtime_ns


def remember_written(checkpoint: Path, entry: dict[str, Any]) -> None:
    _WRITTEN[str(checkpoint)] = (_identity(checkpoint), entry)


def matching_entry(checkpoint: Path) -> dict[str, Any] | None:
    """The entry (``sha256``, ``size``, ``epoch``, ``step``) of the current record that the file on
    disk matches; None when the file is absent, unrecorded or matches no entry."""
    record = read_record(checkpoint)
    if not record or not checkpoint.is_file():
        return None
    known = _WRITTEN.get(str(checkpoint))
    if known is not None and known[0] == _identity(checkpoint) and any(
            e and e.get("sha256") == known[1]["sha256"] for e in (record, record.get("previous"))):
        return dict(known[1])
    size = checkpoint.stat().st_size
    entries = [record] + ([record["previous"]] if record.get("previous") else [])
    same_size = [e for e in entries if e.get("size") == size]
    if not same_size:
        return None
    digest, _ = file_digest(checkpoint)
    for e in same_size:
        if e.get("sha256") == digest:
            return {k: e.get(k) for k in ("sha256", "size", "epoch", "step")}
    return None


class HashingWriter:
    """File-like wrapper that hashes what ``torch.save`` writes, so no second read is needed."""

    def __init__(self, fh: Any) -> None:
        self.fh = fh
        self.sha = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> int:
        self.sha.update(data)
        self.size += len(data)
        return self.fh.write(data)

    def flush(self) -> None:
        self.fh.flush()


def stage_record(written: Path, final: Path, position: dict[str, Any] | None,
                 digest: tuple[str, int] | None = None) -> Path:
    """Write the record of ``written`` (the temp file that will become ``final``) to a temp path.

    ``digest`` is (sha256, size) when the writer already hashed the bytes; else the file is read.
    Returns the temp record path; the caller renames it over ``record_path(final)`` right before
    renaming the checkpoint itself.
    """
    sha, size = digest if digest is not None else file_digest(written)
    previous = matching_entry(final)  # what is on disk now, whatever the last record claims
    pos = position or {}
    record = {"format": RECORD_FORMAT, "file": final.name, "sha256": sha, "size": size,
              "epoch": pos.get("epoch"), "step": pos.get("global_step"), "previous": previous}
    tmp = record_path(final).with_name(record_path(final).name + ".tmp")
    with os.fdopen(create_new(tmp), "wb") as fh:
        fh.write(json.dumps(record, indent=1).encode())
        fh.flush()
        os.fsync(fh.fileno())
    return tmp


@dataclass
class CheckpointStatus:
    """What is known about one checkpoint file without loading it."""

    path: Path
    state: str  # "ok" | "damaged" | "unverified"
    reason: str = ""
    size: int = 0
    epoch: int | None = None
    step: int | None = None

    @property
    def usable(self) -> bool:
        return self.state != "damaged"

    def to_dict(self) -> dict[str, Any]:
        return {"file": str(self.path), "state": self.state, "reason": self.reason, "size": self.size,
                "epoch": self.epoch, "step": self.step}


def verify(path: str | Path) -> CheckpointStatus:
    """Compare a checkpoint with its checksum record: size first (truncation), then SHA-256."""
    p = Path(path)
    if not p.is_file():
        return CheckpointStatus(p, "damaged", "missing")
    size = p.stat().st_size
    record = read_record(p)
    if record is None:
        return CheckpointStatus(p, "unverified", "no checksum record", size)
    if not record:
        return CheckpointStatus(p, "damaged", f"checksum record {record_path(p).name} is malformed", size)
    candidates = [record] + ([record["previous"]] if isinstance(record.get("previous"), dict) else [])
    same_size = [c for c in candidates if c.get("size") == size]
    if not same_size:
        expected = record.get("size")
        how = "truncated" if isinstance(expected, int) and size < expected else "wrong size"
        return CheckpointStatus(p, "damaged", f"{how}: {size} bytes, {expected} written",
                                size, record.get("epoch"), record.get("step"))
    digest, _ = file_digest(p)
    for c in same_size:
        if c.get("sha256") == digest:
            return CheckpointStatus(p, "ok", "", size, c.get("epoch"), c.get("step"))
    return CheckpointStatus(p, "damaged", "checksum mismatch (content changed after it was written)",
                            size, record.get("epoch"), record.get("step"))


def candidates_newest_first(run_dir: Path) -> list[Path]:
    """``last.pt``, then the periodic checkpoints from the latest epoch back."""
    ckdir = run_dir / "checkpoints"
    periodic = sorted(ckdir.glob("epoch_*.pt"), key=lambda q: int(re.findall(r"\d+", q.stem)[0]), reverse=True)
    last = ckdir / "last.pt"
    return ([last] if last.is_file() else []) + periodic


__all__ = ["CheckpointStatus", "candidates_newest_first", "HashingWriter", "file_digest", "matching_entry",
           "read_record", "remember_written",
           "record_path", "stage_record", "verify"]
