"""Catch accelerator stalls on a CPU: host synchronisations and tensors made on the wrong device.

A training step that reads a device value into Python (``.item()``, ``bool(t)``, ``float(t)``,
``nonzero``, boolean-mask indexing) waits for the GPU to drain its queue; a tensor built from
Python data (``torch.tensor(x, device=cuda)``) is a blocking host-to-device copy; a tensor created
without ``device=`` lands on the CPU and fails (or copies) next to CUDA tensors. None of these is
visible on a CPU run, so :class:`HostSyncGuard` makes them visible: inside it every such operation
raises :class:`HostSyncError`, and factory calls without an explicit device create ``meta``
tensors, which fail as soon as they meet a real tensor.

Code that syncs on purpose, and only where the sync is free (a CPU-only branch), says so with
:func:`deliberate_sync`.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode

_state = threading.local()

#: ops that copy a device value to the host (or need one to size their output)
SYNC_OPS = {
    "aten::_local_scalar_dense",  # .item(), float(t), int(t), bool(t)
    "aten::item",
    "aten::is_nonzero",
    "aten::nonzero",  # also what boolean-mask indexing runs
    "aten::masked_select",
    "aten::unique",
    "aten::_unique2",
}
#: overloads that sync only in some forms (a tensor of repeats sizes the output from its values)
SYNC_OVERLOADS = {("aten::repeat_interleave", "Tensor"), ("aten::repeat_interleave", "self_Tensor")}
#: indexing ops that sync when an index is a boolean mask (its size is data-dependent)
INDEX_OPS = {"aten::index", "aten::index_put", "aten::index_put_", "aten::_index_put_impl_"}
#: tensors built from Python data (on CUDA: a blocking host-to-device copy)
FROM_HOST_OPS = {"aten::lift_fresh", "aten::lift_fresh_copy"}


class HostSyncError(RuntimeError):
    """An operation that would stall an accelerator ran inside :class:`HostSyncGuard`."""


@contextlib.contextmanager
def deliberate_sync(reason: str) -> Iterator[None]:  # noqa: ARG001 - the reason documents the call site
    """Mark a host sync as intended (for example a branch that runs on CPU tensors only)."""
    previous = getattr(_state, "allowed", 0)
    _state.allowed = previous + 1
    try:
        yield
    finally:
        _state.allowed = previous


def _has_bool_index(args: tuple[Any, ...]) -> bool:
    indices = args[1] if len(args) > 1 else ()
    return any(isinstance(i, torch.Tensor) and i.dtype == torch.bool
               for i in (indices if isinstance(indices, (list, tuple)) else ()))


class HostSyncGuard(TorchDispatchMode):
    """Raise on host syncs and host-built tensors; with ``meta_default`` (default) tensors created
    without a device are ``meta`` tensors, so device mix-ups fail on a CPU as they would on a GPU."""

    def __init__(self, meta_default: bool = True) -> None:
        super().__init__()
        self.meta_default = meta_default
        self._device_ctx: Any = None

    def __enter__(self) -> HostSyncGuard:
        if self.meta_default:
            self._device_ctx = torch.device("meta")
            self._device_ctx.__enter__()
        return super().__enter__()

    def __exit__(self, *exc: Any) -> None:
        super().__exit__(*exc)
        if self._device_ctx is not None:
            self._device_ctx.__exit__(*exc)
            self._device_ctx = None

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # noqa: ANN001
        name = func._schema.name
        if getattr(_state, "allowed", 0) == 0:
            if name in SYNC_OPS or (name, func._overloadname) in SYNC_OVERLOADS:
                raise HostSyncError(f"host synchronisation: {func} (reads a device value into Python)")
            if name in INDEX_OPS and _has_bool_index(args):
                raise HostSyncError(f"boolean-mask indexing: {func} (its output size is read back to the host; "
                                    "use torch.where, masked_fill or gather with fixed indices)")
            if name in FROM_HOST_OPS:
                raise HostSyncError(f"tensor built from Python data: {func} (a blocking host-to-device "
                                    "copy on an accelerator; use torch.full or keep a Python float)")
        return func(*args, **(kwargs or {}))


__all__ = ["FROM_HOST_OPS", "INDEX_OPS", "SYNC_OPS", "HostSyncError", "HostSyncGuard", "deliberate_sync"]
