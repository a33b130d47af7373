"""Run small per-sample tensor work on one thread.

On a busy 2-core machine, intra-op threads turn a 0.2 ms spectrogram or clip transform into
5-20 ms of spinning; DataLoader workers are single-threaded already, so this only matters for
in-process loading.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch


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
