"""Writing files without following links: what maskkit writes lands in its own folder, or nowhere.

maskkit often runs as root on shared machines. A symbolic link (or a hard link) planted at a name it
writes — the lock, a temp file, ``config.json``, a picture — would otherwise send its bytes to the
link's target. Every writer goes through these helpers: a temp file is created with
``O_CREAT | O_EXCL | O_NOFOLLOW`` and renamed over the final name (a rename replaces the directory
entry, never the file a link points to), and a name that already holds a symbolic link or something
that is not a regular file is refused with one line naming it; files written in place (the lock,
``metrics.jsonl``) also refuse a hard-linked file, whose other name would receive the bytes.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from maskkit.errors import MaskkitError

NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)


class UnsafePath(MaskkitError, ValueError):
    """A link or a special file sits where maskkit would write (CLI exit code 2, like a bad setting)."""


def _describe(path: Path, st: os.stat_result, in_place: bool = True) -> str | None:
    """Why writing at ``path`` would reach outside it; None when it is a plain file of its own. A hard
    link matters only to a write ``in_place`` (a rename gives the name a new file, the other name keeps
    the old one, so a hard-linked snapshot of a run stays valid)."""
    if stat.S_ISLNK(st.st_mode):
        try:
            target = os.readlink(path)
        except OSError:
            target = "?"
        return f"is a symbolic link (to {target})"
    if stat.S_ISDIR(st.st_mode):
        return "is a directory"
    if not stat.S_ISREG(st.st_mode):
        return "is not a regular file"
    if in_place and st.st_nlink > 1:
        return f"is a hard link ({st.st_nlink} names share its data)"
    return None


def refuse_planted(path: str | Path, in_place: bool = True) -> None:
    """Raise :class:`UnsafePath` when ``path`` exists and is anything but a plain file (with
    ``in_place``, a single-named one)."""
    p = Path(path)
    try:
        st = os.lstat(p)
    except FileNotFoundError:
        return
    why = _describe(p, st, in_place)
    if why:
        raise UnsafePath(f"{p} {why}; maskkit does not write through it: remove it or use another folder")


def ensure_dir(path: str | Path) -> Path:
    """``mkdir -p`` that refuses an existing link or non-directory at ``path`` itself."""
    p = Path(path)
    with contextlib.suppress(FileNotFoundError):
        st = os.lstat(p)
        if stat.S_ISLNK(st.st_mode) or not stat.S_ISDIR(st.st_mode):
            why = _describe(p, st) or "is not a directory"
            raise UnsafePath(f"{p} {why}; maskkit does not write through it: remove it or use another folder")
    p.mkdir(parents=True, exist_ok=True)
    return p


def open_fd(path: str | Path, flags: int, mode: int = 0o644) -> int:
    """``os.open`` with ``O_NOFOLLOW``; a planted link or special file is refused by name."""
    p = Path(path)
    refuse_planted(p)
    try:
        fd = os.open(p, flags | NOFOLLOW, mode)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            refuse_planted(p)  # a link appeared between the check and the open
        raise
    why = _describe(p, os.fstat(fd))
    if why:
        os.close(fd)
        raise UnsafePath(f"{p} {why}; maskkit does not write through it: remove it or use another folder")
    return fd


def create_new(path: str | Path) -> int:
    """A fresh temp file: ``O_EXCL`` so nothing planted is reused; a plain leftover of a crash is removed."""
    p = Path(path)
    refuse_planted(p)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(p)  # a plain leftover temp file (refuse_planted let it through)
    return os.open(p, os.O_WRONLY | os.O_CREAT | os.O_EXCL | NOFOLLOW, 0o644)


@contextlib.contextmanager
def replacing(path: str | Path, fsync: bool = False) -> Iterator[IO[bytes]]:
    """Write ``path`` through a temp file renamed over it at the end; on any error the temp is removed
    and ``path`` keeps its old content."""
    p = Path(path)
    refuse_planted(p, in_place=False)
    tmp = p.with_name(f".{p.name}.{os.getpid()}.tmp")
    fd = create_new(tmp)
    try:
        with os.fdopen(fd, "wb") as fh:
            yield fh
            if fsync:
                fh.flush()
                os.fsync(fh.fileno())
        os.replace(tmp, p)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def check_can_write(path: str | Path) -> None:
    """Before long work whose result goes to ``path``: create and remove a probe beside it, so a
    read-only or missing folder fails at once (an ``OSError`` naming the folder)."""
    p = Path(path)
    refuse_planted(p, in_place=False)
    probe = p.with_name(f".{p.name}.{os.getpid()}.probe")
    try:
        os.close(create_new(probe))
        os.unlink(probe)
    except OSError as exc:
        raise OSError(exc.errno, f"cannot write there ({exc.strerror})", str(p.parent)) from None


def write_bytes(path: str | Path, data: bytes) -> None:
    with replacing(path) as fh:
        fh.write(data)


def write_text(path: str | Path, text: str) -> None:
    write_bytes(path, text.encode())


def save_figure(fig: Any, path: str | Path, **kwargs: Any) -> Path:
    """``fig.savefig`` into ``path`` (format from its suffix) without following a link there."""
    p = Path(path)
    ensure_dir(p.parent)
    with replacing(p) as fh:
        fig.savefig(fh, format=p.suffix.lstrip(".") or "png", **kwargs)
    return p


def append_text(path: str | Path, text: str) -> None:
    """Append to a log (``metrics.jsonl``) that may not be a link or another file's second name."""
    fd = open_fd(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    with os.fdopen(fd, "a") as fh:
        fh.write(text)


__all__ = ["UnsafePath", "append_text", "check_can_write", "create_new", "ensure_dir", "open_fd", "refuse_planted",
           "replacing", "save_figure", "write_bytes", "write_text"]
