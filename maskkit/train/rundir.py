"""Run and study directories: one owner at a time, and no silent overwrite of a finished run.

Ownership is an exclusive ``fcntl.flock`` on ``DIR/.maskkit.lock``. The kernel drops the lock when
its process ends in any way (exit, exception, ``SIGKILL``), so a crashed run never blocks its own
``resume``. The file also holds a JSON *holder record* (pid, host, process start time, command)
so a refused process can say who holds the directory. Where ``flock`` is not supported (some
network file systems) the record alone decides: a record of a process that no longer runs on this
host (pid gone, or pid reused by a process that started later) is stale and taken over.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import socket
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from maskkit.config_utils import ConfigError
from maskkit.safe_io import NOFOLLOW, create_new, open_fd

LOCK_NAME = ".maskkit.lock"
#: files whose presence means the directory already holds (part of) a training run
RUN_MARKERS = ("config.json", "metrics.jsonl", "summary.json")


class DirectoryBusy(ConfigError):
    """Another live process owns the directory (CLI exit code 2, like every user error)."""


def _proc_start(pid: int) -> int | None:
    """Start time of ``pid`` in clock ticks since boot (Linux ``/proc``); None where unknown."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    try:  # the command name (field 2) may hold spaces and parentheses: split after the last ')'
        return int(stat.rsplit(")", 1)[1].split()[19])
    except (IndexError, ValueError):
        return None


def holder_record(kind: str) -> dict[str, Any]:
    pid = os.getpid()
    return {"pid": pid, "host": socket.gethostname(), "proc_start": _proc_start(pid),
            "since": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "kind": kind,
            "command": " ".join(Path(sys.argv[0]).name.split() + sys.argv[1:])[:300]}


def read_holder(path: Path) -> dict[str, Any] | None:
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def holder_alive(record: dict[str, Any]) -> bool:
    """Whether the process a holder record names may still run (another host: assume it does)."""
    if record.get("host") != socket.gethostname():
        return True
    pid = record.get("pid")
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        pass
    started = record.get("proc_start")
    now = _proc_start(pid)
    return started is None or now is None or started == now  # a reused pid started later


def describe_holder(record: dict[str, Any] | None) -> str:
    if not record:
        return "another process (its holder record is not written yet)"
    return (f"maskkit {record.get('kind', '?')} (pid {record.get('pid')} on {record.get('host')}, "
            f"since {record.get('since')})")


@dataclass
class LockState:
    """What ``maskkit check`` says about a directory's lock."""

    state: str  # "free" | "held" | "stale"
    holder: dict[str, Any] | None = None

    def describe(self) -> str:
        if self.state == "free":
            return "free (no process owns it)"
        if self.state == "held":
            return f"held by {describe_holder(self.holder)}"
        return f"free (stale record of {describe_holder(self.holder)}, which no longer runs)"


def _flock(fd: int) -> bool | None:
    """True: locked; False: held by another; None: this file system has no flock."""
    try:
        import fcntl
    except ImportError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False
    except OSError as exc:
        if exc.errno in (errno.EAGAIN, errno.EACCES):
            return False
        if exc.errno in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL):
            return None
        raise


def lock_state(directory: str | Path) -> LockState:
    """Free, held (and by whom) or stale, without disturbing a live holder."""
    path = Path(directory) / LOCK_NAME
    if not path.is_file():
        return LockState("free")
    record = read_holder(path)
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return LockState("free")
    try:
        got = _flock(fd)
    finally:
        os.close(fd)  # closing drops a lock we took just to look
    if got is None:
        got = not (record is not None and holder_alive(record))
    if got:
        return LockState("stale" if record else "free", record)
    return LockState("held", record)


class DirectoryLock:
    """Exclusive ownership of ``directory`` until :meth:`release` (or the process ends)."""

    def __init__(self, directory: str | Path, kind: str, option: str = "`out`") -> None:
        self.directory = Path(directory)
        self.path = self.directory / LOCK_NAME
        self.kind = kind
        self.option = option
        self.fd: int | None = None

    def _busy(self, record: dict[str, Any] | None) -> DirectoryBusy:
        return DirectoryBusy(f"{self.option} {self.directory} is in use by {describe_holder(record)}; "
                             f"wait for it to finish or use another {self.option}")

    def acquire(self) -> DirectoryLock:
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            return self._acquire()
        except OSError as exc:
            raise ConfigError(f"{self.option} {self.directory}: cannot write there "
                              f"({exc.strerror or exc})") from None

    def _acquire(self) -> DirectoryLock:
        for _ in range(20):  # retried only when a releasing holder unlinked the file under us
            fd = open_fd(self.path, os.O_RDWR | os.O_CREAT)  # a planted link is refused, not followed
            got = _flock(fd)
            if got is None:
                os.close(fd)
                return self._acquire_without_flock()
            if not got:
                os.close(fd)
                raise self._busy(read_holder(self.path))
            try:
                same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same = False
            if same:
                self.fd = fd
                self._write_record()
                return self
            os.close(fd)
        raise self._busy(read_holder(self.path))

    def _acquire_without_flock(self) -> DirectoryLock:
        for _ in range(2):
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_EXCL | NOFOLLOW, 0o644)
            except FileExistsError:
                record = read_holder(self.path)
                if record is not None and holder_alive(record):
                    raise self._busy(record) from None
                self.path.unlink(missing_ok=True)  # stale: its process is gone
                continue
            self.fd = fd
            self._write_record()
            return self
        raise self._busy(read_holder(self.path))

    def _write_record(self) -> None:
        assert self.fd is not None
        data = json.dumps(holder_record(self.kind)).encode()
        os.ftruncate(self.fd, 0)
        os.pwrite(self.fd, data, 0)
        os.fsync(self.fd)

    def release(self) -> None:
        if self.fd is None:
            return
        with contextlib.suppress(OSError):
            self.path.unlink()  # before closing: nobody can lock a file that is about to vanish
        os.close(self.fd)
        self.fd = None

    def __enter__(self) -> DirectoryLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


@contextlib.contextmanager
def owned(directory: str | Path, kind: str, enabled: bool = True, option: str = "`out`") -> Iterator[None]:
    """Hold ``directory`` for the block (a no-op when ``enabled`` is False, e.g. on ranks > 0)."""
    if not enabled:
        yield
        return
    with DirectoryLock(directory, kind, option):
        yield


# --------------------------------------------------------------------------- where a run may write
def data_folder(data: str | None) -> tuple[Path, bool] | None:
    """The folder a ``data`` setting reads (a shard pattern's folder, ``hf:``'s path), and whether it
    is scanned for samples recursively (a plain folder: then a run inside it would become data);
    None for the embedded data (``builtin:NAME`` or unset)."""
    if not data or str(data).startswith("builtin:"):
        return None
    text = str(data)[3:] if str(data).startswith("hf:") else str(data)
    p = Path(text).expanduser()
    if "{" in p.name or p.suffix == ".tar" or any(ch in p.name for ch in "*?["):
        return p.parent, False
    return p, not str(data).startswith("hf:")


def check_out_location(out: str | Path, data: str | None = None, option: str = "`out`") -> None:
    """Refuse an output folder that is the working directory or above it (``overwrite`` would move
    the caller's own folder into itself), that is the data folder or holds it (``overwrite`` would
    move the data set aside), or that lies inside a folder scanned for samples (pictures would
    become samples)."""
    o = Path(out).expanduser().resolve()
    cwd = Path.cwd().resolve()
    if o == cwd or o in cwd.parents:
        raise ConfigError(f"{option} {out} is the working directory or a folder above it; "
                          f"give the run a folder of its own")
    found = data_folder(data)
    if found is None:
        return
    folder, scanned = found
    d = folder.resolve()
    if o == d or o in d.parents or (scanned and d in o.parents):
        where = "is" if o == d else "holds" if o in d.parents else "is inside"
        raise ConfigError(f"{option} {out} {where} the `data` folder {folder}; runs write pictures, "
                          f"checkpoints and logs there: give the run a folder outside the data")


# --------------------------------------------------------------------------- overwrite protection
def holds_run(directory: str | Path) -> bool:
    d = Path(directory)
    return any((d / name).exists() for name in RUN_MARKERS) or any((d / "checkpoints").glob("*.pt"))


def move_aside(directory: str | Path) -> Path:
    """Move every entry of ``directory`` (but its lock) into a sibling ``DIR.old-YYYYmmdd-HHMMSS``.

    The directory itself stays, so the lock held inside it keeps protecting it.
    """
    d = Path(directory)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    target = d.with_name(f"{d.name}.old-{stamp}")
    n = 1
    while target.exists():
        target = d.with_name(f"{d.name}.old-{stamp}-{n}")
        n += 1
    target.mkdir(parents=True)
    for entry in d.iterdir():
        if entry.name != LOCK_NAME:
            os.replace(entry, target / entry.name)
    return target


def prepare_run_dir(directory: str | Path, resume: bool, overwrite: bool) -> Path | None:
    """Refuse to start a new run over an existing one unless asked; returns where ``overwrite``
    moved the old run (None when nothing was moved)."""
    d = Path(directory)
    if resume or not holds_run(d):
        return None
    if overwrite:
        return move_aside(d)
    has_checkpoint = any((d / "checkpoints").glob("*.pt"))
    hint = ("`resume` to continue it, `overwrite` to move it aside and start again"
            if has_checkpoint else "`overwrite` to move it aside and start again")
    raise ConfigError(f"`out` {d} already holds a run; use {hint}, or another `out`")


def check_writable(out: Path) -> None:
    """Fail early, with one line, where the run directory cannot be created or written."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".write-test"
        os.close(create_new(probe))  # O_EXCL | O_NOFOLLOW: a planted link is refused, never written through
        probe.unlink()
    except OSError as exc:
        raise ConfigError(f"`out` {out}: cannot write there ({exc.strerror or exc})") from None


__all__ = ["DirectoryBusy", "DirectoryLock", "LockState", "check_out_location", "check_writable", "data_folder",
           "holds_run", "lock_state", "move_aside", "owned", "prepare_run_dir"]
