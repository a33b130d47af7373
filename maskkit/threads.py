"""CPU threads: how many this process may use, setting them once per command, and oversubscription.

``os.cpu_count()`` reports the host's cores, not the ones a container or ``taskset`` lets this
process run on; sizing torch's pool (or a scan's process pool) from it oversubscribes the CPUs and
makes OpenMP threads spin on descheduled siblings (measured: 20x slower training on a busy 2-core
machine). ``usable_cpus`` reads the affinity mask and the cgroup CPU quota instead.

Small per-sample tensor work runs on one thread (``single_thread``): on a busy 2-core machine,
intra-op threads turn a 0.2 ms spectrogram or clip transform into 5-20 ms of spinning. DataLoader
workers run one thread each (torch sets this in every worker).
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import torch

from maskkit.errors import ConfigError

_configured: int | None = None


def cgroup_cpu_limit(root: Path = Path("/sys/fs/cgroup")) -> float | None:
    """CPUs allowed by the cgroup quota (v2 ``cpu.max`` or v1 ``cfs_quota_us``/``cfs_period_us``), or None."""
    try:
        text = (root / "cpu.max").read_text().split()
        if text and text[0] != "max":
            return int(text[0]) / int(text[1])
    except (OSError, ValueError, IndexError):
        pass
    try:
        quota = int((root / "cpu" / "cpu.cfs_quota_us").read_text())
        period = int((root / "cpu" / "cpu.cfs_period_us").read_text())
        if quota > 0 and period > 0:
            return quota / period
    except (OSError, ValueError):
        pass
    return None


def usable_cpus() -> int:
    """CPUs this process may run on: the affinity mask, capped by the cgroup quota (rounded up)."""
    try:
        count = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        count = os.cpu_count() or 1
    limit = cgroup_cpu_limit()
    if limit is not None:
        count = min(count, max(1, math.ceil(limit)))
    return max(1, count)


def _env_threads(name: str) -> int | None:
    """A positive thread count from environment variable ``name``, or None when it is unset or empty."""
    text = os.environ.get(name, "").strip()
    if not text:
        return None
    try:
        value = int(text)
    except ValueError:
        raise ConfigError(f"{name} must be an integer, got {text!r}") from None
    if value < 1:
        raise ConfigError(f"{name} must be >= 1, got {value}")
    return value


def local_world_size(env: Mapping[str, str] | None = None) -> int:
    """Processes of this run on this node: torchrun's ``LOCAL_WORLD_SIZE``, else SLURM's tasks on
    this node (``SLURM_NTASKS_PER_NODE``, which may read ``4(x2)``), else 1."""
    env = os.environ if env is None else env
    for name in ("LOCAL_WORLD_SIZE", "SLURM_NTASKS_PER_NODE"):
        text = env.get(name, "").split("(")[0].strip()
        if text.isdigit() and int(text) > 0:
            return int(text)
    return 1


def default_threads() -> int:
    """Threads when none are asked for: ``$MASKKIT_THREADS``, else ``$OMP_NUM_THREADS`` (torchrun sets it
    to 1 per worker, SLURM scripts set it on purpose), else the usable CPUs shared among the ranks on
    this node (``$LOCAL_WORLD_SIZE``, else ``$SLURM_NTASKS_PER_NODE``), so eight ranks on one node do not
    each take every core."""
    for name in ("MASKKIT_THREADS", "OMP_NUM_THREADS"):
        value = _env_threads(name)
        if value is not None:
            return value
    return max(1, usable_cpus() // local_world_size())


def configure_threads(threads: int | None = None) -> int:
    """Set torch's intra-op threads for this command: ``threads``, else ``default_threads()``.

    Returns the count set. ``threads`` below 1 is an error the CLI reports as a bad option.
    """
    global _configured
    if threads is not None and threads < 1:
        raise ConfigError(f"`threads` must be >= 1, got {threads}")
    count = int(threads) if threads is not None else default_threads()
    if torch.get_num_threads() != count:
        torch.set_num_threads(count)
    _configured = count
    return count


def configured_threads() -> int:
    """The count from ``configure_threads``, else the usable CPUs (sizes process pools such as scans)."""
    return _configured if _configured is not None else usable_cpus()


def oversubscription(threads: int | None = None) -> str | None:
    """A warning when the 1-minute load average already exceeds the usable CPUs (others are busy)."""
    try:
        load = os.getloadavg()[0]
    except (AttributeError, OSError):
        return None
    cpus = usable_cpus()
    if load <= cpus:
        return None
    mine = threads if threads is not None else configured_threads()
    advice = " (try setting `threads` to 1)" if mine > 1 else ""
    return (f"the machine is oversubscribed: load average {load:.1f} on {cpus} usable CPU(s); "
            f"{mine} thread(s) here compete with other processes, so timings will vary{advice}")


@contextmanager
def single_thread() -> Iterator[None]:
    previous = torch.get_num_threads()
    if previous == 1:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)
