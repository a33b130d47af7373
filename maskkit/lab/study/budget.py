"""Budget honesty: say when a study trains a method for far less than it was designed for.

Two kinds of note: (1) the published recipe's budget (each masker's ``design_budget`` class
attribute, ``(epochs, "where that number comes from")``); (2) schedules read
from the masker's own configuration (``describe_config()``): a start/switch epoch at or past the
run's last epoch means the informed part never ran, and a ``started`` log (``masker/sg/started``)
that stayed 0 says the same from the run itself.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from maskkit.registry import RegistryError, get_masker

START_KEYS = ("start_epoch", "switch_epoch")


def design_budget(masker: str) -> tuple[int, str] | None:
    """The masker's own ``design_budget`` (None for an unknown masker: the study reports that elsewhere)."""
    try:
        return get_masker(masker).design_budget
    except RegistryError:
        return None


def _start_epochs(config: Any, path: str = "") -> Iterable[tuple[str, int]]:
    """(option path, epoch) for every start/switch epoch in a (possibly nested) masker config."""
    if not isinstance(config, dict):
        return
    mode = config.get("start")
    for key, value in config.items():
        here = f"{path}{key}"
        if key in START_KEYS and isinstance(value, int) and not isinstance(value, bool):
            if mode is None or mode == "epoch":
                yield here, value
        elif isinstance(value, dict):
            yield from _start_epochs(value, f"{here}.")


def budget_notes(masker: str, masker_config: dict[str, Any] | None, epochs: int,
                 started_max: float | None = None) -> list[str]:
    """Plain sentences; empty when the budget is within what the method was designed for."""
    notes = []
    design = design_budget(masker)
    if design is not None and epochs < design[0]:
        notes.append(f"{masker}: trained {epochs} epoch{'s' if epochs != 1 else ''}, below its design budget "
                     f"({design[1]}); treat differences as early-training behaviour.")
    for option, start in _start_epochs(masker_config or {}):
        if start >= epochs:
            notes.append(f"{masker}: its {option} = {start} is at or past the run's {epochs} epochs, so its "
                         f"informed masking never ran; these runs measure its warm-up masking only.")
    if started_max is not None and started_max <= 0:
        notes.append(f"{masker}: its logs show informed masking never started in this budget.")
    return notes


__all__ = ["budget_notes", "design_budget"]
