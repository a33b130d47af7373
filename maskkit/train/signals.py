"""SIGINT/SIGTERM/SIGUSR1 stop a run at the next optimiser step, with a checkpoint (see
``EpochLoop.stop_requested``); which signals, and the exit code each asks for, are ``maskkit.train.cluster``'s."""

from __future__ import annotations

import signal
from collections.abc import Callable
from typing import Any

from maskkit.train.cluster import STOP_SIGNALS


def catch_stop_signals(on_signal: Callable[[int], None]) -> dict[int, Any]:
    """Route the stop signals to ``on_signal``; returns the previous handlers for ``restore_signals``."""
    previous = {}

    def handler(signum: int, frame: Any) -> None:  # noqa: ARG001
        on_signal(signum)

    for sig in STOP_SIGNALS:
        try:
            previous[sig] = signal.signal(sig, handler)
        except ValueError:  # not the main thread (e.g. inside a test runner thread)
            pass
    return previous


def restore_signals(previous: dict[int, Any]) -> None:
    for sig, handler in previous.items():
        signal.signal(sig, handler)
