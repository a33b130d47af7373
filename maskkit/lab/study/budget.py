"""Budget honesty: say when a study trains a method for far less than it was designed for.

Two kinds of note: (1) the published recipe's budget (``DESIGN_BUDGETS``; a masker class may
override it with a ``design_budget = (epochs, "sentence")`` class attribute); (2) schedules read
from the masker's own configuration (``describe_config()``): a start/switch epoch at or past the
run's last epoch means the informed part never ran, and a ``started`` log (``masker/sg/started``)
that stayed 0 says the same from the run itself.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from maskkit.registry import get_masker

#: masker -> (epochs the method's published recipe uses, where that number comes from)
DESIGN_BUDGETS: dict[str, tuple[int, str]] = {
    "random": (400, "MAE recipes use 400-1600 epochs (He et al. 2022: 800 in the ViT-L recipe, 1600 for the "
                    "best numbers)"),
    "block": (800, "block masking was ablated in MAE at 800 epochs"),
    "self-guided": (400, "self-guided MAE reports 400 pre-training epochs, with informed masking from about "
                         "epoch 50"),
    "noise-green": (300, "ColorMAE reports 300-1600 epochs"),
    "noise-blue": (300, "ColorMAE reports 300-1600 epochs"),
    "noise-red": (300, "ColorMAE reports 300-1600 epochs"),
    "noise-purple": (300, "ColorMAE reports 300-1600 epochs"),
    "hard-patches": (800, "HPM uses 800 epochs"),
    "learned": (800, "AdaMAE uses 800 epochs"),
    "tube": (800, "VideoMAE uses 800-2400 epochs"),
    "point-block": (300, "Point-MAE pre-trains for 300 epochs"),
}

START_KEYS = ("start_epoch", "switch_epoch")


def design_budget(masker: str) -> tuple[int, str] | None:
    try:

        custom = getattr(get_masker(masker), "design_budget", None)
    except Exception:  # unknown masker: the study reports that elsewhere
        custom = None
    if isinstance(custom, tuple) and len(custom) == 2:
        return int(custom[0]), str(custom[1])
    return DESIGN_BUDGETS.get(masker)


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


__all__ = ["DESIGN_BUDGETS", "budget_notes", "design_budget"]
